// Membership against a real redis-server: the heartbeat key and registry layout, change events,
// dead-node detection of real processes (test/support/cluster_worker.cpp) killed with SIGKILL,
// graceful leaves, the reaper, pipelined heartbeats of many nodes, Redis restarts and bad
// options. Every wait is bounded; the tests assert outcomes, not timings.
#include <redcoord/membership.hpp>
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <unistd.h>

#include "async_test.hpp"
#include "cluster_process.hpp"
#include "connection_helpers.hpp"
#include "lock_fields.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::member_event;
using redcoord::membership;
using redcoord::membership_options;
using redcoord::node_info;
using redcoord::session;
using redcoord::session_options;
using redcoord::test::as_node;
using redcoord::test::cluster_process;
using redcoord::test::command;
using redcoord::test::config_for;
using redcoord::test::eventually;
using redcoord::test::eventually_async;
using redcoord::test::nothrow;
using redcoord::test::port_of;
using redcoord::test::redis_server;
using redcoord::test::require_ok;
using redcoord::test::run_async;
using redcoord::test::sleep_for;
using redcoord::test::with_connection;
using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

asio::awaitable<std::vector<node_info>> all_nodes(membership& m) {
    auto [ec, nodes] = co_await m.async_nodes(nothrow);
    REQUIRE_FALSE(ec);
    co_return nodes;
}

asio::awaitable<std::vector<node_info>> dead_nodes(membership& m) {
    auto [ec, nodes] = co_await m.async_dead_nodes(nothrow);
    REQUIRE_FALSE(ec);
    co_return nodes;
}

bool has_node(const std::vector<node_info>& v, const std::string& id) {
    return std::any_of(v.begin(), v.end(), [&](const node_info& n) { return n.id == id; });
}

asio::awaitable<void> must_join(membership& m, std::string node) {
    auto [ec] = co_await m.async_join(std::move(node), nothrow);
    REQUIRE_FALSE(ec);
}

asio::awaitable<bool> is_member(redcoord::connection& conn, const std::string& node) {
    co_return co_await command(conn, "SISMEMBER", "redcoord:nodes:{registry}", node) == "1";
}

std::string this_host() {
    char buf[256] = {};
    ::gethostname(buf, sizeof buf - 1);
    return buf;
}

// Member events as text ("joined node-a"), in arrival order.
struct event_log {
    std::vector<std::string> seen;
    bool contains(const std::string& e) const {
        return std::find(seen.begin(), seen.end(), e) != seen.end();
    }
    std::function<void(const member_event&)> recorder() {
        return [this](const member_event& e) {
            const char* what = e.what == member_event::kind::joined ? "joined"
                               : e.what == member_event::kind::left ? "left"
                                                                    : "dead";
            seen.push_back(std::string(what) + " " + e.node);
        };
    }
    std::string text() const {
        std::string out;
        for (const auto& s : seen) out += s + "; ";
        return out;
    }
};

