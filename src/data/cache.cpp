#include "core/data_ops.hpp"
#include "wait/fill_once.hpp"

#include <redcoord/cache.hpp>
#include <redcoord/error.hpp>

#include <boost/asio/this_coro.hpp>

#include <algorithm>
#include <set>

namespace redcoord {

namespace asio = boost::asio;
using boost::system::error_code;
using detail::data_nothrow;
using detail::session_impl;
using std::chrono::milliseconds;

namespace {

std::string what_of(std::string_view key) { return "cache '" + std::string(key) + "'"; }

error_code check_key(std::string_view key, diagnostics& d) {
    return detail::check_name("cache key", key, d);
}

error_code check_ttl(std::string_view key, std::optional<milliseconds> ttl, diagnostics& d) {
    if (!ttl) return {};
    auto ec = detail::check_duration_arg(d, what_of(key), "ttl", *ttl);
    if (ec && ttl->count() <= 0)
        d.set_client_message(d.client_message() + " (omit it for no expiry)");
    return ec;
}

// The part of every cache key before the caller's key, as a SCAN pattern that matches itself.
std::string scan_prefix(const keyspace& keys) { return detail::glob_escape(keys.cache("")); }

asio::awaitable<std::tuple<error_code, std::optional<boost::json::value>>> get_coro(
    std::shared_ptr<session_impl> s, std::string key, diagnostics& d) {
    request req;
    req.push("GET", s->keys.cache(key));
    std::optional<std::string> text;
    auto [ec, n] = co_await s->conn.async_exec(req, text, d, data_nothrow);
    std::optional<boost::json::value> out;
    if (!ec && text) ec = detail::parse_stored(*text, what_of(key), out.emplace(), d);
    if (ec) out.reset();
    co_return std::tuple{ec, std::move(out)};
}

asio::awaitable<std::tuple<error_code>> set_coro(std::shared_ptr<session_impl> s,
                                                 std::string key, std::string text,
                                                 std::optional<milliseconds> ttl,
                                                 diagnostics& d) {
    request req;
    if (ttl)
        req.push("SET", s->keys.cache(key), text, "PX", ttl->count());
    else
        req.push("SET", s->keys.cache(key), text);
    auto [ec, n] = co_await s->conn.async_exec(req, ignore, d, data_nothrow);
    co_return std::tuple{ec};
}

asio::awaitable<std::tuple<error_code, bool>> del_coro(std::shared_ptr<session_impl> s,
                                                       std::string key, diagnostics& d) {
    request req;
    req.push("UNLINK", s->keys.cache(key));
    std::int64_t n = 0;
    auto [ec, c] = co_await s->conn.async_exec(req, n, d, data_nothrow);
    co_return std::tuple{ec, !ec && n > 0};
}

// Calls on_batch(keys) for every batch SCAN MATCH finds; stops at the first error.
template <class OnBatch>
asio::awaitable<error_code> scan(session_impl& s, const std::string& match, std::size_t count,
                                 diagnostics& d, OnBatch on_batch) {
    std::string cursor = "0";
    do {
        request req;
        req.push("SCAN", cursor, "MATCH", match, "COUNT", count);
        std::pair<std::string, std::vector<std::string>> reply;
        auto [ec, n] = co_await s.conn.async_exec(req, reply, d, data_nothrow);
        if (ec) co_return ec;
        cursor = std::move(reply.first);
        if (!reply.second.empty()) {
            if (auto bec = co_await on_batch(std::move(reply.second))) co_return bec;
        }
    } while (cursor != "0");
    co_return error_code{};
}

asio::awaitable<std::tuple<error_code, std::size_t>> clear_coro(std::shared_ptr<session_impl> s,
                                                                std::size_t batch,
                                                                diagnostics& d) {
    std::size_t deleted = 0;
    auto unlink = [&](std::vector<std::string> keys) -> asio::awaitable<error_code> {
        for (std::size_t i = 0; i < keys.size(); i += batch) {
            const auto end = std::min(keys.size(), i + batch);
            std::vector<std::string> part(std::make_move_iterator(keys.begin() + i),
                                          std::make_move_iterator(keys.begin() + end));
            request req;
            req.push("UNLINK", part);
            std::int64_t n = 0;
            auto [ec, c] = co_await s->conn.async_exec(req, n, d, data_nothrow);
            if (ec) co_return ec;
            deleted += static_cast<std::size_t>(n);
        }
        co_return error_code{};
    };
    auto ec = co_await scan(*s, scan_prefix(s->keys) + "*", batch, d, unlink);
    co_return std::tuple{ec, deleted};
}

asio::awaitable<std::tuple<error_code, std::vector<std::string>>> keys_coro(
    std::shared_ptr<session_impl> s, std::string pattern, std::size_t batch, diagnostics& d) {
    std::set<std::string> found;
    const std::string full_prefix = s->keys.cache("");
    auto collect = [&](std::vector<std::string> keys) -> asio::awaitable<error_code> {
        for (auto& k : keys)
            if (k.starts_with(full_prefix)) found.insert(k.substr(full_prefix.size()));
        co_return error_code{};
    };
    auto ec = co_await scan(*s, scan_prefix(s->keys) + pattern, batch, d, collect);
    std::vector<std::string> out;
    if (!ec) out.assign(found.begin(), found.end());
    co_return std::tuple{ec, std::move(out)};
}

// What an operation keeps alive: diagnostics when the caller gave none.
struct own_diag {
    diagnostics d;
};

}  // namespace

cache::cache(session& s, cache_options opts) : session_(&s), opts_(opts) {
    detail::check_size_option("max_value_bytes", opts_.max_value_bytes);
    detail::check_duration_option("fill_lease_ttl", opts_.fill_lease_ttl);
    if (opts_.scan_batch == 0) detail::throw_bad_config("scan_batch: 0 is not positive");
}

// Each operation below: check the input, then run a coroutine; the diagnostics the caller did
// not give live in a shared slot that the coroutine keeps.

void cache::get_impl(std::string key, diagnostics* diag, json_handler handler) {
    auto s = session_->impl();
    auto own = std::make_shared<own_diag>();
    diagnostics& d = diag ? *diag : own->d;
    d.clear();
    error_code ec = check_key(key, d);
    if (!ec && s->closed) ec = error::session_closed;
    if (ec) return detail::complete_later(*s, std::move(handler), ec,
                                          std::optional<boost::json::value>());
    auto run = [](std::shared_ptr<session_impl> s, std::string key, diagnostics& d,
                  std::shared_ptr<own_diag>)
        -> asio::awaitable<std::tuple<error_code, std::optional<boost::json::value>>> {
        co_return co_await get_coro(std::move(s), std::move(key), d);
    };
    auto& sr = *s;
    detail::launch(sr, run(std::move(s), std::move(key), d, std::move(own)), std::move(handler));
}

void cache::set_impl(std::string key, boost::json::value value, std::optional<milliseconds> ttl,
                     diagnostics* diag, void_handler handler) {
    auto s = session_->impl();
    auto own = std::make_shared<own_diag>();
    diagnostics& d = diag ? *diag : own->d;
    d.clear();
    std::string text;
    error_code ec = check_key(key, d);
    if (!ec) ec = check_ttl(key, ttl, d);
    if (!ec) ec = detail::serialize_limited(value, opts_.max_value_bytes, "max_value_bytes",
                                            what_of(key), text, d);
    if (!ec && s->closed) ec = error::session_closed;
    if (ec) return detail::complete_later(*s, std::move(handler), ec);
    auto run = [](std::shared_ptr<session_impl> s, std::string key, std::string text,
                  std::optional<milliseconds> ttl, diagnostics& d,
                  std::shared_ptr<own_diag>) -> asio::awaitable<std::tuple<error_code>> {
        co_return co_await set_coro(std::move(s), std::move(key), std::move(text), ttl, d);
    };
    auto& sr = *s;
    detail::launch(sr, run(std::move(s), std::move(key), std::move(text), ttl, d, std::move(own)),
                   std::move(handler));
}

void cache::del_impl(std::string key, diagnostics* diag, bool_handler handler) {
    auto s = session_->impl();
    auto own = std::make_shared<own_diag>();
    diagnostics& d = diag ? *diag : own->d;
    d.clear();
    error_code ec = check_key(key, d);
    if (!ec && s->closed) ec = error::session_closed;
    if (ec) return detail::complete_later(*s, std::move(handler), ec, false);
    auto run = [](std::shared_ptr<session_impl> s, std::string key, diagnostics& d,
                  std::shared_ptr<own_diag>) -> asio::awaitable<std::tuple<error_code, bool>> {
        co_return co_await del_coro(std::move(s), std::move(key), d);
    };
    auto& sr = *s;
    detail::launch(sr, run(std::move(s), std::move(key), d, std::move(own)), std::move(handler));
}

void cache::clear_impl(diagnostics* diag, count_handler handler) {
    auto s = session_->impl();
    auto own = std::make_shared<own_diag>();
    diagnostics& d = diag ? *diag : own->d;
    d.clear();
    if (s->closed)
        return detail::complete_later(*s, std::move(handler), error_code(error::session_closed),
                                      std::size_t(0));
    auto run = [](std::shared_ptr<session_impl> s, std::size_t batch, diagnostics& d,
                  std::shared_ptr<own_diag>)
        -> asio::awaitable<std::tuple<error_code, std::size_t>> {
        co_return co_await clear_coro(std::move(s), batch, d);
    };
    auto& sr = *s;
    detail::launch(sr, run(std::move(s), opts_.scan_batch, d, std::move(own)),
                   std::move(handler));
}

void cache::keys_impl(std::string pattern, diagnostics* diag, keys_handler handler) {
    auto s = session_->impl();
    auto own = std::make_shared<own_diag>();
    diagnostics& d = diag ? *diag : own->d;
    d.clear();
    if (s->closed)
        return detail::complete_later(*s, std::move(handler), error_code(error::session_closed),
                                      std::vector<std::string>());
    if (pattern.empty()) pattern = "*";
    auto run = [](std::shared_ptr<session_impl> s, std::string pattern, std::size_t batch,
                  diagnostics& d, std::shared_ptr<own_diag>)
        -> asio::awaitable<std::tuple<error_code, std::vector<std::string>>> {
        co_return co_await keys_coro(std::move(s), std::move(pattern), batch, d);
    };
    auto& sr = *s;
    detail::launch(sr, run(std::move(s), std::move(pattern), opts_.scan_batch, d, std::move(own)),
                   std::move(handler));
}

void cache::get_or_set_impl(std::string key, detail::json_factory make,
                            std::optional<milliseconds> ttl, fill_handler handler) {
    auto s = session_->impl();
    diagnostics d;
    error_code ec = check_key(key, d);
    if (!ec) ec = check_ttl(key, ttl, d);
    if (!ec && s->closed) ec = error::session_closed;
    if (ec)
        return detail::complete_later(*s, std::move(handler), detail::make_error(ec, d),
                                      boost::json::value());
    detail::fill_spec spec;
    spec.what = what_of(key);
    spec.key = s->keys.cache(key);
    spec.lease_suffix = "fill";
    spec.channel_suffix = "filled";
    spec.ttl = ttl;
    spec.lease_ttl = opts_.fill_lease_ttl;
    spec.max_bytes = opts_.max_value_bytes;
    spec.limit_name = "max_value_bytes";
    auto& sr = *s;
    detail::launch_throwing(sr, detail::fill_once(std::move(s), std::move(spec), std::move(make)),
                            std::move(handler));
}

}  // namespace redcoord
