// Wake-ups on a real loopback Redis Cluster: a resource's waiters listen with SSUBSCRIBE on the
// master of the resource's slot and the scripts announce with SPUBLISH there; when the slot
// moves to another master (an unrequested sunsubscribe) the waiters listen again on the new one
// and still hear the next announcement.
#include "async_test.hpp"
#include "cluster_helpers.hpp"
#include "connection_helpers.hpp"
#include "lease_helpers.hpp"
#include "redis_cluster.hpp"

#include <redcoord/redcoord.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using redcoord::test::background_acquisition;
using redcoord::test::cluster_client;
using redcoord::test::nothrow;
using redcoord::test::redis_cluster;

namespace {

redcoord::test::redis_cluster_options masters_only() {
    redcoord::test::redis_cluster_options o;
    o.replicas_per_master = 0;
    return o;
}

// The sharded channels node i has subscribers on (PUBSUB SHARDCHANNELS), one per line.
std::string shard_channels(const redis_cluster& c, std::size_t i) {
    return c.cli(i, {"PUBSUB", "SHARDCHANNELS"});
}

// The classic channels of every master.
std::string classic_channels(const redis_cluster& c) {
    std::string all;
    for (auto port : c.master_ports()) all += c.cli(c.index_of_port(port), {"PUBSUB", "CHANNELS"});
    return all;
}

// Another master than node i.
std::size_t other_master(const redis_cluster& c, std::size_t i) {
    for (auto port : c.master_ports())
        if (c.index_of_port(port) != i) return c.index_of_port(port);
    FAIL("the cluster has one master");
    return i;
}

}  // namespace

namespace {

// A holder with a long TTL (only the release's wake-up lets the waiter in before its deadline)
// and a waiter on another connection. With move_slot, the lock's slot moves to another master
// while the waiter waits: the old master drops the subscription, the waiter listens again on
// the new one, and the release there still wakes it.
void release_wakes_waiter(bool move_slot) {
    redis_cluster c(masters_only());
    const std::string name = move_slot ? "moving" : "sharded";
    const std::string channel = "redcoord:lock:{" + name + "}:released";
    const int slot = redis_cluster::key_slot("{" + name + "}");
    const auto from = c.index_of_slot(slot);
    const auto to = move_slot ? other_master(c, from) : from;
    redcoord::test::run_async(
        [&](boost::asio::io_context& ioc) -> boost::asio::awaitable<void> {
            cluster_client a(ioc, c, "holder"), b(ioc, c, "waiter");
            redcoord::lock_provider la(a.session), lb(b.session);
            auto held = co_await redcoord::test::must_acquire(la, name, {.ttl = 60s});
            background_acquisition waiter;
            waiter.start(ioc, lb, name, {.ttl = 10s, .wait = 50s});
            co_await redcoord::test::wait_until(
                [&] { return shard_channels(c, from).find(channel) != std::string::npos; });
            CHECK(classic_channels(c).find(channel) == std::string::npos);
            if (move_slot) {
                c.migrate_slot(slot, to);
                co_await redcoord::test::wait_until(
                    [&] { return shard_channels(c, to).find(channel) != std::string::npos; });
                CHECK(shard_channels(c, from).find(channel) == std::string::npos);
            }
            CHECK_FALSE(waiter.finished());
            const auto stats_before = c.cli(to, {"INFO", "commandstats"});
            co_await redcoord::test::must_release(held);
            co_await waiter.finish();
            INFO(waiter.failure);
            CHECK(waiter.acquired);
            // The release's wake-up was an SPUBLISH on the lock's (new) master.
            CHECK(stats_before.find("cmdstat_spublish:") == std::string::npos);
            CHECK(c.cli(to, {"INFO", "commandstats"}).find("cmdstat_spublish:") !=
                  std::string::npos);
            co_await redcoord::test::must_release(waiter.got);
            co_await a.close();
            co_await b.close();
        },
        120s);
}

}  // namespace

TEST_CASE("a lock's waiters listen with SSUBSCRIBE on its master and are woken by SPUBLISH",
          "[redis_cluster]") {
    release_wakes_waiter(false);
}

TEST_CASE("a lock's waiter still hears the release after the lock's slot moves to another master",
          "[redis_cluster]") {
    release_wakes_waiter(true);
}

