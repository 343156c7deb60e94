// A session whose connection object is destroyed while the session still has work under way
// (a waiter, a membership's heartbeats): what reaches the session afterwards finds the
// connection stopped, not freed. The session's waits end with an error; nothing hangs. Run
// under scripts/sanitize, a use of the destroyed connection is a test failure.
#include <redcoord/redcoord.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "async_test.hpp"
#include "connection_helpers.hpp"
#include "lease_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::lock_provider;
using redcoord::session;
using redcoord::test::config_for;
using redcoord::test::eventually;
using redcoord::test::must_acquire;
using redcoord::test::must_release;
using redcoord::test::nothrow;
using redcoord::test::sleep_for;
using redcoord::test::with_connection;

TEST_CASE("connection lifetime: a waiter whose connection object is destroyed ends with an "
          "error and the session stays usable to destroy",
          "[connection-lifetime]") {
    with_connection([](redcoord::connection& conn, auto& srv) -> asio::awaitable<void> {
        session holder(conn, {.node_id = "holder"});
        lock_provider holder_locks(holder);
        auto held = co_await must_acquire(holder_locks, "kept", {.ttl = 300ms});

        auto doomed = std::make_unique<redcoord::connection>(co_await asio::this_coro::executor);
        doomed->async_run(config_for(srv), asio::detached);
        auto waiter = std::make_unique<session>(*doomed, redcoord::session_options{
                                                             .node_id = "waiter"});
        lock_provider waiter_locks(*waiter);
        bool done = false;
        error_code result;
        redcoord::acquire_options ao;
        ao.wait = 2s;
        waiter_locks.async_acquire("kept", ao, [&](error_code ec, redcoord::lease) {
            result = ec;
            done = true;
        });
        // Waiting now: the lock is held (and kept by the holder's watchdog).
        co_await sleep_for(100ms);
        CHECK_FALSE(done);

        // The connection object goes; the session and its waiter stay. The waiter's next
        // attempt (its fallback timer, at the holder's TTL) goes through the session's handle.
        doomed.reset();
        const bool ended = co_await eventually([&] { return done; }, 20s);
        REQUIRE(ended);
        INFO(result.message());
        CHECK(result);
        waiter.reset();
        co_await must_release(held);
    });
}

TEST_CASE("connection lifetime: a membership's heartbeats and dead-node checks go on safely "
          "after its connection object is destroyed",
          "[connection-lifetime]") {
    with_connection([](redcoord::connection&, auto& srv) -> asio::awaitable<void> {
        auto doomed = std::make_unique<redcoord::connection>(co_await asio::this_coro::executor);
        doomed->async_run(config_for(srv), asio::detached);
        auto s = std::make_unique<session>(*doomed, redcoord::session_options{.node_id = "m"});
        redcoord::membership_options mo;
        mo.heartbeat_interval = 100ms;
        mo.heartbeat_grace = 100ms;
        mo.dead_check_interval = 50ms;
        auto m = std::make_unique<redcoord::membership>(*s, mo);
        auto [jec] = co_await m->async_join("", nothrow);
        REQUIRE_FALSE(jec);
        // Several heartbeats and checks while the connection is gone, then the membership and
        // the session: their graceful leave finds the connection stopped.
        doomed.reset();
        co_await sleep_for(400ms);
        auto [hec, health] = co_await m->async_health(nothrow);
        CHECK(hec);
        m.reset();
        s.reset();
        co_await sleep_for(100ms);
    });
}

}  // namespace
