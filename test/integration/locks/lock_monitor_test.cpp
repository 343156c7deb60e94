// The lock monitor against a real redis-server: listing held locks with their fields, stale
// locks by both rules, force release, keys that are not locks, and bad input.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "async_test.hpp"
#include "connection_helpers.hpp"
#include "lease_helpers.hpp"
#include "lock_fields.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::acquire_options;
using redcoord::active_lock;
using redcoord::lease;
using redcoord::lock_monitor;
using redcoord::lock_options;
using redcoord::lock_provider;
using redcoord::session;
using redcoord::test::command;
using redcoord::test::config_for;
using redcoord::test::must_acquire;
using redcoord::test::nothrow;
using redcoord::test::require_ok;
using redcoord::test::sleep_for;
using redcoord::test::with_connection;

asio::awaitable<std::vector<active_lock>> must_list(lock_monitor& mon) {
    redcoord::diagnostics diag;
    auto [ec, locks] = co_await mon.async_active_locks(diag, nothrow);
    require_ok(ec, diag);
    co_return std::move(locks);
}

asio::awaitable<std::vector<active_lock>> must_list_stale(lock_monitor& mon,
                                                          std::chrono::milliseconds after) {
    redcoord::diagnostics diag;
    auto [ec, locks] = co_await mon.async_stale_locks(after, diag, nothrow);
    require_ok(ec, diag);
    co_return std::move(locks);
}

std::map<std::string, active_lock> by_name(std::vector<active_lock> v) {
    std::map<std::string, active_lock> out;
    for (auto& l : v) out.emplace(l.name, std::move(l));
    return out;
}

std::vector<std::string> names(const std::vector<active_lock>& v) {
    std::vector<std::string> out;
    for (const auto& l : v) out.push_back(l.name);
    std::sort(out.begin(), out.end());
    return out;
}


std::int64_t ms_since_epoch(std::chrono::system_clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

TEST_CASE("lock_monitor: active locks carry the fields Redis stores",
          "[lock_monitor]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        lock_provider locks(s);
        lock_provider plain(s, {.enable_extension = false});
        lock_monitor mon(s);

        auto empty = co_await must_list(mon);
        CHECK(empty.empty());

        auto orders = co_await must_acquire(locks, "orders", {.ttl = 20s});
        const std::string owner = orders.owner();
        acquire_options again;
        again.ttl = 20s;
        again.owner = owner;
        again.reentrant = true;
        auto orders2 = co_await must_acquire(locks, "orders", again);
        // A name with structure of its own is a lock all the same.
        auto nightly = co_await must_acquire(plain, "jobs:nightly", {.ttl = 30s});

        auto listed = by_name(co_await must_list(mon));
        REQUIRE(listed.size() == 2);
        REQUIRE(listed.count("orders") == 1);
        REQUIRE(listed.count("jobs:nightly") == 1);

        for (const auto& [name, l] : listed) {
            const std::string key = "redcoord:lock:{" + name + "}";
            const auto stored = co_await command(conn, "GET", key);
            const auto f = redcoord::test::split_lock_value(stored);
            const auto fence = co_await command(conn, "GET", key + ":fence");
            const auto pttl = std::stoll(co_await command(conn, "PTTL", key));
            INFO(name);
            CHECK(l.owner == f.owner);
            CHECK(l.node == f.node);
            CHECK(l.node == "node-a");
            CHECK(l.fencing_token == std::stoll(fence));
            CHECK(l.holds == std::stoll(f.holds));
            CHECK(ms_since_epoch(l.acquired_at) == std::stoll(f.since));
            CHECK(l.watchdog == (f.watchdog == "1"));
            // Read before the PTTL above: at least as much left, and no more than the TTL.
            CHECK(l.remaining_ttl.count() >= pttl);
            CHECK(l.remaining_ttl <= (name == "orders" ? 20s : 30s));
        }
        CHECK(listed["orders"].owner == owner);
        CHECK(listed["orders"].holds == 2);
        CHECK(listed["orders"].watchdog);
        CHECK(listed["orders"].fencing_token == orders.fencing_token());
        CHECK(listed["jobs:nightly"].holds == 1);
        CHECK_FALSE(listed["jobs:nightly"].watchdog);
        // The server's clock and ours agree to well within a minute on one host.
        const auto skew = std::chrono::system_clock::now() - listed["orders"].acquired_at;
        CHECK(skew < 60s);
        CHECK(skew > -60s);

        redcoord::diagnostics diag;
        auto [e1] = co_await orders2.async_release(diag, nothrow);
        auto [e2] = co_await orders.async_release(diag, nothrow);
        auto [e3] = co_await nightly.async_release(diag, nothrow);
        CHECK_FALSE(e1);
        CHECK_FALSE(e2);
        CHECK_FALSE(e3);
        auto after = co_await must_list(mon);
        CHECK(after.empty());
    });
}

