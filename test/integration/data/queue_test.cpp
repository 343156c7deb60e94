// Reliable queues against a real redis-server: round trip and acknowledgement, typed payloads,
// a blocking dequeue woken by an enqueue on another connection, redelivery of a dead
// consumer's items (including a consumer process killed mid-item), 100,000 items through
// several consumers, and work stealing from the longest queue.
//
// Consumer processes (test/support/cluster_worker.cpp) are started with fork/exec, tied to
// this process and ended by their PID only. Every wait is bounded; the tests assert outcomes,
// not timings.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>
#include <boost/json/value_to.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <signal.h>

#include "async_test.hpp"
#include "bad_input.hpp"
#include "cluster_process.hpp"
#include "connection_helpers.hpp"
#include "redis_server.hpp"
#include "sample_types.hpp"

namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::queue_item;
using redcoord::reliable_queue;
using redcoord::session;
using redcoord::test::check_names;
using redcoord::test::cluster_process;
using redcoord::test::command;
using redcoord::test::describe;
using redcoord::test::nothrow;
using redcoord::test::port_of;
using redcoord::test::redis_server;
using redcoord::test::require_line;
using redcoord::test::require_ok;
using redcoord::test::run_async;
using redcoord::test::session_group;
using redcoord::test::side_connection;
using redcoord::test::sleep_for;
using redcoord::test::wait_until;
using redcoord::test::with_connection;

using job = redcoord::test::sample_record;  // a user type carried by the queue through tag_invoke

// The message of the error that item.as<job>() throws, which must be decode_failed; fails the
// test (saying `what` was decoded) when it does not throw.
std::string decode_failure(const queue_item& item, std::string_view what) {
    try {
        (void)item.as<job>();
    } catch (const redcoord::error_with_diagnostics& e) {
        CHECK(e.code() == redcoord::error::decode_failed);
        return e.what();
    }
    FAIL("as<job>() of " << what << " did not throw");
    return {};
}

}  // namespace

TEST_CASE("queue: round trip, processing list and ack", "[queue]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-1"});
        reliable_queue q(s);
        auto [ec1, id1] = co_await q.async_enqueue("jobs", "first", nothrow);
        REQUIRE_FALSE(ec1);
        CHECK(id1.size() == 32);
        auto [ec2, id2] = co_await q.async_enqueue("jobs", "second", nothrow);
        REQUIRE_FALSE(ec2);

        auto [ec3, it] = co_await q.async_dequeue("jobs", "", 0ms, nothrow);
        REQUIRE_FALSE(ec3);
        REQUIRE(it.has_value());
        CHECK(it->payload == "first");
        CHECK(it->id == id1);
        const auto pending = co_await command(conn, "LLEN", "redcoord:queue:{jobs}");
        CHECK(pending == "1");
        const auto held =
            co_await command(conn, "LLEN", "redcoord:queue:{jobs}:processing:node-1");
        CHECK(held == "1");

        auto [ec4, acked] = co_await q.async_ack("jobs", "", it->raw, nothrow);
        CHECK_FALSE(ec4);
        CHECK(acked);
        auto [ec5, again] = co_await q.async_ack("jobs", "", it->raw, nothrow);
        CHECK_FALSE(again);
        const auto held2 =
            co_await command(conn, "LLEN", "redcoord:queue:{jobs}:processing:node-1");
        CHECK(held2 == "0");

        auto [ec6, it2] = co_await q.async_dequeue("jobs", "", 0ms, nothrow);
        REQUIRE(it2.has_value());
        CHECK(it2->payload == "second");
        auto [ec7, none] = co_await q.async_dequeue("jobs", "", 0ms, nothrow);
        CHECK_FALSE(ec7);
        CHECK_FALSE(none.has_value());

        redcoord::diagnostics diag;
        auto [ec8, bad] = co_await q.async_enqueue("", "x", diag, nothrow);
        CHECK(ec8 == redcoord::error::invalid_argument);
        CHECK(diag.message().find("queue name") != std::string::npos);
    });
}

