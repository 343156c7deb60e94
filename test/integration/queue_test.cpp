// Reliable queues against a real redis-server: round trip and acknowledgement, a blocking
// dequeue woken by an enqueue on another connection, redelivery of a dead consumer's items,
// and work stealing from the longest queue.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <optional>
#include <string>

#include "async_test.hpp"
#include "connection_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::queue_item;
using redcoord::reliable_queue;
using redcoord::session;
using redcoord::test::command;
using redcoord::test::config_for;
using redcoord::test::nothrow;
using redcoord::test::with_connection;

struct side_connection {
    redcoord::connection conn;
    side_connection(asio::any_io_executor ex, const redcoord::test::redis_server& srv)
        : conn(std::move(ex)) {
        conn.async_run(config_for(srv), asio::detached);
    }
    ~side_connection() { conn.cancel(); }
};

error_code code_of(std::exception_ptr ep) {
    if (!ep) return {};
    try {
        std::rethrow_exception(ep);
    } catch (const boost::system::system_error& e) {
        return e.code();
    } catch (...) {
        return {};
    }
}

}  // namespace

TEST_CASE("queue: round trip, processing list and ack", "[queue]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-1"});
        reliable_queue q(s);
        auto [ep1, id1] = co_await q.async_enqueue("jobs", "first", nothrow);
        REQUIRE_FALSE(ep1);
        CHECK(id1.size() == 32);
        auto [ep2, id2] = co_await q.async_enqueue("jobs", "second", nothrow);
        REQUIRE_FALSE(ep2);

        auto [ep3, it] = co_await q.async_dequeue("jobs", "", 0ms, nothrow);
        REQUIRE_FALSE(ep3);
        REQUIRE(it.has_value());
        CHECK(it->payload == "first");
        CHECK(it->id == id1);
        const auto pending = co_await command(conn, "LLEN", "redcoord:queue:jobs");
        CHECK(pending == "1");
        const auto held =
            co_await command(conn, "LLEN", "{redcoord:queue:jobs}:processing:node-1");
        CHECK(held == "1");

        auto [ep4, acked] = co_await q.async_ack("jobs", "", it->raw, nothrow);
        CHECK_FALSE(ep4);
        CHECK(acked);
        auto [ep5, again] = co_await q.async_ack("jobs", "", it->raw, nothrow);
        CHECK_FALSE(again);
        const auto held2 =
            co_await command(conn, "LLEN", "{redcoord:queue:jobs}:processing:node-1");
        CHECK(held2 == "0");

        auto [ep6, it2] = co_await q.async_dequeue("jobs", "", 0ms, nothrow);
        REQUIRE(it2.has_value());
        CHECK(it2->payload == "second");
        auto [ep7, none] = co_await q.async_dequeue("jobs", "", 0ms, nothrow);
        CHECK_FALSE(ep7);
        CHECK_FALSE(none.has_value());

        auto [ep8, bad] = co_await q.async_enqueue("", "x", nothrow);
        CHECK(code_of(ep8) == redcoord::error::invalid_argument);
    });
}

TEST_CASE("queue: a blocking dequeue is woken by an enqueue on another connection", "[queue]") {
    redcoord::test::redis_server srv;
    redcoord::test::run_async([&](asio::io_context& ioc) -> asio::awaitable<void> {
        side_connection a(ioc.get_executor(), srv), b(ioc.get_executor(), srv);
        session sa(a.conn, {.node_id = "node-a"}), sb(b.conn, {.node_id = "node-b"});
        reliable_queue qa(sa), qb(sb);
        auto ex = co_await asio::this_coro::executor;
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
                asio::steady_timer t(ex);
                t.expires_after(300ms);
                co_await t.async_wait(asio::use_awaitable);
                co_await qb.async_enqueue("mail", "hello", asio::use_awaitable);
            },
            asio::detached);
        const auto start = std::chrono::steady_clock::now();
        auto [ep, it] = co_await qa.async_dequeue("mail", "", 10s, nothrow);
        REQUIRE_FALSE(ep);
        REQUIRE(it.has_value());
        CHECK(it->payload == "hello");
        CHECK(std::chrono::steady_clock::now() - start >= 250ms);

        // A timeout with nothing: nullopt.
        auto [ep2, none] = co_await qa.async_dequeue("mail", "", 1s, nothrow);
        CHECK_FALSE(ep2);
        CHECK_FALSE(none.has_value());
    });
}

