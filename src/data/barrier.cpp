#include "core/access.hpp"
#include "core/data_ops.hpp"
#include "wait/push_wait.hpp"

#include <redcoord/barrier.hpp>
#include <redcoord/error.hpp>
#include <redcoord/script.hpp>

#include <boost/asio/this_coro.hpp>

#include <algorithm>
#include <charconv>
#include <memory>
#include <optional>
#include <utility>

namespace redcoord {

namespace asio = boost::asio;
using boost::system::error_code;
using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

using detail::stop_if_cancelled;

std::string arrival_channel(const keyspace& keys, std::string_view batch) {
    return keyspace::companion(keys.barrier(batch), "arrived");
}

std::string done_channel(const keyspace& keys, std::string_view job) {
    return keyspace::companion(keys.job(job), "done");
}

std::optional<std::int64_t> to_int(std::string_view s) {
    std::int64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return v;
}

void check_ttl(milliseconds ttl) { detail::check_duration_option("ttl", ttl); }

using count_result = std::pair<error_code, std::int64_t>;

asio::awaitable<count_result> arrive(std::shared_ptr<detail::session_impl> s, std::string batch,
                                     milliseconds ttl, detail::diag_target target) {
    static const script& inc = script::embedded("barrier_arrive");
    const std::vector<std::string> keys{s->keys.barrier(batch)};
    const std::vector<std::string> args{std::to_string(ttl.count()),
                                        arrival_channel(s->keys, batch),
                                        std::string(s->publish_command())};
    std::int64_t n = 0;
    auto [ec, size] = co_await detail::eval(s->conn, inc, keys, args, n, target.get());
    co_return count_result(ec, ec ? 0 : n);
}

asio::awaitable<count_result> wait_barrier(std::shared_ptr<detail::session_impl> s,
                                           std::string batch, std::int64_t total,
                                           steady::time_point deadline,
                                           detail::diag_target target) {
    diagnostics& d = target.get();
    const std::string key = s->keys.barrier(batch);
    // Listen first, then look: an arrival after the look is heard.
    detail::channel_waiter w(*s, arrival_channel(s->keys, batch));
    bool look = true;
    std::int64_t seen = 0;
    for (;;) {
        if (s->closed || w.closed()) co_return count_result(error::session_closed, 0);
        co_await stop_if_cancelled();
        if (look) {
            w.clear();
            request req;
            req.push("GET", key);
            std::optional<std::string> text;
            auto [ec, n] = co_await s->conn.async_exec(req, text, d, nothrow);
            if (ec) co_return count_result(ec, 0);
            if (text) {
                auto v = to_int(*text);
                if (!v) {
                    d.set_client_message("barrier '" + batch + "': the counter is not a number");
                    co_return count_result(error::decode_failed, 0);
                }
                seen = std::max(seen, *v);
            }
            look = false;
        }
        if (seen >= total) co_return count_result(error_code(), seen);
        if (steady::now() >= deadline) {
            d.set_client_message("barrier '" + batch + "': " + std::to_string(seen) + " of " +
                                 std::to_string(total) + " arrived before the deadline");
            co_return count_result(error::timeout, 0);
        }
        co_await w.wait_until(deadline);
        // Arrivals carry the new count; a gap means some may have been missed: look again.
        if (w.gap()) look = true;
        for (const auto& m : w.take()) {
            if (auto v = to_int(m))
                seen = std::max(seen, *v);
            else
                look = true;
        }
    }
}

asio::awaitable<error_code> complete(std::shared_ptr<detail::session_impl> s, std::string job,
                                     bool success, std::string reason, milliseconds ttl,
                                     detail::diag_target target) {
    static const script& rec = script::embedded("job_complete");
    const std::vector<std::string> keys{s->keys.job(job)};
    const auto now = std::chrono::duration_cast<milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    const std::vector<std::string> args{success ? "succeeded" : "failed", std::move(reason),
                                        std::to_string(now), std::to_string(ttl.count()),
                                        done_channel(s->keys, job),
                                        std::string(s->publish_command())};
    std::int64_t reply = 0;
    auto [ec, n] = co_await detail::eval(s->conn, rec, keys, args, reply, target.get());
    co_return ec;
}

asio::awaitable<error_code> wait_deps(std::shared_ptr<detail::session_impl> s, std::string job,
                                      std::vector<std::string> deps,
                                      steady::time_point deadline, detail::diag_target target) {
    diagnostics& d = target.get();
    if (deps.empty()) co_return error_code();
    std::vector<std::string> channels;
    for (const auto& dep : deps) channels.push_back(done_channel(s->keys, dep));
    // Listen on every dependency first, then look: a completion after the look is heard.
    detail::channel_waiter w(*s, channels);
    std::vector<bool> done(deps.size(), false);
    for (;;) {
        if (s->closed || w.closed()) co_return error_code(error::session_closed);
        co_await stop_if_cancelled();
        w.clear();
        std::string missing;
        for (std::size_t i = 0; i < deps.size(); ++i) {
            if (done[i]) continue;
            request req;
            req.push("HMGET", s->keys.job(deps[i]), "status", "reason");
            std::vector<std::optional<std::string>> f;
            auto [ec, n] = co_await s->conn.async_exec(req, f, d, nothrow);
            if (ec) co_return ec;
            if (f.size() == 2 && f[0] && *f[0] == "succeeded") {
                done[i] = true;
            } else if (f.size() == 2 && f[0]) {
                std::string msg = "job '" + job + "': dependency '" + deps[i] + "' " +
                                  (*f[0] == "failed" ? "failed" : "ended as '" + *f[0] + "'");
                if (f[1] && !f[1]->empty()) msg += " (" + *f[1] + ")";
                d.set_client_message(msg);
                co_return error_code(error::dependency_failed);
            } else {
                missing += (missing.empty() ? "'" : ", '") + deps[i] + "'";
            }
        }
        if (missing.empty()) co_return error_code();
        if (steady::now() >= deadline) {
            d.set_client_message("job '" + job + "': dependencies not completed before the "
                                 "deadline: " + missing);
            co_return error_code(error::timeout);
        }
        co_await w.wait_until(deadline);
    }
}

}  // namespace

