// The read-only view of reliable queues: every queue of the prefix (async_list_queues) and
// each one's depth, items in flight per consumer, redeliveries and worker queues
// (async_stats), against a real redis-server.
#include <redcoord/redcoord.hpp>

#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "connection_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using redcoord::queue_stats;
using redcoord::reliable_queue;
using redcoord::session;
using redcoord::test::command;
using redcoord::test::nothrow;
using redcoord::test::require_ok;
using redcoord::test::with_connection;

asio::awaitable<queue_stats> must_stats(reliable_queue& q, std::string name) {
    redcoord::diagnostics diag;
    auto [ec, stats] = co_await q.async_stats(std::move(name), diag, nothrow);
    require_ok(ec, diag);
    co_return stats;
}

asio::awaitable<std::vector<std::string>> must_list(reliable_queue& q) {
    redcoord::diagnostics diag;
    auto [ec, names] = co_await q.async_list_queues(diag, nothrow);
    require_ok(ec, diag);
    co_return names;
}

}  // namespace

TEST_CASE(
    "queue stats: every queue is listed with its depth, items in flight, redeliveries "
    "and worker queues",
    "[queue][queue_stats]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-1"});
        reliable_queue q(s);
        const auto at_first = co_await must_list(q);
        CHECK(at_first.empty());
        const auto unknown = co_await must_stats(q, "nothing");
        CHECK(unknown.depth == 0);
        CHECK(unknown.in_flight == 0);
        CHECK(unknown.redeliveries == 0);

        for (const char* p : {"a", "b", "c", "d", "e"}) {
            auto [ec, id] = co_await q.async_enqueue("emails", p, nothrow);
            REQUIRE_FALSE(ec);
        }
        // Two items in flight with a consumer that has no heartbeat, one with a live one.
        co_await command(conn, "SET", s.keys().heartbeat("alive"), "1", "PX", "60000");
        for (const char* consumer : {"dead", "dead", "alive"}) {
            auto [ec, item] = co_await q.async_dequeue("emails", consumer, 0ms, nothrow);
            REQUIRE_FALSE(ec);
            REQUIRE(item);
        }
        // A queue whose only item is in flight has no list of its own: still listed.
        auto [ec1, id1] = co_await q.async_enqueue("busy", "x", nothrow);
        REQUIRE_FALSE(ec1);
        auto [ec2, taken] = co_await q.async_dequeue("busy", "alive", 0ms, nothrow);
        REQUIRE(taken);
        // Work stealing: per-worker queues.
        for (const char* w : {"w1", "w1", "w2"}) {
            auto [ec, id] = co_await q.async_enqueue_to("split", w, "job", nothrow);
            REQUIRE_FALSE(ec);
        }

        const auto names = co_await must_list(q);
        CHECK(names == std::vector<std::string>{"busy", "emails", "split"});

        auto emails = co_await must_stats(q, "emails");
        CHECK(emails.name == "emails");
        CHECK(emails.depth == 2);
        CHECK(emails.in_flight == 3);
        CHECK(emails.consumers == std::map<std::string, std::int64_t>{{"alive", 1}, {"dead", 2}});
        CHECK(emails.redeliveries == 0);

        auto [rec, moved] = co_await q.async_redeliver("emails", nothrow);
        REQUIRE_FALSE(rec);
        CHECK(moved == 2);
        emails = co_await must_stats(q, "emails");
        CHECK(emails.depth == 4);
        CHECK(emails.in_flight == 1);
        CHECK(emails.redeliveries == 2);
        // The counter is a companion with a TTL.
        const auto counter = redcoord::keyspace::companion(s.keys().queue("emails"), "redelivered");
        const auto counter_ttl = co_await command(conn, "PTTL", counter);
        CHECK(std::stoll(counter_ttl) > 0);

        const auto busy = co_await must_stats(q, "busy");
        CHECK(busy.depth == 0);
        CHECK(busy.in_flight == 1);

        const auto split = co_await must_stats(q, "split");
        CHECK(split.depth == 0);
        CHECK(split.worker_depth == 3);
        CHECK(split.workers == std::map<std::string, std::int64_t>{{"w1", 2}, {"w2", 1}});

        // Another prefix sees none of them.
        session other(conn, {.prefix = "other:", .node_id = "node-2"});
        reliable_queue oq(other);
        const auto others = co_await must_list(oq);
        CHECK(others.empty());

        redcoord::diagnostics diag;
        auto [bad, none] = co_await q.async_stats("", diag, nothrow);
        CHECK(bad == redcoord::error::invalid_argument);
        CHECK(diag.message().find("queue name") != std::string::npos);
    });
}