TEST_CASE("queue: bad input is invalid_argument, with diagnostics naming it", "[queue]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-1"});
        redcoord::queue_options small;
        small.max_value_bytes = 4;
        reliable_queue q(s, small);
        redcoord::diagnostics diag;
        auto [ec1, id1] = co_await q.async_enqueue("", "x", diag, nothrow);
        CHECK(ec1 == redcoord::error::invalid_argument);
        CHECK(id1.empty());
        check_names(diag.message(), {"queue name"});
        const std::string too_long = "too long";
        auto [ec2, id2] = co_await q.async_enqueue("jobs", too_long, diag, nothrow);
        CHECK(ec2 == redcoord::error::invalid_argument);
        check_names(diag.message(),
                    {"queue 'jobs'", "payload of 8 bytes", "max_value_bytes (4)"});
        const job typed = redcoord::test::make_sample_record("resize", 3, {"images"});
        auto [ec3, id3] = co_await q.async_enqueue_to("jobs", "w1", typed, diag, nothrow);
        CHECK(ec3 == redcoord::error::invalid_argument);
        check_names(diag.message(), {"queue 'jobs'", "max_value_bytes (4)"});
        auto [ec4, id4] = co_await q.async_enqueue_to("jobs", "", "x", diag, nothrow);
        CHECK(ec4 == redcoord::error::invalid_argument);
        check_names(diag.message(), {"worker"});
        auto [ec5, item] = co_await q.async_dequeue("jobs", "", -1ms, diag, nothrow);
        CHECK(ec5 == redcoord::error::invalid_argument);
        CHECK_FALSE(item.has_value());
        check_names(diag.message(), {"queue 'jobs'", "timeout"});
        auto [ec6, acked] = co_await q.async_ack("", "c1", "raw", diag, nothrow);
        CHECK(ec6 == redcoord::error::invalid_argument);
        CHECK_FALSE(acked);
        check_names(diag.message(), {"queue name"});
        auto [ec7, moved] = co_await q.async_redeliver("", diag, nothrow);
        CHECK(ec7 == redcoord::error::invalid_argument);
        check_names(diag.message(), {"queue name"});
        auto [ec8, own] = co_await q.async_try_dequeue("jobs", "", diag, nothrow);
        CHECK(ec8 == redcoord::error::invalid_argument);
        check_names(diag.message(), {"worker"});
        auto [ec9, stolen] = co_await q.async_steal("", "w1", diag, nothrow);
        CHECK(ec9 == redcoord::error::invalid_argument);
        check_names(diag.message(), {"queue name"});

        // Nothing was pushed; a success clears what the last error left.
        const auto pending = co_await command(conn, "LLEN", "redcoord:queue:{jobs}");
        CHECK(pending == "0");
        auto [ec10, id10] = co_await q.async_enqueue("jobs", "ok", diag, nothrow);
        require_ok(ec10, diag);
        CHECK(diag.empty());
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
        auto [ec, it] = co_await qa.async_dequeue("mail", "", 10s, nothrow);
        REQUIRE_FALSE(ec);
        REQUIRE(it.has_value());
        CHECK(it->payload == "hello");
        CHECK(std::chrono::steady_clock::now() - start >= 250ms);

        // A timeout with nothing: nullopt.
        auto [ec2, none] = co_await qa.async_dequeue("mail", "", 1s, nothrow);
        CHECK_FALSE(ec2);
        CHECK_FALSE(none.has_value());
    });
}

