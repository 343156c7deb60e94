// Mutex locks against a real redis-server, in one process: acquire and release, contention,
// the watchdog, lost leases, reentrancy, fair mode, and bad input.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "async_test.hpp"
#include "connection_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::acquire_options;
using redcoord::lease;
using redcoord::lock_options;
using redcoord::lock_provider;
using redcoord::session;
using redcoord::test::command;
using redcoord::test::nothrow;
using redcoord::test::require_ok;
using redcoord::test::wait_until;
using redcoord::test::with_connection;

asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
    asio::steady_timer t(co_await asio::this_coro::executor);
    t.expires_after(d);
    co_await t.async_wait(asio::use_awaitable);
}

// Acquires, which must succeed.
asio::awaitable<lease> must_acquire(lock_provider& locks, std::string name,
                                    const acquire_options& opts) {
    redcoord::diagnostics diag;
    auto [ec, l] = co_await locks.async_acquire(name, opts, diag, nothrow);
    require_ok(ec, diag);
    REQUIRE(l.is_held());
    co_return std::move(l);
}

asio::awaitable<void> must_release(lease& l) {
    redcoord::diagnostics diag;
    auto [ec] = co_await l.async_release(diag, nothrow);
    require_ok(ec, diag);
}

TEST_CASE("lock: acquire stores the documented hash; release deletes it", "[lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        lock_provider locks(s);
        auto l = co_await must_acquire(locks, "orders", {.ttl = 10s});
        CHECK(l.key() == "redcoord:lock:orders");
        CHECK(l.owner().starts_with("node-a:"));
        CHECK(l.fencing_token() == 1);
        auto owner = co_await command(conn, "HGET", "redcoord:lock:orders", "owner");
        CHECK(owner == l.owner());
        auto node = co_await command(conn, "HGET", "redcoord:lock:orders", "node");
        CHECK(node == "node-a");
        auto pttl = std::stoll(co_await command(conn, "PTTL", "redcoord:lock:orders"));
        CHECK(pttl > 5000);
        CHECK(pttl <= 10000);
        auto fence = co_await command(conn, "GET", "{redcoord:lock:orders}:fence");
        CHECK(fence == "1");
        co_await must_release(l);
        CHECK(l.get_status() == lease::status::released);
        auto exists = co_await command(conn, "EXISTS", "redcoord:lock:orders");
        CHECK(exists == "0");
        // Releasing twice is harmless.
        co_await must_release(l);
        // The next holder gets a larger fencing token.
        auto l2 = co_await must_acquire(locks, "orders", {});
        CHECK(l2.fencing_token() == 2);
        co_await must_release(l2);
    });
}

TEST_CASE("lock: try_acquire of a held lock gives an empty lease", "[lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        lock_provider locks(s);
        auto l = co_await must_acquire(locks, "job", {});
        auto [ec, other] = co_await locks.async_try_acquire("job", {}, nothrow);
        REQUIRE_FALSE(ec);
        CHECK_FALSE(other);
        co_await must_release(l);
        auto [ec2, again] = co_await locks.async_try_acquire("job", {}, nothrow);
        REQUIRE_FALSE(ec2);
        CHECK(again.is_held());
    });
}

TEST_CASE("lock: 50 coroutines increment a counter non-atomically under one lock", "[lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        lock_provider locks(s, {.default_lock_timeout = 5s});
        constexpr int workers = 50, rounds = 20;
        int done = 0;
        std::int64_t last_fence = 0;
        bool fences_increase = true;
        auto ex = co_await asio::this_coro::executor;
        for (int w = 0; w < workers; ++w) {
            asio::co_spawn(
                ex,
                [&]() -> asio::awaitable<void> {
                    for (int r = 0; r < rounds; ++r) {
                        auto l = co_await must_acquire(locks, "counter", {.wait = 30s});
                        if (l.fencing_token() <= last_fence) fences_increase = false;
                        last_fence = l.fencing_token();
                        std::string cur;
                        {
                            redcoord::request req;
                            req.push("GET", "counter-value");
                            std::optional<std::string> reply;
                            auto [ec, n] = co_await conn.async_exec(req, reply, nothrow);
                            REQUIRE_FALSE(ec);
                            cur = reply.value_or("0");
                        }
                        co_await command(conn, "SET", "counter-value",
                                         std::to_string(std::stoll(cur) + 1));
                        co_await must_release(l);
                    }
                    ++done;
                },
                asio::detached);
        }
        co_await wait_until([&] { return done == workers; });
        auto total = co_await command(conn, "GET", "counter-value");
        CHECK(total == std::to_string(workers * rounds));
        CHECK(fences_increase);
        auto stats = s.get_lock_statistics();
        CHECK(stats.acquisitions == static_cast<std::uint64_t>(workers * rounds));
        CHECK(stats.contended_acquisitions > 0);
    });
}

}  // namespace