TEST_CASE("a result's waiter hears the result stored after the result's slot moved",
          "[redis_cluster]") {
    redis_cluster c(masters_only());
    const std::string id = "job-7";
    const std::string channel = "redcoord:result:{" + id + "}:stored";
    const int slot = redis_cluster::key_slot("{" + id + "}");
    const auto from = c.index_of_slot(slot);
    const auto to = other_master(c, from);
    redcoord::test::run_async(
        [&](boost::asio::io_context& ioc) -> boost::asio::awaitable<void> {
            cluster_client a(ioc, c, "writer"), b(ioc, c, "reader");
            redcoord::result_store writer(a.session), reader(b.session);
            {
                redcoord::diagnostics d;
                auto [ec] = co_await writer.async_set_status(id, redcoord::result_status::running,
                                                             boost::json::object{}, d, nothrow);
                INFO(redcoord::test::describe(ec, d));
                REQUIRE_FALSE(ec);
            }
            bool done = false;
            std::string failure;
            redcoord::result_info info;
            boost::asio::co_spawn(
                ioc,
                [&]() -> boost::asio::awaitable<void> {
                    redcoord::diagnostics d;
                    auto [ec, i] = co_await reader.async_wait(id, 50s, d, nothrow);
                    if (ec) failure = redcoord::test::describe(ec, d);
                    info = i;
                    done = !ec;
                },
                boost::asio::detached);
            co_await redcoord::test::wait_until([&] {
                return shard_channels(c, from).find(channel) != std::string::npos;
            });
            c.migrate_slot(slot, to);
            co_await redcoord::test::wait_until(
                [&] { return shard_channels(c, to).find(channel) != std::string::npos; });
            CHECK_FALSE(done);
            {
                redcoord::diagnostics d;
                auto [ec] = co_await writer.async_store_result(
                    id, redcoord::result_status::succeeded, std::string("42"), d, nothrow);
                INFO(redcoord::test::describe(ec, d));
                REQUIRE_FALSE(ec);
            }
            co_await redcoord::test::wait_until([&] { return done || !failure.empty(); });
            INFO(failure);
            CHECK(done);
            CHECK(info.status == redcoord::result_status::succeeded);
            CHECK(info.has_value);
            co_await a.close();
            co_await b.close();
        },
        120s);
}

TEST_CASE("an event-bus receiver keeps receiving after the master carrying its subscription "
          "fails over",
          "[redis_cluster][failover]") {
    redcoord::test::redis_cluster_options o;
    o.node_timeout = 500ms;
    redis_cluster c(o);
    const std::string channel = "redcoord:events:news";
    redcoord::test::run_async(
        [&](boost::asio::io_context& ioc) -> boost::asio::awaitable<void> {
            cluster_client a(ioc, c, "listener"), b(ioc, c, "publisher");
            redcoord::event_bus listener(a.session), publisher(b.session);
            auto rx = listener.make_receiver<std::string>("news");
            std::vector<std::string> got;
            int gaps = 0;
            bool ended = false;
            boost::asio::co_spawn(
                ioc,
                [&]() -> boost::asio::awaitable<void> {
                    for (;;) {
                        auto [ec, ev] = co_await rx.async_receive(nothrow);
                        if (ec == redcoord::error::events_gap) {
                            ++gaps;
                        } else if (ec) {
                            break;
                        } else {
                            got.push_back(ev.value);
                        }
                    }
                    ended = true;
                },
                boost::asio::detached);
            // Classic pub/sub: the subscription lives on one master, whichever it is.
            std::size_t carrier = c.size();
            co_await redcoord::test::wait_until([&] {
                for (auto port : c.master_ports())
                    if (c.cli(c.index_of_port(port), {"PUBSUB", "CHANNELS"}).find(channel) !=
                        std::string::npos)
                        carrier = c.index_of_port(port);
                return carrier < c.size();
            });
            auto publish_until_heard = [&](std::string what) -> boost::asio::awaitable<void> {
                while (std::find(got.begin(), got.end(), what) == got.end() && !ended) {
                    auto [ec, n] = co_await publisher.async_publish("news", what, nothrow);
                    (void)ec;  // a publish may fail while the cluster fails over
                    (void)n;
                    co_await redcoord::test::sleep_for(100ms);
                }
            };
            co_await publish_until_heard("before");
            c.kill(carrier);
            (void)c.wait_for_failover(carrier);
            // The subscription moves to a live master: messages meanwhile are a gap, and
            // what is published afterwards arrives.
            co_await publish_until_heard("after");
            CHECK_FALSE(ended);
            CHECK(std::find(got.begin(), got.end(), "after") != got.end());
            CHECK(gaps >= 1);
            rx.close();
            co_await redcoord::test::wait_until([&] { return ended; });
            co_await a.close();
            co_await b.close();
        },
        120s);
}