TEST_CASE("queue: a dead consumer's items are redelivered", "[queue]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-1"});
        reliable_queue q(s);
        for (const char* p : {"a", "b", "c"}) {
            auto [ec, id] = co_await q.async_enqueue("work", p, nothrow);
            REQUIRE_FALSE(ec);
        }
        // Two consumers: "alive" has a heartbeat, "dead" has none.
        co_await command(conn, "SET", "redcoord:hb:{registry}:alive", "1", "PX", "60000");
        auto [e1, x] = co_await q.async_dequeue("work", "dead", 0ms, nothrow);
        auto [e2, y] = co_await q.async_dequeue("work", "dead", 0ms, nothrow);
        auto [e3, z] = co_await q.async_dequeue("work", "alive", 0ms, nothrow);
        REQUIRE(x.has_value());
        REQUIRE(y.has_value());
        REQUIRE(z.has_value());
        CHECK(x->payload == "a");
        CHECK(y->payload == "b");

        auto [ec, moved] = co_await q.async_redeliver("work", nothrow);
        REQUIRE_FALSE(ec);
        CHECK(moved == 2);
        const auto dead_left =
            co_await command(conn, "LLEN", "redcoord:queue:{work}:processing:dead");
        CHECK(dead_left == "0");
        const auto alive_left =
            co_await command(conn, "LLEN", "redcoord:queue:{work}:processing:alive");
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
            auto [ec, id] = co_await q.async_enqueue_to("pool", "w1", "w1-" + std::to_string(i),
                                                        nothrow);
            REQUIRE_FALSE(ec);
        }
        for (int i = 0; i < 5; ++i) {
            auto [ec, id] = co_await q.async_enqueue_to("pool", "w2", "w2-" + std::to_string(i),
                                                        nothrow);
            REQUIRE_FALSE(ec);
        }
        auto [ec0, mine] = co_await q.async_try_dequeue("pool", "w1", nothrow);
        REQUIRE(mine.has_value());
        CHECK(mine->payload == "w1-0");
        CHECK(mine->worker == "w1");
        auto [ec1, none] = co_await q.async_try_dequeue("pool", "w3", nothrow);
        CHECK_FALSE(none.has_value());

        auto [ec2, stolen] = co_await q.async_steal("pool", "w3", nothrow);
        REQUIRE_FALSE(ec2);
        REQUIRE(stolen.has_value());
        CHECK(stolen->worker == "w2");
        CHECK(stolen->payload == "w2-4");  // the newest: the owner keeps the oldest
        const auto left = co_await command(conn, "LLEN", "redcoord:queue:{pool}:worker:w2");
        CHECK(left == "4");

        // w2 steals from w1, the only other one with work; nothing left to steal: nullopt.
        auto [ec3, s2] = co_await q.async_steal("pool", "w2", nothrow);
        REQUIRE(s2.has_value());
        CHECK(s2->worker == "w1");
        auto [ec4, s3] = co_await q.async_steal("pool", "w2", nothrow);
        CHECK_FALSE(ec4);
        CHECK_FALSE(s3.has_value());
    });
}

TEST_CASE("queue: typed payloads round trip as JSON and text stays text", "[queue]") {
    with_connection([](redcoord::connection& conn, redis_server&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-1"});
        reliable_queue q(s);
        const job sent = redcoord::test::make_sample_record("resize", 3, {"images", "batch"});
        auto [ec1, id1] = co_await q.async_enqueue("typed", sent, nothrow);
        REQUIRE_FALSE(ec1);
        // Text takes the text overload whatever its form, and is stored as is.
        auto [ec2, id2] = co_await q.async_enqueue("typed", "plain text", nothrow);
        REQUIRE_FALSE(ec2);
        const std::string text = "{\"name\": not json";
        auto [ec3, id3] = co_await q.async_enqueue("typed", text, nothrow);
        REQUIRE_FALSE(ec3);
        const std::string_view view = "a view";
        auto [ec4, id4] = co_await q.async_enqueue("typed", view, nothrow);
        REQUIRE_FALSE(ec4);
        const std::vector<int> numbers{1, 2, 3};
        auto [ec5, id5] = co_await q.async_enqueue("typed", numbers, nothrow);
        REQUIRE_FALSE(ec5);

        // Stored: the id, ':', then the value's JSON.
        const auto oldest = co_await command(conn, "LINDEX", "redcoord:queue:{typed}", "-1");
        CHECK(oldest == id1 + ":" + json::serialize(json::value_from(sent)));

        auto [e1, it1] = co_await q.async_dequeue("typed", "", 0ms, nothrow);
        REQUIRE_FALSE(e1);
        REQUIRE(it1.has_value());
        CHECK(it1->id == id1);
        CHECK(it1->as<job>() == sent);
        auto [e2, it2] = co_await q.async_dequeue("typed", "", 0ms, nothrow);
        REQUIRE(it2.has_value());
        CHECK(it2->payload == "plain text");
        CHECK(it2->as<std::string>() == "plain text");
        auto [e3, it3] = co_await q.async_dequeue("typed", "", 0ms, nothrow);
        REQUIRE(it3.has_value());
        CHECK(it3->payload == text);
        CHECK(it3->as<std::string>() == text);
        auto [e4, it4] = co_await q.async_dequeue("typed", "", 0ms, nothrow);
        REQUIRE(it4.has_value());
        CHECK(it4->payload == "a view");
        auto [e5, it5] = co_await q.async_dequeue("typed", "", 0ms, nothrow);
        REQUIRE(it5.has_value());
        CHECK(it5->payload == "[1,2,3]");
        CHECK(it5->as<std::vector<int>>() == numbers);
        for (const auto* it : {&it1, &it2, &it3, &it4, &it5}) {
            auto [aec, acked] = co_await q.async_ack("typed", "", (*it)->raw, nothrow);
            CHECK_FALSE(aec);
            CHECK(acked);
        }

        // Per-worker queues carry typed values too.
        auto [ec6, id6] = co_await q.async_enqueue_to("typed-pool", "w1", sent, nothrow);
        REQUIRE_FALSE(ec6);
        auto [ec7, id7] = co_await q.async_enqueue_to("typed-pool", "w2", "text", nothrow);
        REQUIRE_FALSE(ec7);
        auto [ec8, own] = co_await q.async_try_dequeue("typed-pool", "w1", nothrow);
        REQUIRE_FALSE(ec8);
        REQUIRE(own.has_value());
        CHECK(own->id == id6);
        CHECK(own->as<job>() == sent);
        auto [ec9, stolen] = co_await q.async_steal("typed-pool", "w1", nothrow);
        REQUIRE(stolen.has_value());
        CHECK(stolen->payload == "text");
    });
}

