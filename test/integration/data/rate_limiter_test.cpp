// The rate limiter against a real redis-server: limit permits per window then a refusal with
// the time until the next, permits taken all or none, the documented key and its TTL, waiting
// for a permit, the deadline, cancellation, bad input naming the field, and separate processes
// that together never take more than the limit in any window.
//
// Worker processes (test/support/cluster_worker.cpp) are started with fork/exec, tied to this
// process and ended by their PID only.
#include <redcoord/redcoord.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "async_test.hpp"
#include "cluster_process.hpp"
#include "connection_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::diagnostics;
using redcoord::rate_decision;
using redcoord::rate_limit;
using redcoord::rate_limiter;
using redcoord::session;
using redcoord::test::cluster_process;
using redcoord::test::command;
using redcoord::test::nothrow;
using redcoord::test::port_of;
using redcoord::test::redis_server;
using redcoord::test::require_ok;
using redcoord::test::run_async;
using redcoord::test::side_connection;
using redcoord::test::sleep_for;
using redcoord::test::wait_for;
using redcoord::test::with_connection;

asio::awaitable<rate_decision> try_take(rate_limiter& rl, std::string name, rate_limit rate,
                                        std::uint32_t permits = 1) {
    diagnostics diag;
    auto [ec, d] = co_await rl.async_try_acquire(std::move(name), rate, permits, diag, nothrow);
    require_ok(ec, diag);
    co_return d;
}

asio::awaitable<std::uint32_t> remaining(rate_limiter& rl, std::string name, rate_limit rate) {
    diagnostics diag;
    auto [ec, n] = co_await rl.async_remaining(std::move(name), rate, diag, nothrow);
    require_ok(ec, diag);
    co_return n;
}

// The scores (server ms) of the permits in a limiter's window, oldest first.
asio::awaitable<std::vector<std::int64_t>> window_times(redcoord::connection& conn,
                                                        std::string key) {
    redcoord::request req;
    req.push("ZRANGE", key, 0, -1);
    std::vector<std::string> members;
    diagnostics diag;
    auto [ec, n] = co_await conn.async_exec(req, members, diag, nothrow);
    require_ok(ec, diag);
    std::vector<std::int64_t> out;
    for (const auto& m : members)
        out.push_back(std::stoll(co_await command(conn, "ZSCORE", key, m)));
    co_return out;
}

}  // namespace

TEST_CASE("rate_limiter: allows limit permits per window then refuses with retry_after",
          "[rate_limiter]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        rate_limiter rl(s);
        const rate_limit rate{3, 60s};
        for (std::uint32_t i = 0; i < 3; ++i) {
            auto d = co_await try_take(rl, "api", rate);
            CHECK(d.allowed);
            CHECK(d.remaining == 2 - i);
            CHECK(d.retry_after == 0ms);
            CHECK(d.server_time.count() > 0);
        }
        auto refused = co_await try_take(rl, "api", rate);
        CHECK_FALSE(refused.allowed);
        CHECK(refused.remaining == 0);
        CHECK(refused.retry_after > 0ms);
        CHECK(refused.retry_after <= 60s);
        CHECK(co_await remaining(rl, "api", rate) == 0);

        // The documented key: one member per permit, expiring one window after the last.
        CHECK(co_await command(conn, "ZCARD", "redcoord:rate:{api}") == "3");
        const auto pttl = std::stoll(co_await command(conn, "PTTL", "redcoord:rate:{api}"));
        CHECK(pttl > 0);
        CHECK(pttl <= 60000);

        // Another name has a window of its own.
        CHECK(co_await remaining(rl, "other", rate) == 3);
        const auto t1 = co_await try_take(rl, "other", rate);
        CHECK(t1.allowed);
        CHECK(co_await remaining(rl, "other", rate) == 2);

        // Several permits at once: all or none.
        auto two = co_await try_take(rl, "batch", rate, 2);
        CHECK(two.allowed);
        CHECK(two.remaining == 1);
        auto two_more = co_await try_take(rl, "batch", rate, 2);
        CHECK_FALSE(two_more.allowed);
        CHECK(two_more.retry_after > 0ms);
        CHECK(co_await command(conn, "ZCARD", "redcoord:rate:{batch}") == "2");
        auto one = co_await try_take(rl, "batch", rate, 1);
        CHECK(one.allowed);
        CHECK(one.remaining == 0);
    });
}