TEST_CASE("membership: the heartbeat key has the documented name, JSON fields and TTL, and the "
          "registry is a set with a sliding TTL",
          "[membership]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, as_node("node-a"));
        membership_options mo;
        mo.heartbeat_interval = 300ms;
        mo.heartbeat_grace = 500ms;
        mo.version = "1.2.3";
        membership m(s, mo);
        const auto before = std::chrono::system_clock::now();
        co_await must_join(m, "");  // the session's node id
        CHECK(m.hosted() == std::vector<std::string>{"node-a"});

        auto read_beat = [&]() -> asio::awaitable<json::object> {
            auto text = co_await command(conn, "GET", "redcoord:hb:{registry}:node-a");
            auto v = json::parse(text);
            REQUIRE(v.is_object());
            co_return v.as_object();
        };
        auto beat = co_await read_beat();
        CHECK(beat.at("node").as_string() == "node-a");
        const auto ts = beat.at("timestamp").as_int64();
        const auto before_ms =
            std::chrono::duration_cast<milliseconds>(before.time_since_epoch()).count();
        CHECK(ts >= before_ms - 1000);  // Unix milliseconds, not seconds
        CHECK(beat.at("started_at").as_int64() <= ts);
        CHECK(beat.at("pid").as_int64() == ::getpid());
        CHECK(beat.at("host").as_string() == this_host());
        CHECK(beat.at("version").as_string() == "1.2.3");
        auto pttl = std::stoll(co_await command(conn, "PTTL", "redcoord:hb:{registry}:node-a"));
        CHECK(pttl > 0);
        CHECK(pttl <= 800);  // heartbeat_interval + heartbeat_grace

        const auto r0 = co_await command(conn, "TYPE", "redcoord:nodes:{registry}");
        CHECK(r0 == "set");
        const auto r1 = co_await is_member(conn, "node-a");
        CHECK(r1);
        const auto reg_ttl =
            std::stoll(co_await command(conn, "PTTL", "redcoord:nodes:{registry}"));
        CHECK(reg_ttl > std::chrono::duration_cast<milliseconds>(std::chrono::hours(24 * 29)).count());
        CHECK(reg_ttl <= std::chrono::duration_cast<milliseconds>(std::chrono::hours(24 * 30)).count());

        // The next heartbeats rewrite the key: a newer timestamp, the TTL set again.
        std::int64_t later = ts;
        const bool renewed = co_await eventually_async(
            [&]() -> asio::awaitable<bool> {
                auto b = co_await read_beat();
                later = b.at("timestamp").as_int64();
                co_return later > ts;
            },
            10s, 20ms);
        CHECK(renewed);
        pttl = std::stoll(co_await command(conn, "PTTL", "redcoord:hb:{registry}:node-a"));
        CHECK(pttl > 0);
        CHECK(pttl <= 800);

        auto nodes = co_await all_nodes(m);
        REQUIRE(nodes.size() == 1);
        CHECK(nodes[0].id == "node-a");
        CHECK(nodes[0].alive);
        CHECK(nodes[0].pid == ::getpid());
        CHECK(nodes[0].version == "1.2.3");
        CHECK(nodes[0].last_heartbeat.has_value());
        CHECK(nodes[0].started_at.has_value());
        auto [hec, health] = co_await m.async_health(nothrow);
        REQUIRE_FALSE(hec);
        CHECK(health.total == 1);
        CHECK(health.healthy == 1);
        CHECK(health.dead == 0);

        // A graceful leave removes the heartbeat and the registry entry at once.
        auto [lec] = co_await m.async_leave("", nothrow);
        REQUIRE_FALSE(lec);
        const auto r2 = co_await command(conn, "EXISTS", "redcoord:hb:{registry}:node-a");
        CHECK(r2 == "0");
        const auto r3 = co_await is_member(conn, "node-a");
        CHECK_FALSE(r3);
        CHECK(m.hosted().empty());
    });
}

TEST_CASE("membership: joins and leaves reach every watcher as events", "[membership]") {
    with_connection([](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
        session s(conn);
        membership_options mo;
        mo.heartbeat_interval = 500ms;
        membership m(s, mo);
        event_log log;
        auto w = m.subscribe(log.recorder());
        // The SUBSCRIBE went ahead of this PING on the connection: subscribed once it answers,
        // before anything is published from the other connection.
        co_await command(conn, "PING");

        // Another process's view: a second connection and session.
        redcoord::connection conn2(co_await asio::this_coro::executor);
        conn2.async_run(config_for(srv), asio::detached);
        session s2(conn2);
        membership m2(s2, mo);
        co_await must_join(m2, "node-b");
        co_await must_join(m2, "node-c");
        auto [lec] = co_await m2.async_leave("node-b", nothrow);
        REQUIRE_FALSE(lec);
        const bool all = co_await eventually(
            [&] { return log.contains("joined node-b") && log.contains("joined node-c") &&
                         log.contains("left node-b"); },
            10s);
        INFO(log.text());
        CHECK(all);
        CHECK(m2.hosted() == std::vector<std::string>{"node-c"});

        auto nodes = co_await all_nodes(m);
        CHECK_FALSE(has_node(nodes, "node-b"));
        CHECK(has_node(nodes, "node-c"));

        // Destroying a membership is a graceful leave of what it hosts.
        {
            membership m3(s2, mo);
            co_await must_join(m3, "node-d");
        }
        const bool left = co_await eventually([&] { return log.contains("left node-d"); }, 10s);
        INFO(log.text());
        CHECK(left);
        const auto r4 = co_await is_member(conn, "node-d");
        CHECK_FALSE(r4);
        const auto r5 = co_await command(conn, "EXISTS", "redcoord:hb:{registry}:node-d");
        CHECK(r5 == "0");
        conn2.cancel();
    });
}

