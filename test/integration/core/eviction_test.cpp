// Servers that may evict lease keys (a maxmemory-policy other than noeviction), against real
// redis-servers: the session reports them (session_options::on_warning) and, when asked to,
// refuses new leases on them (refuse_evicting_server) until the policy is fixed; a server whose
// policy cannot be read is reported, not refused; a noeviction server is not reported.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "async_test.hpp"
#include "bad_input.hpp"
#include "connection_helpers.hpp"
#include "lease_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using redcoord::acquire_options;
using redcoord::diagnostics;
using redcoord::lock_provider;
using redcoord::session;
using redcoord::session_options;
using redcoord::session_warning;
using redcoord::test::check_names;
using redcoord::test::command;
using redcoord::test::config_for;
using redcoord::test::eventually_async;
using redcoord::test::must_acquire;
using redcoord::test::must_release;
using redcoord::test::nothrow;
using redcoord::test::redis_options;
using redcoord::test::redis_server;
using redcoord::test::require_ok;
using redcoord::test::run_async;
using redcoord::test::wait_for;

// Runs body(conn, srv) with a connection to a fresh server started with these config lines.
template <class Body>
void with_server(std::vector<std::string> config_lines, Body body) {
    redis_options ro;
    ro.extra_config = std::move(config_lines);
    redis_server srv(ro);
    run_async([&](asio::io_context& ioc) -> asio::awaitable<void> {
        redcoord::connection conn(ioc.get_executor());
        conn.async_run(config_for(srv), asio::detached);
        co_await body(conn, srv);
        conn.cancel();
    });
}

const std::vector<std::string> evicting{"maxmemory-policy allkeys-lru"};

// Session options that record every warning in `out`.
session_options recording(std::vector<session_warning>& out, bool refuse) {
    session_options so;
    so.on_warning = [&out](const session_warning& w) { out.push_back(w); };
    so.refuse_evicting_server = refuse;
    return so;
}

TEST_CASE("eviction: an evicting server is reported to on_warning, and leases still work",
          "[eviction]") {
    with_server(evicting, [](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        std::vector<session_warning> warnings;
        session s(conn, recording(warnings, false));
        {
            const auto awaited = co_await wait_for([&] { return !warnings.empty(); });
            REQUIRE(awaited);
        }
        CHECK(warnings.size() == 1);
        CHECK(warnings[0].what == session_warning::kind::evicting_server);
        check_names(warnings[0].message, {"maxmemory-policy", "allkeys-lru", "noeviction"});
        // Without refuse_evicting_server, nothing is refused.
        lock_provider locks(s);
        auto l = co_await must_acquire(locks, "orders", {.ttl = 10s});
        co_await must_release(l);
    });
}

TEST_CASE("eviction: a noeviction server gives no warning", "[eviction]") {
    with_server({}, [](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        std::vector<session_warning> warnings;
        session s(conn, recording(warnings, true));
        // With refuse_evicting_server, the first acquisition waits for the policy's read: once
        // it is granted, the read is over.
        lock_provider locks(s);
        auto l = co_await must_acquire(locks, "orders", {.ttl = 10s});
        CHECK(warnings.empty());
        co_await must_release(l);
    });
}

TEST_CASE("eviction: refuse_evicting_server refuses new leases until the policy is fixed",
          "[eviction]") {
    with_server(evicting, [](redcoord::connection& conn, auto& srv) -> asio::awaitable<void> {
        std::vector<session_warning> warnings;
        session s(conn, recording(warnings, true));
        lock_provider locks(s);
        redcoord::semaphore_provider permits(s);
        redcoord::rw_lock_provider rw(s);
        redcoord::leader_election election(s);
        acquire_options ao;
        ao.ttl = 10s;
        diagnostics diag;
        // The first acquisition waits for the policy's read, then is refused.
        auto [ec, l] = co_await locks.async_acquire("orders", ao, diag, nothrow);
        CHECK(ec == redcoord::error::evicting_server);
        CHECK_FALSE(l);
        check_names(diag.message(), {"lock 'orders'", "allkeys-lru", "refuse_evicting_server"});
        auto [ec2, p] = co_await permits.async_acquire("pool", 2, ao, diag, nothrow);
        CHECK(ec2 == redcoord::error::evicting_server);
        check_names(diag.message(), {"semaphore 'pool'", "allkeys-lru"});
        auto [ec3, r] = co_await rw.async_acquire_read("doc", ao, diag, nothrow);
        CHECK(ec3 == redcoord::error::evicting_server);
        auto [ec4, lead] = co_await election.async_campaign("boss", nothrow);
        CHECK(ec4 == redcoord::error::evicting_server);
        auto [ec5, t] = co_await locks.async_try_acquire("orders", ao, diag, nothrow);
        CHECK(ec5 == redcoord::error::evicting_server);
        CHECK(warnings.size() == 1);
        // Nothing was written.
        {
            const auto awaited = co_await command(conn, "EXISTS", "redcoord:lock:{orders}");
            CHECK(awaited == "0");
        }
        {
            const auto awaited = co_await command(conn, "EXISTS", "redcoord:leader:{boss}");
            CHECK(awaited == "0");
        }

        // Fixed (on every master of a cluster); the session reads the policy again after a
        // reconnect.
        for (const auto& reply : redcoord::test::cli_on_each_node(
                 srv, {"CONFIG", "SET", "maxmemory-policy", "noeviction"}))
            CHECK(reply == "OK");
        const auto connects = conn.get_usage().connects;
        redcoord::test::cli_on_each_node(srv, {"CLIENT", "KILL", "TYPE", "normal"});
        {
            const auto awaited = co_await wait_for([&] { return conn.get_usage().connects > connects; });
            REQUIRE(awaited);
        }
        // The gap of the reconnect reaches the session on its next turns.
        redcoord::lease granted;
        const bool got = co_await eventually_async(
            [&]() -> asio::awaitable<bool> {
                auto [gec, g] = co_await locks.async_acquire("orders", ao, diag, nothrow);
                if (gec && gec != redcoord::error::evicting_server) require_ok(gec, diag);
                granted = std::move(g);
                co_return granted.is_held();
            },
            10s);
        REQUIRE(got);
        CHECK(warnings.size() == 1);  // noeviction now: nothing more to report
        co_await must_release(granted);
    });
}

// Not on the cluster: the cluster fixture itself needs CONFIG (CONFIG SET cluster-node-timeout).
TEST_CASE("eviction: a policy that cannot be read is reported as unknown, not refused",
          "[eviction][single_server]") {
    // As on managed Redis: CONFIG renamed away.
    with_server({"rename-command CONFIG \"\""},
                [](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
                    std::vector<session_warning> warnings;
                    session s(conn, recording(warnings, true));
                    lock_provider locks(s);
                    auto l = co_await must_acquire(locks, "orders", {.ttl = 10s});
                    REQUIRE(warnings.size() == 1);
                    CHECK(warnings[0].what == session_warning::kind::policy_unknown);
                    check_names(warnings[0].message, {"maxmemory-policy", "could not be read"});
                    co_await must_release(l);
                });
}

}  // namespace