TEST_CASE("rate_limiter: a refused caller that waits retry_after gets a permit",
          "[rate_limiter]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        rate_limiter rl(s);
        const rate_limit rate{2, 150ms};
        const auto t2 = co_await try_take(rl, "slide", rate);
        CHECK(t2.allowed);
        const auto t3 = co_await try_take(rl, "slide", rate);
        CHECK(t3.allowed);
        auto refused = co_await try_take(rl, "slide", rate);
        REQUIRE_FALSE(refused.allowed);
        CHECK(refused.retry_after <= 150ms);
        // retry_after is when the oldest permit leaves the window, on the server's clock: a
        // caller that waits it is allowed (nobody else takes permits here).
        bool allowed = false;
        for (int i = 0; i < 5 && !allowed; ++i) {
            co_await sleep_for(refused.retry_after);
            refused = co_await try_take(rl, "slide", rate);
            allowed = refused.allowed;
        }
        CHECK(allowed);
        auto times = co_await window_times(conn, "redcoord:rate:{slide}");
        REQUIRE(!times.empty());
        CHECK(times.size() <= 2);
    });
}

TEST_CASE("rate_limiter: bad input is invalid_argument naming the field and value",
          "[rate_limiter]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        rate_limiter rl(s);
        diagnostics diag;
        auto has = [&](const std::string& text) {
            INFO(diag.message());
            return diag.message().find(text) != std::string::npos;
        };

        auto [ec1, d1] = co_await rl.async_try_acquire("", rate_limit{1, 1s}, diag, nothrow);
        CHECK(ec1 == redcoord::error::invalid_argument);
        CHECK(has("rate limiter name"));

        auto [ec2, d2] = co_await rl.async_try_acquire("x", rate_limit{0, 1s}, diag, nothrow);
        CHECK(ec2 == redcoord::error::invalid_argument);
        CHECK(has("limit 0 is below 1"));

        auto [ec3, d3] = co_await rl.async_try_acquire("x", rate_limit{1, 0ms}, diag, nothrow);
        CHECK(ec3 == redcoord::error::invalid_argument);
        CHECK(has("window 0 ms is not positive"));

        auto [ec4, d4] = co_await rl.async_try_acquire("x", rate_limit{1, -5ms}, diag, nothrow);
        CHECK(ec4 == redcoord::error::invalid_argument);
        CHECK(has("window -5 ms"));

        const rate_limit too_long{1, redcoord::max_duration + 1ms};
        auto [ec5, d5] = co_await rl.async_try_acquire("x", too_long, diag, nothrow);
        CHECK(ec5 == redcoord::error::invalid_argument);
        CHECK(has("exceeds max_duration"));

        auto [ec6, d6] = co_await rl.async_try_acquire("x", rate_limit{3, 1s}, 4, diag, nothrow);
        CHECK(ec6 == redcoord::error::invalid_argument);
        CHECK(has("permits 4 is not in [1, limit 3]"));

        auto [ec7, d7] = co_await rl.async_try_acquire("x", rate_limit{3, 1s}, 0, diag, nothrow);
        CHECK(ec7 == redcoord::error::invalid_argument);
        CHECK(has("permits 0"));

        auto [ec8] = co_await rl.async_acquire("x", rate_limit{1, 1s}, -1ms, diag, nothrow);
        CHECK(ec8 == redcoord::error::invalid_argument);
        CHECK(has("timeout -1 ms is negative"));

        auto [ec9, n9] = co_await rl.async_remaining("x", rate_limit{0, 1s}, diag, nothrow);
        CHECK(ec9 == redcoord::error::invalid_argument);
        CHECK(has("limit 0"));

        // The throwing form carries the message.
        std::string thrown;
        try {
            co_await rl.async_acquire("", rate_limit{1, 1s}, 1s,
                                      redcoord::with_diagnostics(asio::use_awaitable));
        } catch (const redcoord::error_with_diagnostics& e) {
            thrown = e.what();
        }
        CHECK(thrown.find("rate limiter name") != std::string::npos);

        // Nothing was written.
        CHECK(co_await command(conn, "EXISTS", "redcoord:rate:{x}") == "0");
    });
}

TEST_CASE("rate_limiter: async_acquire waits for a permit then takes it", "[rate_limiter]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        rate_limiter rl(s);
        const rate_limit rate{2, 300ms};
        auto first = co_await try_take(rl, "wait", rate);
        CHECK(first.allowed);
        const auto t4 = co_await try_take(rl, "wait", rate);
        CHECK(t4.allowed);
        const auto t5 = co_await try_take(rl, "wait", rate);
        CHECK_FALSE(t5.allowed);

        diagnostics diag;
        auto [ec] = co_await rl.async_acquire("wait", rate, 30s, diag, nothrow);
        require_ok(ec, diag);
        // The permit it took counts from after the first one left the window.
        auto times = co_await window_times(conn, "redcoord:rate:{wait}");
        REQUIRE(!times.empty());
        CHECK(times.back() >= first.server_time.count() + 300);
        CHECK(times.size() <= 2);
    });
}