TEST_CASE("membership: a node killed with SIGKILL is reported dead (once) but a node that "
          "left gracefully is not",
          "[membership]") {
    with_connection(
        [](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
            session s(conn, as_node("observer"));
            membership_options mo;
            mo.heartbeat_interval = 200ms;
            mo.heartbeat_grace = 300ms;
            mo.dead_check_interval = 100ms;
            membership m(s, mo);
            event_log log;
            auto w = m.subscribe(log.recorder());
            co_await must_join(m, "");

            std::vector<std::string> victim_args{port_of(srv), "member", "victim", "200", "300"};
            cluster_process victim(victim_args);
            std::vector<std::string> leaver_args{port_of(srv), "member", "leaver", "200", "300",
                                                 "leave", "300"};
            cluster_process leaver(leaver_args);
            {
                auto j1 = co_await victim.line_starting_with("joined", 20s);
                INFO(victim.transcript());
                REQUIRE(j1);
                auto j2 = co_await leaver.line_starting_with("left", 20s);
                INFO(leaver.transcript());
                REQUIRE(j2);
                auto code = co_await leaver.wait_exit(10s);
                REQUIRE(code);
                CHECK(*code == 0);
            }
            REQUIRE(victim.signal(SIGKILL));
            auto code = co_await victim.wait_exit(10s);
            REQUIRE(code);
            CHECK(*code == 128 + SIGKILL);

            // Bounded by the heartbeat TTL, the dead-node check interval and generous slack.
            std::vector<node_info> dead;
            const bool found = co_await eventually_async(
                [&]() -> asio::awaitable<bool> {
                    dead = co_await dead_nodes(m);
                    co_return has_node(dead, "victim");
                },
                15s, 20ms);
            CHECK(found);
            CHECK_FALSE(has_node(dead, "leaver"));
            CHECK_FALSE(has_node(dead, "observer"));
            for (const auto& d : dead) CHECK_FALSE(d.alive);

            const bool heard = co_await eventually([&] { return log.contains("dead victim"); },
                                                   15s);
            INFO(log.text());
            CHECK(heard);
            CHECK(log.contains("joined victim"));
            CHECK(log.contains("joined leaver"));
            CHECK(log.contains("left leaver"));
            CHECK_FALSE(log.contains("dead leaver"));
            CHECK_FALSE(log.contains("dead observer"));

            // Marked once: a check now finds nothing new, and no second "dead" event comes.
            auto [cec, newly] = co_await m.async_check_dead(nothrow);
            REQUIRE_FALSE(cec);
            CHECK(newly.empty());
            co_await sleep_for(500ms);
            CHECK(std::count(log.seen.begin(), log.seen.end(), "dead victim") == 1);

            auto nodes = co_await all_nodes(m);
            CHECK(has_node(nodes, "victim"));  // no reaper: still registered
            CHECK_FALSE(has_node(nodes, "leaver"));
            auto [hec, health] = co_await m.async_health(nothrow);
            REQUIRE_FALSE(hec);
            CHECK(health.total == 2);
            CHECK(health.healthy == 1);
            CHECK(health.dead == 1);
        },
        60s);
}

TEST_CASE("membership: a node stopped without leaving (its connection gone) is reported dead, "
          "and alive again when it comes back",
          "[membership]") {
    with_connection([](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
        session s(conn);
        membership_options mo;
        mo.heartbeat_interval = 200ms;
        mo.heartbeat_grace = 200ms;
        membership m(s, mo);

        auto conn2 = std::make_unique<redcoord::connection>(co_await asio::this_coro::executor);
        conn2->async_run(config_for(srv), asio::detached);
        auto s2 = std::make_unique<session>(*conn2);
        auto m2 = std::make_unique<membership>(*s2, mo);
        co_await must_join(*m2, "quiet");
        // The process stops heartbeating without a word: its connection is gone.
        conn2->cancel();

        std::vector<std::string> newly;
        const bool found = co_await eventually_async(
            [&]() -> asio::awaitable<bool> {
                auto [ec, n] = co_await m.async_check_dead(nothrow);
                REQUIRE_FALSE(ec);
                newly.insert(newly.end(), n.begin(), n.end());
                co_return !newly.empty();
            },
            10s, 20ms);
        CHECK(found);
        CHECK(newly == std::vector<std::string>{"quiet"});
        m2.reset();
        s2.reset();
        conn2.reset();

        // Back (joined again): alive, and no longer in the dead list.
        membership m3(s, mo);
        co_await must_join(m3, "quiet");
        auto dead = co_await dead_nodes(m);
        CHECK_FALSE(has_node(dead, "quiet"));
        auto nodes = co_await all_nodes(m);
        REQUIRE(has_node(nodes, "quiet"));
    });
}

