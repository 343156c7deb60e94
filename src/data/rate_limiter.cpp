#include "core/access.hpp"
#include "core/data_ops.hpp"

#include <redcoord/error.hpp>
#include <redcoord/rate_limiter.hpp>
#include <redcoord/script.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include <algorithm>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace redcoord {

namespace asio = boost::asio;
using boost::system::error_code;
using detail::session_impl;
using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

namespace {

using decision_result = std::tuple<error_code, rate_decision>;

std::string what_of(const std::string& name) { return "rate limiter '" + name + "'"; }

// The checks every operation makes, into d: error::invalid_argument naming the field.
error_code check_rate(diagnostics& d, const std::string& name, const rate_limit& rate) {
    error_code ec = detail::check_name("rate limiter name", name, d);
    if (ec) return ec;
    if (rate.limit < 1)
        return detail::invalid(d, what_of(name) + ": limit " + std::to_string(rate.limit) +
                                      " is below 1");
    return detail::check_duration_arg(d, what_of(name), "window", rate.window);
}

std::string rate_text(const rate_limit& rate) {
    return std::to_string(rate.limit) + " per " + std::to_string(rate.window.count()) + " ms";
}

asio::awaitable<decision_result> take(session_impl& s, const std::string& name,
                                      const rate_limit& rate, std::uint32_t permits,
                                      diagnostics& d) {
    static const script& sc = script::embedded("rate_limit");
    const std::vector<std::string> keys{s.keys.rate(name)};
    const std::vector<std::string> args{std::to_string(rate.limit),
                                        std::to_string(rate.window.count()),
                                        std::to_string(permits), s.new_owner_token()};
    std::vector<std::int64_t> reply;
    auto [ec, n] = co_await detail::eval(s.conn, sc, keys, args, reply, d);
    rate_decision out;
    if (!ec && reply.size() != 4) {
        ec = error::unexpected_reply;
        d.set_client_message("rate_limit: expected 4 integers");
    }
    if (!ec) {
        out.allowed = reply[0] == 1;
        out.retry_after = out.allowed ? milliseconds(0) : milliseconds(std::max<std::int64_t>(
                                                              reply[1], 1));
        out.remaining = static_cast<std::uint32_t>(std::max<std::int64_t>(reply[2], 0));
        out.server_time = milliseconds(reply[3]);
    }
    co_return decision_result{ec, out};
}

asio::awaitable<decision_result> try_coro(std::shared_ptr<session_impl> s, std::string name,
                                          rate_limit rate, std::uint32_t permits,
                                          detail::diag_target target) {
    co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
    co_return co_await take(*s, name, rate, permits, target.get());
}

// Tries, and while refused sleeps for the reported retry_after (bounded by the deadline) and
// tries again: the only waiting is on the server's own answer, so no push is needed.
asio::awaitable<error_code> acquire_coro(std::shared_ptr<session_impl> s, std::string name,
                                         rate_limit rate, milliseconds timeout,
                                         detail::diag_target target) {
    co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
    diagnostics& d = target.get();
    const auto start = steady::now();
    const auto deadline = start + timeout;
    asio::steady_timer timer(s->conn.get_executor());
    for (;;) {
        if (s->closed) co_return error_code(error::session_closed);
        co_await detail::stop_if_cancelled();
        auto [ec, decision] = co_await take(*s, name, rate, 1, d);
        if (ec) co_return ec;
        if (decision.allowed) co_return error_code();
        const auto now = steady::now();
        if (now >= deadline) {
            d.set_client_message(
                what_of(name) + " (" + rate_text(rate) + "): no permit within " +
                std::to_string(timeout.count()) + " ms (the next is due in " +
                std::to_string(decision.retry_after.count()) + " ms)");
            co_return error_code(error::acquire_timeout);
        }
        timer.expires_at(std::min(deadline, now + decision.retry_after));
        auto [wec] = co_await timer.async_wait(detail::data_nothrow);
        if (wec) co_return wec;
    }
}

asio::awaitable<std::tuple<error_code, std::uint32_t>> remaining_coro(
    std::shared_ptr<session_impl> s, std::string name, rate_limit rate,
    detail::diag_target target) {
    co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
    static const script& sc = script::embedded("rate_remaining");
    diagnostics& d = target.get();
    const std::vector<std::string> keys{s->keys.rate(name)};
    const std::vector<std::string> args{std::to_string(rate.limit),
                                        std::to_string(rate.window.count())};
    std::vector<std::int64_t> reply;
    auto [ec, n] = co_await detail::eval(s->conn, sc, keys, args, reply, d);
    if (!ec && reply.size() != 2) {
        ec = error::unexpected_reply;
        d.set_client_message("rate_remaining: expected 2 integers");
    }
    std::uint32_t left = 0;
    if (!ec) left = static_cast<std::uint32_t>(std::max<std::int64_t>(reply[0], 0));
    co_return std::tuple{ec, left};
}

}  // namespace

// Each operation checks its input into the diagnostics it will fill (the caller's, or its own:
// diag_target), then runs a coroutine that owns them.

void rate_limiter::try_impl(std::string name, rate_limit rate, std::uint32_t permits,
                            diagnostics* diag, decision_handler handler) {
    auto s = detail::access::impl(*session_);
    detail::diag_target target(diag);
    diagnostics& d = target.get();
    d.clear();
    error_code ec = check_rate(d, name, rate);
    if (!ec && (permits < 1 || permits > rate.limit))
        ec = detail::invalid(d, what_of(name) + ": permits " + std::to_string(permits) +
                                    " is not in [1, limit " + std::to_string(rate.limit) + "]");
    if (!ec && s->closed) ec = error::session_closed;
    if (ec) return detail::complete_later(*s, std::move(handler), ec, rate_decision{});
    auto& sr = *s;
    detail::launch(sr, try_coro(std::move(s), std::move(name), rate, permits, std::move(target)),
                   std::move(handler));
}

void rate_limiter::acquire_impl(std::string name, rate_limit rate, milliseconds timeout,
                                diagnostics* diag, void_handler handler) {
    auto s = detail::access::impl(*session_);
    detail::diag_target target(diag);
    diagnostics& d = target.get();
    d.clear();
    error_code ec = check_rate(d, name, rate);
    if (!ec) ec = detail::check_duration_arg(d, what_of(name), "timeout", timeout, true);
    if (!ec && s->closed) ec = error::session_closed;
    if (ec) return detail::complete_later(*s, std::move(handler), ec);
    auto& sr = *s;
    detail::launch(sr, acquire_coro(std::move(s), std::move(name), rate, timeout,
                                    std::move(target)),
                   std::move(handler));
}

void rate_limiter::remaining_impl(std::string name, rate_limit rate, diagnostics* diag,
                                  count_handler handler) {
    auto s = detail::access::impl(*session_);
    detail::diag_target target(diag);
    diagnostics& d = target.get();
    d.clear();
    error_code ec = check_rate(d, name, rate);
    if (!ec && s->closed) ec = error::session_closed;
    if (ec) return detail::complete_later(*s, std::move(handler), ec, std::uint32_t(0));
    auto& sr = *s;
    detail::launch(sr, remaining_coro(std::move(s), std::move(name), rate, std::move(target)),
                   std::move(handler));
}

}  // namespace redcoord