TEST_CASE("queue: a payload that does not decode is decode_failed naming the item", "[queue]") {
    with_connection([](redcoord::connection& conn, redis_server&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-1"});
        reliable_queue q(s);
        auto [ec1, id1] = co_await q.async_enqueue("bad", "{\"name\": not json", nothrow);
        REQUIRE_FALSE(ec1);
        const int answer = 42;
        auto [ec2, id2] = co_await q.async_enqueue("bad", answer, nothrow);
        REQUIRE_FALSE(ec2);
        json::object partial;
        partial["name"] = "no number, no tags";
        auto [ec3, id3] = co_await q.async_enqueue("bad", partial, nothrow);
        REQUIRE_FALSE(ec3);

        // Not JSON: the exception names the item and says why.
        auto [e1, not_json] = co_await q.async_dequeue("bad", "", 0ms, nothrow);
        REQUIRE(not_json.has_value());
        CHECK_THROWS_AS(not_json->as<job>(), redcoord::error_with_diagnostics);
        const std::string why1 = decode_failure(*not_json, "text that is not JSON");
        CHECK(why1.find(id1) != std::string::npos);
        CHECK(why1.find("not JSON") != std::string::npos);
        error_code ec;
        redcoord::diagnostics diag;
        const auto none = not_json->try_as<job>(ec, diag);
        CHECK_FALSE(none.has_value());
        CHECK(ec == redcoord::error::decode_failed);
        CHECK(diag.message().find(id1) != std::string::npos);
        // The text itself is still there.
        CHECK(not_json->as<std::string>() == "{\"name\": not json");

        // JSON of another shape: decode_failed too; the right type reads it.
        auto [e2, number] = co_await q.async_dequeue("bad", "", 0ms, nothrow);
        REQUIRE(number.has_value());
        CHECK(number->as<int>() == 42);
        const std::string why2 = decode_failure(*number, "a number");
        CHECK(why2.find(id2) != std::string::npos);
        CHECK(why2.find("does not convert") != std::string::npos);
        auto [e3, incomplete] = co_await q.async_dequeue("bad", "", 0ms, nothrow);
        REQUIRE(incomplete.has_value());
        ec.clear();
        const auto missing_fields = incomplete->try_as<job>(ec, diag);
        CHECK_FALSE(missing_fields.has_value());
        CHECK(ec == redcoord::error::decode_failed);
        CHECK(diag.message().find(id3) != std::string::npos);
        const json::value raw_json = incomplete->as<json::value>();
        CHECK(raw_json.at("name").as_string() == "no number, no tags");
    });
}