TEST_CASE("membership: the reaper removes a dead node from the registry and releases the "
          "locks and leaderships it held",
          "[membership]") {
    with_connection(
        [](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
            // The victims hold their lock and leadership with a 60 s TTL, longer than this
            // test may run: only the reaper can free them in time.
            std::vector<std::string> holder_args{port_of(srv), "member", "holder", "200", "300",
                                                 "lock", "jobs", "60000"};
            cluster_process holder(holder_args);
            std::vector<std::string> leader_args{port_of(srv), "leader", "chief", "reports",
                                                 "60000", "20000", "reports-out"};
            cluster_process chief(leader_args);
            auto locked = co_await holder.line_starting_with("locked ", 20s);
            INFO(holder.transcript());
            REQUIRE(locked);
            const auto fence = std::stoll(locked->substr(7));
            auto elected = co_await chief.line_starting_with("elected ", 20s);
            INFO(chief.transcript());
            REQUIRE(elected);

            session s(conn, as_node("reaper"));
            redcoord::lock_provider locks(s);
            // A waiter for the lock: woken by the reaper's release.
            bool acquired = false;
            error_code acquire_ec;
            std::int64_t new_fence = 0;
            redcoord::lease got;
            redcoord::acquire_options ao;
            ao.ttl = 10s;
            ao.wait = 50s;
            locks.async_acquire("jobs", ao, [&](error_code ec, redcoord::lease l) {
                acquire_ec = ec;
                new_fence = l.fencing_token();
                got = std::move(l);
                acquired = true;
            });

            REQUIRE(holder.signal(SIGKILL));
            REQUIRE(chief.signal(SIGKILL));
            co_await holder.wait_exit(10s);
            co_await chief.wait_exit(10s);

            membership_options mo;
            mo.heartbeat_interval = 200ms;
            mo.heartbeat_grace = 300ms;
            mo.dead_check_interval = 100ms;
            mo.reaper = true;
            membership m(s, mo);
            co_await must_join(m, "");

            const bool reaped = co_await eventually_async(
                [&]() -> asio::awaitable<bool> {
                    co_return !co_await is_member(conn, "holder") &&
                        !co_await is_member(conn, "chief");
                },
                20s, 20ms);
            CHECK(reaped);
            const auto r6 = co_await command(conn, "EXISTS", "redcoord:leader:{reports}");
            CHECK(r6 == "0");
            const auto r7 =
                co_await command(conn, "HEXISTS", "redcoord:nodes:{registry}:dead", "holder");
            CHECK(r7 ==
                  "0");
            const bool woke = co_await eventually([&] { return acquired; }, 20s);
            REQUIRE(woke);
            CHECK_FALSE(acquire_ec);
            CHECK(new_fence > fence);
            const auto r8 = co_await command(conn, "GET", "redcoord:lock:{jobs}");
            CHECK(redcoord::test::split_lock_value(r8).node == "reaper");
            auto nodes = co_await all_nodes(m);
            CHECK_FALSE(has_node(nodes, "holder"));
            CHECK(has_node(nodes, "reaper"));
        },
        60s);
}

