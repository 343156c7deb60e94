// The connection on a real loopback Redis Cluster (3 masters, 3 replicas): routing by slot,
// requests split per master with their replies in order, cross-slot refusals, slot
// migrations (MOVED and ASK) with nothing lost, a master failover, and pub/sub.
#include "async_test.hpp"
#include "cluster_helpers.hpp"
#include "connection_helpers.hpp"
#include "redis_cluster.hpp"

#include <redcoord/redcoord.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using redcoord::test::cluster_config;
using redcoord::test::nothrow;
using redcoord::test::redis_cluster;

namespace {

// A key whose slot the given master serves (found by trying names).
std::string key_on(const redis_cluster& c, std::uint16_t port, const std::string& base) {
    for (int i = 0;; ++i) {
        std::string k = base + std::to_string(i);
        if (c.port_of_slot(redis_cluster::key_slot(k)) == port) return k;
    }
}

boost::asio::awaitable<void> set_key(redcoord::connection& conn, const std::string& k,
                                     const std::string& v) {
    redcoord::request req;
    req.push("SET", k, v);
    redcoord::diagnostics diag;
    auto [ec, n] = co_await conn.async_exec(req, redcoord::ignore, diag, nothrow);
    redcoord::test::require_ok(ec, diag);
}

boost::asio::awaitable<std::optional<std::string>> get_key(redcoord::connection& conn,
                                                           const std::string& k) {
    redcoord::request req;
    req.push("GET", k);
    std::optional<std::string> v;
    redcoord::diagnostics diag;
    auto [ec, n] = co_await conn.async_exec(req, v, diag, nothrow);
    redcoord::test::require_ok(ec, diag);
    co_return v;
}

}  // namespace

TEST_CASE("every key goes to the master of its slot", "[redis_cluster]") {
    redis_cluster c;
    // The library's slot function agrees with the server's CLUSTER KEYSLOT.
    for (std::string k : {"a", "foo", "{user1}.x", "lock:{orders}", "x{}y", "\xff\x01"})
        CHECK(std::to_string(redis_cluster::key_slot(k)) == c.cli(0, {"CLUSTER", "KEYSLOT", k}));
    redcoord::test::run_async([&](boost::asio::io_context& ioc) -> boost::asio::awaitable<void> {
        redcoord::connection conn(ioc.get_executor());
        conn.async_run(cluster_config(c), boost::asio::detached);
        for (int i = 0; i < 300; ++i)
            co_await set_key(conn, "key:" + std::to_string(i), std::to_string(i));
        CHECK(conn.is_connected());
        // Each key is on the master that serves its slot: asked there without redirection.
        std::set<std::uint16_t> used;
        for (int i = 0; i < 300; i += 7) {
            const std::string k = "key:" + std::to_string(i);
            const auto port = c.port_of_slot(redis_cluster::key_slot(k));
            used.insert(port);
            CHECK(c.cli(c.index_of_port(port), {"GET", k}) == std::to_string(i));
        }
        CHECK(used.size() == 3);
        for (int i = 0; i < 300; i += 13) {
            auto v = co_await get_key(conn, "key:" + std::to_string(i));
            CHECK(v == std::to_string(i));
        }
        conn.cancel();
    });
}

TEST_CASE("a request across masters is split and answered in order",
          "[redis_cluster]") {
    redis_cluster c;
    const auto masters = c.master_ports();
    REQUIRE(masters.size() == 3);
    redcoord::test::run_async([&](boost::asio::io_context& ioc) -> boost::asio::awaitable<void> {
        redcoord::connection conn(ioc.get_executor());
        conn.async_run(cluster_config(c), boost::asio::detached);
        const auto a = key_on(c, masters[0], "a"), b = key_on(c, masters[1], "b"),
                   d = key_on(c, masters[2], "d");
        redcoord::request req;
        req.push("SET", a, "1");
        req.push("SET", b, "2");
        req.push("SET", d, "3");
        req.push("GET", d);
        req.push("PING");
        req.push("GET", a);
        req.push("INCR", b);
        req.push("GET", "never-set");
        redcoord::response<std::string, std::string, std::string, std::string, std::string,
                           std::string, std::int64_t, std::optional<std::string>>
            resp;
        redcoord::diagnostics diag;
        auto [ec, n] = co_await conn.async_exec(req, resp, diag, nothrow);
        redcoord::test::require_ok(ec, diag);
        CHECK(std::get<0>(resp) == "OK");
        CHECK(std::get<3>(resp) == "3");
        CHECK(std::get<4>(resp) == "PONG");
        CHECK(std::get<5>(resp) == "1");
        CHECK(std::get<6>(resp) == 3);
        CHECK_FALSE(std::get<7>(resp).has_value());

        // generic_response keeps the order too; an error reply is one of its replies.
        redcoord::request mixed;
        mixed.push("GET", d);
        mixed.push("HGET", a, "f");  // a is a string: WRONGTYPE
        mixed.push("GET", b);
        redcoord::generic_response all;
        auto [ec2, n2] = co_await conn.async_exec(mixed, all, diag, nothrow);
        CHECK(ec2 == redcoord::error::server_error);
        CHECK(diag.server_message().find("WRONGTYPE") != std::string::npos);
        REQUIRE(all.size() == 3);
        CHECK(all[0].value == "3");
        CHECK(all[1].data_type == redcoord::resp3::type::simple_error);
        CHECK(all[2].value == "3");
        conn.cancel();
    });
}