TEST_CASE("lock_monitor: a lock without watchdog held past the threshold is stale",
          "[lock_monitor]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        lock_provider plain(s, {.enable_extension = false});
        lock_provider renewed(s);
        lock_monitor mon(s);
        auto a = co_await must_acquire(plain, "report", {.ttl = 30s});
        auto b = co_await must_acquire(renewed, "renewed", {.ttl = 30s});
        co_await sleep_for(300ms);

        auto stale = co_await must_list_stale(mon, 200ms);
        // The watchdog lock is held as long, but its holder keeps it alive: not stale.
        CHECK(names(stale) == std::vector<std::string>{"report"});
        REQUIRE(stale.size() == 1);
        CHECK(stale[0].owner == a.owner());

        auto fresh = co_await must_list_stale(mon, 10s);
        CHECK(fresh.empty());
        auto zero = co_await must_list_stale(mon, 0ms);
        CHECK(names(zero) == std::vector<std::string>{"report"});
    });
}

TEST_CASE("lock_monitor: a lock whose node has no heartbeat while another node has one is stale",
          "[lock_monitor]") {
    redcoord::test::redis_server srv;
    redcoord::test::run_async([&](asio::io_context& ioc) -> asio::awaitable<void> {
        redcoord::connection conn_a(ioc.get_executor());
        redcoord::connection conn_b(ioc.get_executor());
        conn_a.async_run(config_for(srv), asio::detached);
        conn_b.async_run(config_for(srv), asio::detached);
        {
            session sa(conn_a, {.node_id = "node-a"});
            session sb(conn_b, {.node_id = "node-b"});
            lock_provider la(sa);
            lock_provider lb(sb);
            lock_monitor mon(sa);
            auto a = co_await must_acquire(la, "a-lock", {.ttl = 30s});
            auto b = co_await must_acquire(lb, "b-lock", {.ttl = 30s});

            // No heartbeat anywhere (membership not in use): only the watchdog rule applies,
            // and both locks are renewed.
            auto none = co_await must_list_stale(mon, 1h);
            CHECK(none.empty());

            // node-a beats, node-b does not: node-b's lock is stale.
            co_await command(conn_a, "SET", "redcoord:hb:{registry}:node-a",
                             R"({"node":"node-a","timestamp":0})", "PX", "30000");
            auto stale = co_await must_list_stale(mon, 1h);
            CHECK(names(stale) == std::vector<std::string>{"b-lock"});
            REQUIRE(stale.size() == 1);
            CHECK(stale[0].node == "node-b");
            CHECK(stale[0].owner == b.owner());

            // Once node-b beats too, nothing is stale.
            co_await command(conn_a, "SET", "redcoord:hb:{registry}:node-b",
                             R"({"node":"node-b","timestamp":0})", "PX", "30000");
            auto alive = co_await must_list_stale(mon, 1h);
            CHECK(alive.empty());

            // A heartbeat of a node holding no lock is enough to show membership is in use.
            co_await command(conn_a, "DEL", "redcoord:hb:{registry}:node-a", "redcoord:hb:{registry}:node-b");
            co_await command(conn_a, "SET", "redcoord:hb:{registry}:node-c", "{}", "PX", "30000");
            auto both = co_await must_list_stale(mon, 1h);
            CHECK(names(both) == std::vector<std::string>{"a-lock", "b-lock"});
        }
        conn_a.cancel();
        conn_b.cancel();
    });
}