barrier::barrier(session& s, barrier_options opts) : session_(&s), opts_(opts) {
    check_ttl(opts_.ttl);
}

// Each operation checks its input into the diagnostics it will fill (the caller's, or its own:
// diag_target), then runs a coroutine that owns them.

void barrier::arrive_impl(std::string batch, diagnostics* diag, count_handler handler) {
    auto s = detail::access::impl(*session_);
    detail::diag_target target(diag);
    diagnostics& d = target.get();
    d.clear();
    error_code ec = detail::check_name("barrier batch", batch, d);
    if (!ec && s->closed) ec = error::session_closed;
    if (ec) return detail::complete_later(*s, std::move(handler), ec, std::int64_t(0));
    auto& sr = *s;
    detail::launch(sr, arrive(std::move(s), std::move(batch), opts_.ttl, std::move(target)),
                   std::move(handler));
}

void barrier::wait_impl(std::string batch, std::int64_t total, steady::time_point deadline,
                        diagnostics* diag, count_handler handler) {
    auto s = detail::access::impl(*session_);
    detail::diag_target target(diag);
    diagnostics& d = target.get();
    d.clear();
    error_code ec = detail::check_name("barrier batch", batch, d);
    if (!ec && total < 1)
        ec = detail::invalid(d, "barrier '" + batch + "': total " + std::to_string(total) +
                                    " is below 1");
    if (!ec && s->closed) ec = error::session_closed;
    if (ec) return detail::complete_later(*s, std::move(handler), ec, std::int64_t(0));
    auto& sr = *s;
    detail::launch(sr, wait_barrier(std::move(s), std::move(batch), total, deadline,
                                    std::move(target)),
                   std::move(handler));
}

dependencies::dependencies(session& s, barrier_options opts) : session_(&s), opts_(opts) {
    check_ttl(opts_.ttl);
}

void dependencies::complete_impl(std::string job_id, bool success, std::string reason,
                                 diagnostics* diag, void_handler handler) {
    auto s = detail::access::impl(*session_);
    detail::diag_target target(diag);
    diagnostics& d = target.get();
    d.clear();
    error_code ec = detail::check_name("job id", job_id, d);
    if (!ec && s->closed) ec = error::session_closed;
    if (ec) return detail::complete_later(*s, std::move(handler), ec);
    auto& sr = *s;
    detail::launch(sr, complete(std::move(s), std::move(job_id), success, std::move(reason),
                                opts_.ttl, std::move(target)),
                   std::move(handler));
}

void dependencies::wait_impl(std::string job_id, std::vector<std::string> deps,
                             steady::time_point deadline, diagnostics* diag,
                             void_handler handler) {
    auto s = detail::access::impl(*session_);
    detail::diag_target target(diag);
    diagnostics& d = target.get();
    d.clear();
    error_code ec = detail::check_name("job id", job_id, d);
    for (const auto& dep : deps) {
        if (ec) break;
        ec = detail::check_name("dependency of job '" + job_id + "'", dep, d);
    }
    if (!ec && s->closed) ec = error::session_closed;
    if (ec) return detail::complete_later(*s, std::move(handler), ec);
    auto& sr = *s;
    detail::launch(sr, wait_deps(std::move(s), std::move(job_id), std::move(deps), deadline,
                                 std::move(target)),
                   std::move(handler));
}

}  // namespace redcoord