TEST_CASE("cross-slot scripts and transactions fail before sending",
          "[redis_cluster]") {
    redis_cluster c;
    redcoord::test::run_async([&](boost::asio::io_context& ioc) -> boost::asio::awaitable<void> {
        redcoord::connection conn(ioc.get_executor());
        conn.async_run(cluster_config(c), boost::asio::detached);
        co_await set_key(conn, "warm", "up");
        const auto before = conn.get_usage().commands_written;

        redcoord::request eval;
        eval.push("EVAL", "return 1", 2, "a", "b");
        redcoord::diagnostics diag;
        auto [ec, n] = co_await conn.async_exec(eval, redcoord::ignore, diag, nothrow);
        CHECK(ec == redcoord::error::cross_slot);
        CHECK(diag.client_message().find("\"a\"") != std::string::npos);
        CHECK(diag.client_message().find("\"b\"") != std::string::npos);

        redcoord::request tx;
        tx.push("MULTI");
        tx.push("SET", "a", "1");
        tx.push("SET", "b", "2");
        tx.push("EXEC");
        auto [ec2, n2] = co_await conn.async_exec(tx, redcoord::ignore, diag, nothrow);
        CHECK(ec2 == redcoord::error::cross_slot);
        CHECK(diag.client_message().find("MULTI") != std::string::npos);
        CHECK(conn.get_usage().commands_written == before);

        // With one hash tag both run, as one transaction on the slot's master.
        redcoord::request ok;
        ok.push("MULTI");
        ok.push("SET", "{t}a", "1");
        ok.push("INCR", "{t}b");
        ok.push("EXEC");
        redcoord::generic_response r;
        auto [ec3, n3] = co_await conn.async_exec(ok, r, diag, nothrow);
        redcoord::test::require_ok(ec3, diag);
        auto v = co_await get_key(conn, "{t}b");
        CHECK(v == "1");
        conn.cancel();
    });
}

TEST_CASE("commands follow a slot migration with none lost or doubled",
          "[redis_cluster]") {
    redis_cluster c;
    const std::string counter = "{mig}counter";
    const int slot = redis_cluster::key_slot(counter);
    const auto from = c.index_of_slot(slot);
    std::size_t to = 0;
    for (auto p : c.master_ports())
        if (c.index_of_port(p) != from) to = c.index_of_port(p);
    constexpr int workers = 20, each = 100;
    int succeeded = 0;
    std::atomic<int> phase{0};
    // The migration runs on its own thread (redis-cli), while the clients run here.
    redcoord::test::side_thread migration(phase, [&] {
        std::this_thread::sleep_for(50ms);
        // ASK while keys move, then MOVED once the slot has its new owner.
        c.begin_migration(slot, to);
        std::this_thread::sleep_for(100ms);
        c.migrate_keys(slot);
        std::this_thread::sleep_for(100ms);
        c.finish_migration(slot);
        phase = 2;
    });
    redcoord::test::run_async(
        [&](boost::asio::io_context& ioc) -> boost::asio::awaitable<void> {
            redcoord::connection conn(ioc.get_executor());
            conn.async_run(cluster_config(c), boost::asio::detached);
            co_await set_key(conn, "{mig}other", "x");
            phase = 1;
            int completed = 0, failed = 0;
            std::string first_failure;
            for (int w = 0; w < workers; ++w)
                boost::asio::co_spawn(
                    ioc,
                    [&]() -> boost::asio::awaitable<void> {
                        // Until the migration is over, and at least `each` calls.
                        for (int i = 0; i < each || !migration.done(); ++i) {
                            redcoord::request req;
                            req.push("INCR", counter);
                            redcoord::diagnostics d;
                            auto [ec, n] =
                                co_await conn.async_exec(req, redcoord::ignore, d, nothrow);
                            if (ec) {
                                ++failed;
                                if (first_failure.empty())
                                    first_failure = redcoord::test::describe(ec, d);
                            } else {
                                ++succeeded;
                            }
                            co_await redcoord::test::sleep_for(2ms);
                        }
                        ++completed;
                    },
                    boost::asio::detached);
            co_await redcoord::test::wait_until([&] { return completed == workers; });
            INFO(first_failure);
            CHECK(failed == 0);
            auto v = co_await get_key(conn, counter);
            CHECK(v == std::to_string(succeeded));
            auto other = co_await get_key(conn, "{mig}other");
            CHECK(other == "x");
            conn.cancel();
        },
        120s);
    migration.finish();
    CHECK(c.port_of_slot(slot) == c.port(to));
    CHECK(c.cli(to, {"GET", counter}) == std::to_string(succeeded));
}