TEST_CASE("lock_monitor: force release frees a lock and its holder hears of it",
          "[lock_monitor]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        lock_provider locks(s);
        lock_monitor mon(s);
        auto l = co_await must_acquire(locks, "orders", {.ttl = 900ms});

        auto [ec, released] = co_await mon.async_force_release("orders", nothrow);
        REQUIRE_FALSE(ec);
        CHECK(released);
        const auto exists = co_await command(conn, "EXISTS", "redcoord:lock:{orders}");
        CHECK(exists == "0");
        auto listed = co_await must_list(mon);
        CHECK(listed.empty());

        // The holder's watchdog finds it gone at its next renewal.
        auto [lost_ec] = co_await l.async_wait_lost(nothrow);
        CHECK_FALSE(lost_ec);
        CHECK(l.get_status() == lease::status::lost);

        // Free now: another holder gets it at once.
        auto [ec2, l2] = co_await locks.async_try_acquire("orders", {}, nothrow);
        REQUIRE_FALSE(ec2);
        CHECK(l2.is_held());

        auto [ec3, none] = co_await mon.async_force_release("missing", nothrow);
        REQUIRE_FALSE(ec3);
        CHECK_FALSE(none);
    });
}

TEST_CASE("lock_monitor: keys under the prefix that are not locks are ignored",
          "[lock_monitor]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        // A prefix with glob characters: it must match only itself.
        session s(conn, {.prefix = "app[1]*:", .node_id = "node-a"});
        lock_provider locks(s);
        lock_monitor mon(s);
        auto l = co_await must_acquire(locks, "real", {.ttl = 30s});
        auto tagged = co_await must_acquire(locks, "{tagged}", {.ttl = 30s});

        // Keys named as locks' main keys are, that hold no lock.
        co_await command(conn, "SET", "app[1]*:lock:{plain-string}", "x");
        co_await command(conn, "HSET", "app[1]*:lock:{other-hash}", "field", "value");
        co_await command(conn, "HSET", "app[1]*:lock:{no-fence}", "owner", "someone");
        // A string shaped like a lock's value, but with no fencing counter beside it.
        co_await command(conn, "SET", "app[1]*:lock:{lookalike}", "1:o 1 1 0 0 n");
        co_await command(conn, "RPUSH", "app[1]*:lock:{a-list}", "x");
        // A read-write lock's writer hash under the name "{tagged}": owner and fence, no count.
        co_await command(conn, "HSET", "app[1]*:lock:{{tagged}}:rw:writer", "owner", "o",
                         "fence", "1", "since", "0", "node", "n");
        // Would match the prefix read as a glob pattern, and another deployment's lock.
        co_await command(conn, "SET", "app1x:lock:{globbed}", "1:o 1 1 0 0 n");
        co_await command(conn, "SET", "app1x:lock:{globbed}:fence", "1");
        co_await command(conn, "SET", "redcoord:lock:{elsewhere}", "1:o 1 1 0 0 n");
        co_await command(conn, "SET", "redcoord:lock:{elsewhere}:fence", "1");
        // The companions of "{tagged}" share its main key's prefix: string and no hash.
        const auto companion = co_await command(conn, "EXISTS", "app[1]*:lock:{{tagged}}:fence");
        CHECK(companion == "1");

        auto listed = co_await must_list(mon);
        CHECK(names(listed) == std::vector<std::string>{"real", "{tagged}"});

        auto stale = co_await must_list_stale(mon, 1h);
        CHECK(stale.empty());
    });
}

TEST_CASE("lock_monitor: many locks are listed across SCAN pages", "[lock_monitor]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        lock_provider locks(s, {.enable_extension = false});
        lock_monitor mon(s);
        constexpr int count = 2500;
        std::vector<lease> held;
        for (int i = 0; i < count; ++i)
            held.push_back(co_await must_acquire(locks, "l" + std::to_string(i), {.ttl = 60s}));
        auto listed = co_await must_list(mon);
        CHECK(listed.size() == static_cast<std::size_t>(count));
        auto stats = mon.statistics();
        CHECK(stats.acquisitions == static_cast<std::uint64_t>(count));
    });
}

TEST_CASE("lock_monitor: bad input is invalid_argument naming the field", "[lock_monitor]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        lock_monitor mon(s);
        auto [ec, released] = co_await mon.async_force_release("", nothrow);
        CHECK(ec == redcoord::error::invalid_argument);
        CHECK_FALSE(released);

        redcoord::diagnostics diag;
        auto [ec2, stale] = co_await mon.async_stale_locks(-1ms, diag, nothrow);
        CHECK(ec2 == redcoord::error::invalid_argument);
        CHECK(diag.message().find("stale_after") != std::string::npos);
        CHECK(stale.empty());
    });
}

}  // namespace
