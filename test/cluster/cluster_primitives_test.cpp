// Membership, leader election, the lock monitor and the cache on a real loopback Redis
// Cluster: heartbeats and the registry in one slot, dead-node detection, an election, and
// listings that see every master.
#include "async_test.hpp"
#include "cluster_helpers.hpp"
#include "connection_helpers.hpp"
#include "lease_helpers.hpp"
#include "redis_cluster.hpp"

#include <redcoord/redcoord.hpp>

#include <boost/asio/detached.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using redcoord::test::cluster_config;
using redcoord::test::nothrow;
using redcoord::test::redis_cluster;

namespace {

bool has(const std::vector<redcoord::node_info>& nodes, const std::string& id) {
    return std::any_of(nodes.begin(), nodes.end(), [&](const auto& n) { return n.id == id; });
}

}  // namespace

TEST_CASE("membership and leader election work on a cluster", "[redis_cluster]") {
    redis_cluster c;
    redcoord::test::run_async(
        [&](boost::asio::io_context& ioc) -> boost::asio::awaitable<void> {
            redcoord::connection conn_a(ioc.get_executor());
            conn_a.async_run(cluster_config(c), boost::asio::detached);
            auto conn_b = std::make_unique<redcoord::connection>(ioc.get_executor());
            conn_b->async_run(cluster_config(c), boost::asio::detached);
            redcoord::membership_options mo;
            mo.heartbeat_interval = 200ms;
            mo.heartbeat_grace = 300ms;
            mo.dead_check_interval = 100ms;
            redcoord::session sa(conn_a, redcoord::test::as_node("observer"));
            auto sb = std::make_unique<redcoord::session>(*conn_b,
                                                          redcoord::test::as_node("victim"));
            redcoord::membership ma(sa, mo);
            auto mb = std::make_unique<redcoord::membership>(*sb, mo);
            auto [ej] = co_await ma.async_join("", nothrow);
            REQUIRE_FALSE(ej);
            auto [ej2] = co_await mb->async_join("", nothrow);
            REQUIRE_FALSE(ej2);
            auto [en, nodes] = co_await ma.async_nodes(nothrow);
            REQUIRE_FALSE(en);
            CHECK(has(nodes, "observer"));
            CHECK(has(nodes, "victim"));
            // The heartbeats live in the registry's slot.
            CHECK(redis_cluster::key_slot("redcoord:hb:{registry}:victim") ==
                  redis_cluster::key_slot("redcoord:nodes:{registry}"));

            // An election: the victim leads, then dies without resigning; the observer takes
            // over once the lease lapses.
            redcoord::leader_options lo;
            lo.leadership_timeout = 1s;
            lo.renewal_interval = 300ms;
            redcoord::leader_election ea(sa, lo);
            auto eb = std::make_unique<redcoord::leader_election>(*sb, lo);
            auto [ec1, lead_b] = co_await eb->async_campaign("scheduler", nothrow);
            REQUIRE_FALSE(ec1);
            REQUIRE(lead_b.is_held());
            const auto term_b = lead_b.fencing_token();

            // The victim's process stops: no leave, no resignation.
            conn_b->cancel();
            auto [ec2, lead_a] = co_await ea.async_campaign("scheduler", nothrow);
            REQUIRE_FALSE(ec2);
            CHECK(lead_a.is_held());
            CHECK(lead_a.fencing_token() > term_b);

            std::vector<redcoord::node_info> dead;
            const bool found = co_await redcoord::test::eventually_async(
                [&]() -> boost::asio::awaitable<bool> {
                    auto [ed, d] = co_await ma.async_dead_nodes(nothrow);
                    dead = std::move(d);
                    co_return !ed && has(dead, "victim");
                },
                15s, 20ms);
            CHECK(found);
            CHECK_FALSE(has(dead, "observer"));
            eb.reset();
            mb.reset();
            sb.reset();
            co_await redcoord::test::must_release(lead_a);
            co_await sa.async_close(nothrow);
            conn_a.cancel();
        },
        90s);
}

TEST_CASE("the lock monitor and the cache see every master", "[redis_cluster]") {
    redis_cluster c;
    redcoord::test::run_async([&](boost::asio::io_context& ioc) -> boost::asio::awaitable<void> {
        redcoord::connection conn(ioc.get_executor());
        conn.async_run(cluster_config(c), boost::asio::detached);
        redcoord::session s(conn);
        redcoord::lock_provider locks(s);
        redcoord::lock_monitor monitor(s);
        redcoord::cache cache(s);
        constexpr int count = 30;
        std::vector<redcoord::lease> held;
        std::set<std::uint16_t> ports;
        for (int i = 0; i < count; ++i) {
            const std::string name = "l" + std::to_string(i);
            held.push_back(co_await redcoord::test::must_acquire(locks, name, {.ttl = 10s}));
            ports.insert(c.port_of_slot(redis_cluster::key_slot("redcoord:lock:{" + name + "}")));
            redcoord::diagnostics d;
            auto [es] = co_await cache.async_set("k" + std::to_string(i), i, 60s, d, nothrow);
            redcoord::test::require_ok(es, d);
        }
        CHECK(ports.size() == 3);

        redcoord::diagnostics d;
        auto [ea, active] = co_await monitor.async_active_locks(d, nothrow);
        redcoord::test::require_ok(ea, d);
        std::set<std::string> names;
        for (const auto& l : active) names.insert(l.name);
        CHECK(names.size() == count);
        CHECK(names.count("l0") == 1);
        CHECK(names.count("l29") == 1);

        auto [ek, keys] = co_await cache.async_keys("*", d, nothrow);
        redcoord::test::require_ok(ek, d);
        CHECK(keys.size() == count);
        auto [ecl, deleted] = co_await cache.async_clear(d, nothrow);
        redcoord::test::require_ok(ecl, d);
        CHECK(deleted == count);
        for (auto port : c.master_ports())
            CHECK(c.cli(c.index_of_port(port), {"EVAL",
                                                "return #redis.call('KEYS', 'redcoord:cache:*')",
                                                "0"}) == "0");
        for (auto& l : held) co_await redcoord::test::must_release(l);
        co_await s.async_close(nothrow);
        conn.cancel();
    });
}