TEST_CASE("queue: a dead consumer's items are redelivered", "[queue]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-1"});
        reliable_queue q(s);
        for (const char* p : {"a", "b", "c"}) {
            auto [ep, id] = co_await q.async_enqueue("work", p, nothrow);
            REQUIRE_FALSE(ep);
        }
        // Two consumers: "alive" has a heartbeat, "dead" has none.
        co_await command(conn, "SET", "redcoord:hb:alive", "1", "PX", "60000");
        auto [e1, x] = co_await q.async_dequeue("work", "dead", 0ms, nothrow);
        auto [e2, y] = co_await q.async_dequeue("work", "dead", 0ms, nothrow);
        auto [e3, z] = co_await q.async_dequeue("work", "alive", 0ms, nothrow);
        REQUIRE(x.has_value());
        REQUIRE(y.has_value());
        REQUIRE(z.has_value());
        CHECK(x->payload == "a");
        CHECK(y->payload == "b");

        auto [ep, moved] = co_await q.async_redeliver("work", nothrow);
        REQUIRE_FALSE(ep);
        CHECK(moved == 2);
        const auto dead_left =
            co_await command(conn, "LLEN", "{redcoord:queue:work}:processing:dead");
        CHECK(dead_left == "0");
        const auto alive_left =
            co_await command(conn, "LLEN", "{redcoord:queue:work}:processing:alive");
        CHECK(alive_left == "1");

        // Oldest first, to the next consumer.
        auto [e4, r1] = co_await q.async_dequeue("work", "alive", 0ms, nothrow);
        auto [e5, r2] = co_await q.async_dequeue("work", "alive", 0ms, nothrow);
        REQUIRE(r1.has_value());
        REQUIRE(r2.has_value());
        CHECK(r1->payload == "a");
        CHECK(r2->payload == "b");
        // The dead consumer's ack comes too late.
        auto [e6, late] = co_await q.async_ack("work", "dead", x->raw, nothrow);
        CHECK_FALSE(late);
    });
}

TEST_CASE("queue: an idle worker steals from the longest queue", "[queue]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        reliable_queue q(s);
        for (int i = 0; i < 2; ++i) {
            auto [ep, id] = co_await q.async_enqueue_to("pool", "w1", "w1-" + std::to_string(i),
                                                        nothrow);
            REQUIRE_FALSE(ep);
        }
        for (int i = 0; i < 5; ++i) {
            auto [ep, id] = co_await q.async_enqueue_to("pool", "w2", "w2-" + std::to_string(i),
                                                        nothrow);
            REQUIRE_FALSE(ep);
        }
        auto [ep0, mine] = co_await q.async_try_dequeue("pool", "w1", nothrow);
        REQUIRE(mine.has_value());
        CHECK(mine->payload == "w1-0");
        CHECK(mine->worker == "w1");
        auto [ep1, none] = co_await q.async_try_dequeue("pool", "w3", nothrow);
        CHECK_FALSE(none.has_value());

        auto [ep2, stolen] = co_await q.async_steal("pool", "w3", nothrow);
        REQUIRE_FALSE(ep2);
        REQUIRE(stolen.has_value());
        CHECK(stolen->worker == "w2");
        CHECK(stolen->payload == "w2-4");  // the newest: the owner keeps the oldest
        const auto left = co_await command(conn, "LLEN", "{redcoord:queue:pool}:worker:w2");
        CHECK(left == "4");

        // w2 steals from w1, the only other one with work; nothing left to steal: nullopt.
        auto [ep3, s2] = co_await q.async_steal("pool", "w2", nothrow);
        REQUIRE(s2.has_value());
        CHECK(s2->worker == "w1");
        auto [ep4, s3] = co_await q.async_steal("pool", "w2", nothrow);
        CHECK_FALSE(ep4);
        CHECK_FALSE(s3.has_value());
    });
}