TEST_CASE("queue: a consumer process killed mid-item has the item redelivered and acked once",
          "[queue][process]") {
    redis_server srv;
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            side_connection c(ioc.get_executor(), srv);
            session s(c.conn, {.node_id = "supervisor"});
            reliable_queue q(s);
            std::vector<std::string> ids;
            for (const char* p : {"a", "b", "c"}) {
                auto [ec, id] = co_await q.async_enqueue("jobs", p, nothrow);
                REQUIRE_FALSE(ec);
                ids.push_back(id);
            }

            // The victim takes the oldest item and holds it. Its heartbeat key lives 500 ms past
            // each beat (every 200 ms).
            std::vector<std::string> victim_args{port_of(srv), "consumer", "victim", "jobs",
                                                 "200",        "300"};
            cluster_process victim(victim_args);
            const auto holding = co_await require_line(victim, "holding ", 20s);
            CHECK(holding == "holding " + ids[0] + " a");
            const auto held = co_await command(c.conn, "LINDEX",
                                               "redcoord:queue:{jobs}:processing:victim", "0");
            CHECK(held == ids[0] + ":a");

            // The other items are taken and acknowledged meanwhile.
            for (int i = 1; i < 3; ++i) {
                auto [ec, it] = co_await q.async_dequeue("jobs", "", 0ms, nothrow);
                REQUIRE_FALSE(ec);
                REQUIRE(it.has_value());
                CHECK(it->id == ids[i]);
                auto [aec, acked] = co_await q.async_ack("jobs", "", it->raw, nothrow);
                CHECK(acked);
            }

            // A second consumer process waits on the empty queue.
            std::vector<std::string> rescuer_args{port_of(srv), "consumer", "rescuer", "jobs",
                                                  "200",        "300",      "ack"};
            cluster_process rescuer(rescuer_args);
            co_await require_line(rescuer, "joined", 20s);

            // Killed mid-item: nobody will acknowledge "a" for the victim.
            REQUIRE(victim.signal(SIGKILL));
            {
                auto code = co_await victim.wait_exit(10s);
                REQUIRE(code);
                CHECK(*code == 128 + SIGKILL);
            }

            // Once the victim's heartbeat key has expired, redelivery gives the item back.
            std::int64_t moved = 0;
            const auto deadline = std::chrono::steady_clock::now() + 20s;
            while (moved == 0 && std::chrono::steady_clock::now() < deadline) {
                redcoord::diagnostics diag;
                auto [rec, n] = co_await q.async_redeliver("jobs", diag, nothrow);
                require_ok(rec, diag);
                moved = n;
                if (moved == 0) co_await sleep_for(50ms);
            }
            REQUIRE(moved == 1);

            // The waiting consumer gets it and acknowledges it.
            {
                auto holding = co_await rescuer.line_starting_with("holding ", 20s);
                auto acked = co_await rescuer.line_starting_with("acked ", 20s);
                auto code = co_await rescuer.wait_exit(20s);
                INFO(rescuer.transcript());
                REQUIRE(holding);
                CHECK(*holding == "holding " + ids[0] + " a");
                REQUIRE(acked);
                CHECK(*acked == "acked " + ids[0]);
                REQUIRE(code);
                CHECK(*code == 0);
            }

            // Acknowledged exactly once: the victim's ack would find nothing; nothing is left.
            const std::string victim_raw = ids[0] + ":a";
            auto [lec, late] = co_await q.async_ack("jobs", "victim", victim_raw, nothrow);
            CHECK_FALSE(lec);
            CHECK_FALSE(late);
            const auto pending = co_await command(c.conn, "LLEN", "redcoord:queue:{jobs}");
            CHECK(pending == "0");
            for (const char* who : {"victim", "rescuer", "supervisor"}) {
                const auto left = co_await command(
                    c.conn, "LLEN", std::string("redcoord:queue:{jobs}:processing:") + who);
                INFO(who);
                CHECK(left == "0");
            }
            const auto still_known = co_await command(c.conn, "SISMEMBER",
                                                      "redcoord:queue:{jobs}:consumers", "victim");
            CHECK(still_known == "0");
            auto [rec2, again] = co_await q.async_redeliver("jobs", nothrow);
            CHECK_FALSE(rec2);
            CHECK(again == 0);
        },
        120s);
}