TEST_CASE("membership: 200 nodes hosted in one process heartbeat in one pipelined write per "
          "tick",
          "[membership]") {
    redis_server srv;
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            // The measured connection carries the heartbeats only: no health-check PINGs.
            auto cfg = config_for(srv);
            cfg.health_check_interval = 0ms;
            redcoord::connection conn(ioc.get_executor());
            conn.async_run(cfg, asio::detached);
            redcoord::connection observer(ioc.get_executor());
            observer.async_run(config_for(srv), asio::detached);

            session s(conn);
            membership_options mo;
            mo.heartbeat_interval = 200ms;
            mo.heartbeat_grace = 2s;
            mo.dead_check_interval = std::chrono::hours(1);
            membership m(s, mo);
            constexpr int nodes = 200;
            int joined = 0;
            bool failed = false;
            for (int i = 0; i < nodes; ++i) {
                m.async_join("node-" + std::to_string(i), [&](error_code ec) {
                    failed = failed || ec;
                    ++joined;
                });
            }
            const bool all_joined = co_await eventually([&] { return joined == nodes; }, 20s);
            REQUIRE(all_joined);
            REQUIRE_FALSE(failed);
            REQUIRE(m.hosted().size() == nodes);

            // The usage counters of a write are updated when the writer resumes, which may be
            // after the replies came: let the joins' writes be counted before looking.
            co_await sleep_for(100ms);
            const auto before = conn.get_usage();
            co_await sleep_for(1500ms);
            const auto after = conn.get_usage();
            const auto writes = after.writes - before.writes;
            const auto commands = after.commands_written - before.commands_written;
            // Per tick: 200 SET, SADD, PEXPIRE of the registry, HDEL of the dead marks.
            constexpr std::uint64_t per_tick = nodes + 3;
            const auto ticks = commands / per_tick;
            INFO("writes " << writes << ", commands " << commands << " (" << ticks
                           << " ticks), connects " << after.connects - before.connects);
            CHECK(ticks >= 2);
            CHECK(writes >= 1);
            // One write per tick (one more when a write straddles the window), not one per node.
            CHECK(writes <= ticks + 1);
            CHECK(commands / writes >= nodes / 2);

            const auto r10 = co_await command(observer, "SCARD", "redcoord:nodes:{registry}");
            CHECK(r10 ==
                  std::to_string(nodes));
            redcoord::request req;
            std::vector<std::string> keys;
            for (int i = 0; i < nodes; ++i)
                keys.push_back("redcoord:hb:{registry}:node-" + std::to_string(i));
            req.push_range("EXISTS", keys);
            std::int64_t existing = 0;
            redcoord::diagnostics diag;
            auto [ec, n] = co_await observer.async_exec(req, existing, diag, nothrow);
            require_ok(ec, diag);
            CHECK(existing == nodes);
            conn.cancel();
            observer.cancel();
        },
        60s);
}

TEST_CASE("membership: after a Redis restart the heartbeats and the registry come back and "
          "watches receive events again",
          "[membership][single_server]") {
    with_connection(
        [](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
            session s(conn, as_node("survivor"));
            membership_options mo;
            mo.heartbeat_interval = 200ms;
            mo.heartbeat_grace = 300ms;
            membership m(s, mo);
            event_log log;
            auto w = m.subscribe(log.recorder());
            co_await must_join(m, "");

            srv.restart();

            const bool back = co_await eventually_async(
                [&]() -> asio::awaitable<bool> {
                    redcoord::request req;
                    req.push("EXISTS", "redcoord:hb:{registry}:survivor");
                    req.push("SISMEMBER", "redcoord:nodes:{registry}", "survivor");
                    redcoord::response<std::int64_t, std::int64_t> resp;
                    auto [ec, n] = co_await conn.async_exec(req, resp, nothrow);
                    co_return !ec && std::get<0>(resp) == 1 && std::get<1>(resp) == 1;
                },
                20s, 20ms);
            CHECK(back);

            // The subscription was restored: a join after the restart is heard.
            redcoord::connection conn2(co_await asio::this_coro::executor);
            conn2.async_run(config_for(srv), asio::detached);
            session s2(conn2);
            membership m2(s2, mo);
            co_await must_join(m2, "newcomer");
            const bool heard = co_await eventually([&] { return log.contains("joined newcomer"); },
                                                   10s);
            INFO(log.text());
            CHECK(heard);
            auto nodes = co_await all_nodes(m);
            CHECK(has_node(nodes, "survivor"));
            CHECK(has_node(nodes, "newcomer"));
            conn2.cancel();
        },
        60s);
}

TEST_CASE("membership: bad options throw error_with_diagnostics naming the field",
          "[membership]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        auto expect_bad = [&](membership_options o, const std::string& field) {
            try {
                membership m(s, o);
                FAIL("no exception for " << field);
            } catch (const redcoord::error_with_diagnostics& e) {
                CHECK(e.code() == redcoord::error::bad_config);
                CHECK(std::string(e.what()).find(field) != std::string::npos);
            }
        };
        membership_options o;
        o.heartbeat_interval = 0ms;
        expect_bad(o, "heartbeat_interval");
        o = {};
        o.heartbeat_grace = -1ms;
        expect_bad(o, "heartbeat_grace");
        o = {};
        o.registry_ttl = 0ms;
        expect_bad(o, "registry_ttl");
        o = {};
        o.dead_check_interval = -5ms;
        expect_bad(o, "dead_check_interval");
        co_return;
    });
}

}  // namespace