TEST_CASE("a key mid-migration is read on the target after ASK",
          "[redis_cluster]") {
    redis_cluster c;
    const std::string key = "{ask}k";
    const int slot = redis_cluster::key_slot(key);
    const auto from = c.index_of_slot(slot);
    std::size_t to = (from + 1) % 3;
    c.cli(from, {"SET", key, "moved-value"});
    c.begin_migration(slot, to);
    c.migrate_keys(slot);
    // The key is on the target, the slot still the source's: the source answers ASK.
    CHECK(c.cli(from, {"GET", key}).find("ASK") != std::string::npos);
    redcoord::test::run_async([&](boost::asio::io_context& ioc) -> boost::asio::awaitable<void> {
        redcoord::connection conn(ioc.get_executor());
        conn.async_run(cluster_config(c), boost::asio::detached);
        auto v = co_await get_key(conn, key);
        CHECK(v == "moved-value");
        // A new key of the migrating slot is created on the target (ASK for missing keys).
        co_await set_key(conn, "{ask}new", "n");
        conn.cancel();
    });
    c.finish_migration(slot);
    CHECK(c.cli(to, {"GET", "{ask}new"}) == "n");
}

TEST_CASE("a master fails over and its slots are served again",
          "[redis_cluster][failover]") {
    redcoord::test::redis_cluster_options o;
    o.node_timeout = 500ms;
    redis_cluster c(o);
    const auto masters = c.master_ports();
    const auto victim = c.index_of_port(masters[1]);
    redcoord::test::run_async(
        [&](boost::asio::io_context& ioc) -> boost::asio::awaitable<void> {
            redcoord::connection conn(ioc.get_executor());
            conn.async_run(cluster_config(c), boost::asio::detached);
            const auto on_victim = key_on(c, masters[1], "v");
            const auto elsewhere = key_on(c, masters[0], "e");
            co_await set_key(conn, on_victim, "before");
            co_await set_key(conn, elsewhere, "before");
            // The replica has the writes before its master dies.
            CHECK(c.cli(victim, {"WAIT", "1", "5000"}) == "1");
            c.kill(victim);
            // Other shards are served throughout.
            redcoord::diagnostics diag;
            for (int i = 0; i < 20; ++i) {
                co_await set_key(conn, elsewhere, "during" + std::to_string(i));
                co_await redcoord::test::sleep_for(20ms);
            }
            (void)c.wait_for_failover(victim);
            // The victim's slots come back on the promoted replica, without a new connection.
            bool served = co_await redcoord::test::eventually_async(
                [&]() -> boost::asio::awaitable<bool> {
                    redcoord::request req;
                    req.push("SET", on_victim, "after");
                    auto [ec, n] = co_await conn.async_exec(req, redcoord::ignore, diag, nothrow);
                    co_return !ec;
                },
                20s);
            INFO(diag.message());
            CHECK(served);
            auto v = co_await get_key(conn, on_victim);
            CHECK(v == "after");
            CHECK(conn.is_connected());
            conn.cancel();
        },
        90s);
}

TEST_CASE("pub/sub messages published on any master arrive",
          "[redis_cluster]") {
    redis_cluster c;
    redcoord::test::run_async([&](boost::asio::io_context& ioc) -> boost::asio::awaitable<void> {
        redcoord::connection conn(ioc.get_executor());
        conn.async_run(cluster_config(c), boost::asio::detached);
        redcoord::request sub;
        sub.push("SUBSCRIBE", "news");
        redcoord::diagnostics diag;
        auto [ec, n] = co_await conn.async_exec(sub, redcoord::ignore, diag, nothrow);
        redcoord::test::require_ok(ec, diag);
        // Published through each master by redis-cli: classic pub/sub reaches every node.
        std::vector<std::string> got;
        for (std::size_t m = 0; m < 3; ++m) {
            c.cli(m, {"PUBLISH", "news", "from-" + std::to_string(m)});
            for (;;) {
                redcoord::push_message msg;
                auto [rec] = co_await conn.async_receive(msg, nothrow);
                REQUIRE_FALSE(rec);
                if (msg.kind == "message") {
                    got.push_back(msg.payload);
                    break;
                }
            }
        }
        CHECK(got == std::vector<std::string>{"from-0", "from-1", "from-2"});
        conn.cancel();
    });
}