TEST_CASE("queue: 100,000 items through 4 consumers, each acked exactly once", "[queue]") {
    redis_server srv;
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            constexpr int items = 100000;
            constexpr int producers = 64;  // concurrent enqueues, pipelined on one connection
            constexpr int consumers = 4;   // sessions, each on a connection of its own
            constexpr int loops = 8;       // concurrent dequeue loops of each consumer
            auto ex = co_await asio::this_coro::executor;
            side_connection producer_conn(ex, srv);
            session ps(producer_conn.conn, {.node_id = "producer"});
            reliable_queue pq(ps);
            session_group<reliable_queue> group(ex, srv, consumers, "consumer-");
            auto& queues = group.parts;

            struct acked_item {
                std::string id, payload;
                int consumer = 0;
            };
            std::vector<std::string> ids(items);
            std::vector<acked_item> acked;
            acked.reserve(items);
            std::string failure;
            int next = 0, producing = producers, running = producers + consumers * loops;
            int refused_acks = 0;
            for (int p = 0; p < producers; ++p) {
                asio::co_spawn(
                    ex,
                    [&]() -> asio::awaitable<void> {
                        while (next < items && failure.empty()) {
                            const int i = next++;
                            redcoord::diagnostics diag;
                            auto [ec, id] = co_await pq.async_enqueue("bulk", std::to_string(i),
                                                                      diag, nothrow);
                            if (ec) {
                                failure = "enqueue: " + describe(ec, diag);
                                break;
                            }
                            ids[i] = std::move(id);
                        }
                        --producing;
                        --running;
                    },
                    asio::detached);
            }
            for (int c = 0; c < consumers; ++c) {
                for (int l = 0; l < loops; ++l) {
                    asio::co_spawn(
                        ex,
                        [&, c]() -> asio::awaitable<void> {
                            auto& q = *queues[c];
                            while (failure.empty()) {
                                // Once everything is enqueued, an empty queue stays empty.
                                const bool all_enqueued = producing == 0;
                                redcoord::diagnostics diag;
                                auto [ec, item] = co_await q.async_dequeue("bulk", "", 500ms,
                                                                           diag, nothrow);
                                if (ec) {
                                    failure = "dequeue: " + describe(ec, diag);
                                    break;
                                }
                                if (!item) {
                                    if (all_enqueued) break;
                                    continue;
                                }
                                auto [aec, ok] =
                                    co_await q.async_ack("bulk", "", item->raw, diag, nothrow);
                                if (aec) {
                                    failure = "ack: " + describe(aec, diag);
                                    break;
                                }
                                if (!ok) {
                                    ++refused_acks;
                                    continue;
                                }
                                acked_item a;
                                a.id = std::move(item->id);
                                a.payload = std::move(item->payload);
                                a.consumer = c;
                                acked.push_back(std::move(a));
                            }
                            --running;
                        },
                        asio::detached);
                }
            }
            co_await wait_until([&] { return running == 0; });
            INFO(failure);
            REQUIRE(failure.empty());
            CHECK(refused_acks == 0);
            CHECK(static_cast<int>(acked.size()) == items);

            // Every enqueued id acked exactly once, with its own payload, by some consumer.
            std::vector<int> seen(items, 0);
            std::vector<int> per_consumer(consumers, 0);
            int foreign = 0, mismatched = 0;
            for (const auto& a : acked) {
                const int i = std::stoi(a.payload);
                ++per_consumer[a.consumer];
                if (i < 0 || i >= items) {
                    ++foreign;
                    continue;
                }
                ++seen[i];
                if (ids[i] != a.id) ++mismatched;
            }
            const auto never = std::count(seen.begin(), seen.end(), 0);
            const auto twice = std::count_if(seen.begin(), seen.end(), [](int n) { return n > 1; });
            CHECK(never == 0);
            CHECK(twice == 0);
            CHECK(foreign == 0);
            CHECK(mismatched == 0);
            auto distinct = ids;
            std::sort(distinct.begin(), distinct.end());
            CHECK(std::unique(distinct.begin(), distinct.end()) == distinct.end());
            for (int c = 0; c < consumers; ++c) {
                INFO("consumer-" << c << " acked " << per_consumer[c]);
                CHECK(per_consumer[c] > 0);
            }

            // Nothing left in the queue or in any processing list.
            const auto pending =
                co_await command(producer_conn.conn, "LLEN", "redcoord:queue:{bulk}");
            CHECK(pending == "0");
            for (int c = 0; c < consumers; ++c) {
                const auto held = co_await command(
                    producer_conn.conn, "LLEN",
                    "redcoord:queue:{bulk}:processing:consumer-" + std::to_string(c));
                INFO("consumer-" << c);
                CHECK(held == "0");
            }
        },
        240s);
}