TEST_CASE("rate_limiter: async_acquire ends with acquire_timeout at its deadline",
          "[rate_limiter]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        rate_limiter rl(s);
        const rate_limit rate{1, 60s};
        const auto t6 = co_await try_take(rl, "busy", rate);
        CHECK(t6.allowed);

        diagnostics diag;
        auto [ec] = co_await rl.async_acquire("busy", rate, 200ms, diag, nothrow);
        CHECK(ec == redcoord::error::acquire_timeout);
        INFO(diag.message());
        CHECK(diag.message().find("rate limiter 'busy'") != std::string::npos);
        CHECK(diag.message().find("no permit within 200 ms") != std::string::npos);

        // A zero timeout is one try.
        auto [ec0] = co_await rl.async_acquire("busy", rate, 0ms, diag, nothrow);
        CHECK(ec0 == redcoord::error::acquire_timeout);
        CHECK(co_await command(conn, "ZCARD", "redcoord:rate:{busy}") == "1");

        auto [ec1] = co_await rl.async_acquire("free", rate, 0ms, diag, nothrow);
        CHECK_FALSE(ec1);
        CHECK(co_await command(conn, "ZCARD", "redcoord:rate:{free}") == "1");
    });
}

TEST_CASE("rate_limiter: cancellation ends a waiting async_acquire", "[rate_limiter]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        rate_limiter rl(s);
        const rate_limit rate{1, 60s};
        const auto t7 = co_await try_take(rl, "cancel", rate);
        CHECK(t7.allowed);

        auto ex = co_await asio::this_coro::executor;
        asio::cancellation_signal cancel;
        bool done = false;
        error_code result;
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
                auto [ec] = co_await rl.async_acquire(
                    "cancel", rate, 60s, asio::bind_cancellation_slot(cancel.slot(), nothrow));
                result = ec;
                done = true;
            },
            asio::detached);
        co_await sleep_for(50ms);
        CHECK_FALSE(done);
        cancel.emit(asio::cancellation_type::terminal);
        const bool ended = co_await wait_for([&] { return done; });
        REQUIRE(ended);
        CHECK(result == asio::error::operation_aborted);
        CHECK(co_await command(conn, "ZCARD", "redcoord:rate:{cancel}") == "1");
    });
}

TEST_CASE("rate_limiter: separate processes never exceed the limit in any window",
          "[rate_limiter][process]") {
    redis_server srv;
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            constexpr int processes = 3;
            constexpr std::int64_t limit = 5;
            constexpr std::int64_t window_ms = 200;
            std::vector<std::unique_ptr<cluster_process>> procs;
            for (int i = 0; i < processes; ++i) {
                std::vector<std::string> args{port_of(srv),
                                              "rate",
                                              "proc-" + std::to_string(i),
                                              "shared",
                                              std::to_string(limit),
                                              std::to_string(window_ms),
                                              "2000"};
                procs.push_back(std::make_unique<cluster_process>(args));
            }
            // Every permit taken, by the server's clock, from every process.
            std::vector<std::int64_t> taken;
            std::int64_t reported = 0;
            for (auto& p : procs) {
                for (;;) {
                    auto line = co_await p->next_line(60s);
                    INFO(p->transcript());
                    REQUIRE(line);
                    REQUIRE(!line->starts_with("error"));
                    if (line->starts_with("took ")) taken.push_back(std::stoll(line->substr(5)));
                    if (line->starts_with("done ")) {
                        reported += std::stoll(line->substr(5));
                        break;
                    }
                }
                auto code = co_await p->wait_exit(20s);
                INFO(p->transcript());
                REQUIRE(code);
                CHECK(*code == 0);
            }
            CHECK(reported == static_cast<std::int64_t>(taken.size()));
            CHECK(!taken.empty());
            // No span shorter than the window holds more than limit permits: the (limit+1)-th
            // permit after any one is at least a window later.
            std::sort(taken.begin(), taken.end());
            std::size_t violations = 0;
            std::string first_violation;
            for (std::size_t i = 0; i + limit < taken.size(); ++i) {
                if (taken[i + limit] - taken[i] < window_ms) {
                    if (violations++ == 0)
                        first_violation = std::to_string(limit + 1) + " permits within " +
                                          std::to_string(taken[i + limit] - taken[i]) +
                                          " ms from " + std::to_string(taken[i]);
                }
            }
            INFO(first_violation);
            CHECK(violations == 0);
            (void)ioc;
        },
        120s);
}
