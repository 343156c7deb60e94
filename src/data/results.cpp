#include "core/access.hpp"
#include "core/data_ops.hpp"
#include "wait/fill_once.hpp"
#include "wait/push_wait.hpp"

#include <redcoord/error.hpp>
#include <redcoord/results.hpp>
#include <redcoord/script.hpp>

#include <boost/asio/this_coro.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <zlib.h>

#include <charconv>
#include <climits>
#include <memory>
#include <new>
#include <utility>
#include <vector>

namespace redcoord {

namespace asio = boost::asio;
namespace json = boost::json;
using boost::system::error_code;
using std::chrono::milliseconds;

namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

using detail::stop_if_cancelled;

std::string channel_of(const keyspace& keys, std::string_view id) {
    return keyspace::companion(keys.result(id), "stored");
}

std::int64_t unix_ms_now() {
    return std::chrono::duration_cast<milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

bool to_int(const std::optional<std::string>& s, std::int64_t& out) {
    if (!s) return false;
    auto [p, ec] = std::from_chars(s->data(), s->data() + s->size(), out);
    return ec == std::errc() && p == s->data() + s->size();
}

using info_result = std::pair<error_code, std::optional<result_info>>;
using value_result = std::pair<error_code, std::optional<json::value>>;

asio::awaitable<error_code> store(std::shared_ptr<detail::session_impl> s, std::string id,
                                  result_status status, std::optional<json::value> value,
                                  std::optional<json::value> metadata, result_options opts,
                                  detail::diag_target target) {
    diagnostics& d = target.get();
    const std::string what = "result '" + id + "'";
    std::string compressed;
    if (value) {
        std::string text;
        if (auto ec = detail::serialize_limited(*value, opts.max_value_bytes, "max_value_bytes",
                                                what, text, d))
            co_return ec;
        compressed = detail::gzip_compress(text);
    }
    static const script& write = script::embedded("result_store");
    const std::vector<std::string> keys{s->keys.result(id), s->keys.result_value(id)};
    const std::vector<std::string> args{std::string(to_string(status)),
                                        metadata ? json::serialize(*metadata) : std::string(),
                                        metadata ? "1" : "0",
                                        std::to_string(unix_ms_now()),
                                        std::to_string(opts.result_ttl.count()),
                                        value ? "1" : "0",
                                        std::move(compressed),
                                        std::to_string(opts.value_ttl.count()),
                                        channel_of(s->keys, id),
                                        std::string(s->publish_command())};
    std::int64_t reply = 0;
    auto [ec, n] = co_await detail::eval(s->conn, write, keys, args, reply, d);
    co_return ec;
}

asio::awaitable<info_result> read_info(detail::session_impl& s, const std::string& id,
                                       diagnostics& d) {
    request req;
    req.push("HMGET", s.keys.result(id), "status", "metadata", "created_ms", "updated_ms",
             "value_bytes");
    std::vector<std::optional<std::string>> f;
    auto [ec, n] = co_await s.conn.async_exec(req, f, d, nothrow);
    if (ec || f.size() != 5 || !f[0]) co_return info_result(ec, std::nullopt);
    const std::string what = "result '" + id + "'";
    result_info info;
    auto st = parse_result_status(*f[0]);
    if (!st) {
        d.set_client_message(what + ": unknown status '" + *f[0] + "'");
        co_return info_result(error::decode_failed, std::nullopt);
    }
    info.status = *st;
    if (f[1]) {
        if (auto pec = detail::parse_stored(*f[1], what + " metadata", info.metadata, d))
            co_return info_result(pec, std::nullopt);
    }
    std::int64_t ms = 0;
    if (to_int(f[2], ms)) info.created = std::chrono::system_clock::time_point(milliseconds(ms));
    if (to_int(f[3], ms)) info.updated = std::chrono::system_clock::time_point(milliseconds(ms));
    if (to_int(f[4], ms)) {
        info.has_value = true;
        info.value_bytes = static_cast<std::size_t>(ms);
    }
    co_return info_result(error_code(), std::move(info));
}

asio::awaitable<info_result> get_result(std::shared_ptr<detail::session_impl> s, std::string id,
                                        detail::diag_target target) {
    co_return co_await read_info(*s, id, target.get());
}

asio::awaitable<value_result> get_value(std::shared_ptr<detail::session_impl> s, std::string id,
                                        std::size_t max_bytes, detail::diag_target target) {
    diagnostics& d = target.get();
    request req;
    req.push("GET", s->keys.result_value(id));
    std::optional<std::string> raw;
    auto [ec, n] = co_await s->conn.async_exec(req, raw, d, nothrow);
    if (ec || !raw) co_return value_result(ec, std::nullopt);
    const std::string what = "result '" + id + "'";
    std::string text;
    if (!detail::gzip_decompress(*raw, max_bytes, text)) {
        d.set_client_message(what + ": the stored value (" + std::to_string(raw->size()) +
                             " bytes) is not a complete gzip stream, or inflates past "
                             "max_value_bytes (" + std::to_string(max_bytes) + ")");
        co_return value_result(error::corrupt_data, std::nullopt);
    }
    json::value v;
    if (auto pec = detail::parse_stored(text, what, v, d))
        co_return value_result(pec, std::nullopt);
    co_return value_result(error_code(), std::move(v));
}

asio::awaitable<std::pair<error_code, result_info>> wait_for(
    std::shared_ptr<detail::session_impl> s, std::string id,
    std::chrono::steady_clock::time_point deadline, detail::diag_target target) {
    using wait_result = std::pair<error_code, result_info>;
    diagnostics& d = target.get();
    // Listen first, then look: a result stored after the look is heard.
    detail::channel_waiter w(*s, channel_of(s->keys, id));
    for (;;) {
        if (s->closed || w.closed()) co_return wait_result(error::session_closed, result_info());
        co_await stop_if_cancelled();
        w.clear();
        auto [ec, info] = co_await read_info(*s, id, d);
        if (ec) co_return wait_result(ec, result_info());
        if (info && is_terminal(info->status)) co_return wait_result(ec, std::move(*info));
        if (std::chrono::steady_clock::now() >= deadline) {
            d.set_client_message("result '" + id + "': no final status before the deadline");
            co_return wait_result(error::timeout, result_info());
        }
        co_await w.wait_until(deadline);
        // Anything heard (a status, a gap) or the deadline: look again.
    }
}

}  // namespace

std::string_view to_string(result_status s) noexcept {
    switch (s) {
        case result_status::pending: return "pending";
        case result_status::running: return "running";
        case result_status::succeeded: return "succeeded";
        case result_status::failed: return "failed";
        case result_status::revoked: return "revoked";
    }
    return "unknown";
}

std::optional<result_status> parse_result_status(std::string_view name) noexcept {
    for (auto s : {result_status::pending, result_status::running, result_status::succeeded,
                   result_status::failed, result_status::revoked})
        if (to_string(s) == name) return s;
    return std::nullopt;
}

namespace {
const result_options& checked(const result_options& o) {
    detail::check_duration_option("result_ttl", o.result_ttl);
    detail::check_duration_option("value_ttl", o.value_ttl);
    detail::check_duration_option("state_ttl", o.state_ttl);
    detail::check_size_option("max_value_bytes", o.max_value_bytes);
    return o;
}
}  // namespace

result_store::result_store(session& s, result_options opts)
    : session_(&s), opts_(checked(opts)), state_(s, state_options{opts.state_ttl}) {}

// Each operation checks its input into the diagnostics it will fill (the caller's, or its own:
// diag_target), then runs a coroutine that owns them.

namespace {
error_code check_id(const detail::session_impl& s, const std::string& id, diagnostics& d) {
    error_code ec = detail::check_name("result id", id, d);
    if (!ec && s.closed) ec = error::session_closed;
    return ec;
}
}  // namespace

void result_store::store_impl(std::string id, result_status status,
                              std::optional<json::value> value,
                              std::optional<json::value> metadata, diagnostics* diag,
                              void_handler handler) {
    auto s = detail::access::impl(*session_);
    detail::diag_target target(diag);
    diagnostics& d = target.get();
    d.clear();
    error_code ec = detail::check_name("result id", id, d);
    if (!ec && !parse_result_status(to_string(status)))
        ec = detail::invalid(d, "result '" + id + "': unknown status " +
                                    std::to_string(static_cast<int>(status)));
    if (!ec && s->closed) ec = error::session_closed;
    if (ec) return detail::complete_later(*s, std::move(handler), ec);
    auto& sr = *s;
    detail::launch(sr, store(std::move(s), std::move(id), status, std::move(value),
                             std::move(metadata), opts_, std::move(target)),
                   std::move(handler));
}

void result_store::get_result_impl(std::string id, diagnostics* diag, info_handler handler) {
    auto s = detail::access::impl(*session_);
    detail::diag_target target(diag);
    target.get().clear();
    if (auto ec = check_id(*s, id, target.get()))
        return detail::complete_later(*s, std::move(handler), ec, std::optional<result_info>());
    auto& sr = *s;
    detail::launch(sr, get_result(std::move(s), std::move(id), std::move(target)),
                   std::move(handler));
}

void result_store::get_value_impl(std::string id, diagnostics* diag, value_handler handler) {
    auto s = detail::access::impl(*session_);
    detail::diag_target target(diag);
    target.get().clear();
    if (auto ec = check_id(*s, id, target.get()))
        return detail::complete_later(*s, std::move(handler), ec, std::optional<json::value>());
    auto& sr = *s;
    detail::launch(sr, get_value(std::move(s), std::move(id), opts_.max_value_bytes,
                                 std::move(target)),
                   std::move(handler));
}

void result_store::wait_impl(std::string id, std::chrono::steady_clock::time_point deadline,
                             diagnostics* diag, wait_handler handler) {
    auto s = detail::access::impl(*session_);
    detail::diag_target target(diag);
    target.get().clear();
    if (auto ec = check_id(*s, id, target.get()))
        return detail::complete_later(*s, std::move(handler), ec, result_info());
    auto& sr = *s;
    detail::launch(sr, wait_for(std::move(s), std::move(id), deadline, std::move(target)),
                   std::move(handler));
}

namespace detail {

std::string gzip_compress(std::string_view data) {
    z_stream zs{};
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK)
        throw std::bad_alloc();
    std::string out;
    out.resize(deflateBound(&zs, static_cast<uLong>(data.size())) + 32);
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    zs.avail_in = static_cast<uInt>(data.size());
    zs.next_out = reinterpret_cast<Bytef*>(out.data());
    zs.avail_out = static_cast<uInt>(out.size());
    int rc = deflate(&zs, Z_FINISH);
    while (rc == Z_OK || rc == Z_BUF_ERROR) {
        // deflateBound is an upper bound: this only runs if it was not.
        const std::size_t used = out.size() - zs.avail_out;
        out.resize(out.size() * 2);
        zs.next_out = reinterpret_cast<Bytef*>(out.data() + used);
        zs.avail_out = static_cast<uInt>(out.size() - used);
        rc = deflate(&zs, Z_FINISH);
    }
    out.resize(zs.total_out);
    deflateEnd(&zs);
    if (rc != Z_STREAM_END) throw std::bad_alloc();
    return out;
}

bool gzip_decompress(std::string_view data, std::size_t max_bytes, std::string& out) {
    out.clear();
    if (data.size() < 18 || static_cast<unsigned char>(data[0]) != 0x1f ||
        static_cast<unsigned char>(data[1]) != 0x8b)
        return false;
    z_stream zs{};
    if (inflateInit2(&zs, 15 + 16) != Z_OK) throw std::bad_alloc();
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    zs.avail_in = static_cast<uInt>(data.size());
    char buf[64 * 1024];
    int rc = Z_OK;
    bool ok = false;
    for (;;) {
        zs.next_out = reinterpret_cast<Bytef*>(buf);
        zs.avail_out = sizeof buf;
        rc = inflate(&zs, Z_NO_FLUSH);
        const std::size_t got = sizeof buf - zs.avail_out;
        if (out.size() + got > max_bytes) break;
        out.append(buf, got);
        if (rc == Z_STREAM_END) {
            ok = zs.avail_in == 0;  // trailing bytes: not what was stored
            break;
        }
        if (rc != Z_OK) break;              // corrupt data
        if (zs.avail_in == 0 && got == 0) break;  // truncated
    }
    inflateEnd(&zs);
    if (!ok) out.clear();
    return ok;
}

}  // namespace detail
}  // namespace redcoord