TEST_CASE("queue: work stealing spreads a load enqueued to one worker over all", "[queue]") {
    redis_server srv;
    run_async([&](asio::io_context& ioc) -> asio::awaitable<void> {
        constexpr int workers = 4;
        constexpr int items = 400;
        auto ex = co_await asio::this_coro::executor;
        session_group<reliable_queue> group(ex, srv, workers, "node-");
        auto& queues = group.parts;
        // The whole load on worker w0's queue.
        for (int i = 0; i < items; ++i) {
            auto [ec, id] =
                co_await queues[0]->async_enqueue_to("pool", "w0", std::to_string(i), nothrow);
            REQUIRE_FALSE(ec);
        }

        // Each worker takes from its own queue, steals when that is empty, and stops when
        // there is nothing left to steal (no item is enqueued after the start).
        std::vector<int> processed(workers, 0), seen(items, 0);
        std::string failure;
        int running = workers;
        for (int w = 0; w < workers; ++w) {
            asio::co_spawn(
                ex,
                [&, w]() -> asio::awaitable<void> {
                    auto& q = *queues[w];
                    const std::string me = "w" + std::to_string(w);
                    while (failure.empty()) {
                        redcoord::diagnostics diag;
                        auto [ec, item] = co_await q.async_try_dequeue("pool", me, diag, nothrow);
                        if (ec) {
                            failure = me + " try_dequeue: " + describe(ec, diag);
                            break;
                        }
                        if (!item) {
                            auto [sec, stolen] = co_await q.async_steal("pool", me, diag, nothrow);
                            if (sec) {
                                failure = me + " steal: " + describe(sec, diag);
                                break;
                            }
                            if (!stolen) break;
                            if (stolen->worker != "w0") {
                                failure = me + " stole from " + stolen->worker;
                                break;
                            }
                            item = std::move(stolen);
                        }
                        ++processed[w];
                        ++seen[std::stoi(item->payload)];
                        co_await sleep_for(1ms);  // the work
                    }
                    --running;
                },
                asio::detached);
        }
        co_await wait_until([&] { return running == 0; });
        INFO(failure);
        REQUIRE(failure.empty());
        int total = 0;
        for (int w = 0; w < workers; ++w) {
            INFO("w" << w << " processed " << processed[w]);
            CHECK(processed[w] > 0);
            total += processed[w];
        }
        CHECK(total == items);
        CHECK(std::count(seen.begin(), seen.end(), 1) == items);
        const auto left =
            co_await command(group.conns[0]->conn, "LLEN", "redcoord:queue:{pool}:worker:w0");
        CHECK(left == "0");
    });
}

TEST_CASE("queue: steal always takes the newest item of the longest other queue", "[queue]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        reliable_queue q(s);
        // w3 steals; its own queue is the longest and must never be touched. w2 and w4 tie.
        const std::map<std::string, int> lengths{{"w0", 5}, {"w1", 3}, {"w2", 7}, {"w3", 10},
                                                 {"w4", 7}};
        int stealable = 0;
        for (const auto& [w, n] : lengths) {
            for (int i = 0; i < n; ++i) {
                const std::string payload = w + "-" + std::to_string(i);
                auto [ec, id] = co_await q.async_enqueue_to("ladder", w, payload, nothrow);
                REQUIRE_FALSE(ec);
            }
            if (w != "w3") stealable += n;
        }
        auto key = [](const std::string& w) { return "redcoord:queue:{ladder}:worker:" + w; };
        int steals = 0;
        for (int round = 0; round <= stealable; ++round) {
            // The expected victim: the longest other queue, ties to the smallest name.
            std::string expected, newest;
            long long best = 0;
            for (const auto& [w, n] : lengths) {
                if (w == "w3") continue;
                const auto len_text = co_await command(conn, "LLEN", key(w));
                const long long len = std::stoll(len_text);
                if (len > best) {
                    best = len;
                    expected = w;
                    newest = co_await command(conn, "LINDEX", key(w), "0");
                }
            }
            auto [ec, stolen] = co_await q.async_steal("ladder", "w3", nothrow);
            REQUIRE_FALSE(ec);
            if (best == 0) {
                CHECK_FALSE(stolen.has_value());
                break;
            }
            INFO("round " << round);
            REQUIRE(stolen.has_value());
            CHECK(stolen->worker == expected);
            CHECK(stolen->raw == newest);
            ++steals;
        }
        CHECK(steals == stealable);
        const auto own = co_await command(conn, "LLEN", key("w3"));
        CHECK(own == "10");
    });
}
