// Size limits of stored values against a real redis-server, for shared state, checkpoints,
// idempotent results and queue payloads: a value exactly at its configured limit is stored and
// reads back unchanged; one byte more is invalid_argument, the message names the key, the size
// and the limit, and nothing reaches Redis. A limit of 0 or over 512 MiB is bad_config.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "async_test.hpp"
#include "bad_input.hpp"
#include "connection_helpers.hpp"
#include "exception_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::checkpoint;
using redcoord::checkpoint_options;
using redcoord::checkpoint_store;
using redcoord::diagnostics;
using redcoord::idempotency;
using redcoord::idempotency_options;
using redcoord::queue_options;
using redcoord::reliable_queue;
using redcoord::session;
using redcoord::shared_state;
using redcoord::state_options;
using redcoord::test::check_bad_config;
using redcoord::test::check_names;
using redcoord::test::code_of;
using redcoord::test::command;
using redcoord::test::message_of;
using redcoord::test::nothrow;
using redcoord::test::require_ok;
using redcoord::test::wait_for;
using redcoord::test::with_connection;
using redcoord::test::with_quiet_connection;

constexpr std::size_t redis_max_string = std::size_t(512) * 1024 * 1024;

// The limit the tests configure: small, so the values stay small.
constexpr std::size_t limit = 100;

// A string whose JSON text (the quotes included) is `bytes` long.
std::string json_string_of(std::size_t bytes) { return std::string(bytes - 2, 'v'); }

// Checks a size limit option of Primitive: it defaults to Redis's largest string, and 0 or one
// byte over that is bad_config naming the option.
template <class Primitive, class Options, class Field>
void check_limit_option(session& s, Field Options::*field, const std::string& name) {
    Primitive defaults(s);  // the constructor without options
    CHECK(defaults.options().*field == redis_max_string);
    for (const Field bad_value : {Field{0}, static_cast<Field>(redis_max_string + 1)}) {
        INFO(name << " = " << bad_value);
        Options bad;
        bad.*field = bad_value;
        check_bad_config([&] { Primitive p(s, bad); }, name);
    }
}

TEST_CASE("value limits: shared state takes a value at max_value_bytes, refuses one byte more",
          "[value_limits][state]") {
    with_quiet_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        state_options opts;
        opts.max_value_bytes = limit;
        shared_state st(s, opts);
        CHECK(st.options().max_value_bytes == limit);

        std::vector<std::string> heard;
        auto w = st.watch<std::string>("big", [&](error_code ec, std::optional<std::string> v) {
            heard.push_back(ec ? "error: " + ec.message() : v.value_or("(removed)"));
        });
        co_await command(conn, "PING");  // the SUBSCRIBE has reached Redis

        // Exactly at the limit: stored, and it reads back unchanged.
        const std::string fits = json_string_of(limit);
        diagnostics diag;
        auto [ec] = co_await st.async_set("fits", fits, std::nullopt, diag, nothrow);
        require_ok(ec, diag);
        const auto stored = co_await command(conn, "GET", "redcoord:state:{fits}");
        CHECK(stored.size() == limit);
        auto [ec2, got] = co_await st.async_get<std::string>("fits", diag, nothrow);
        require_ok(ec2, diag);
        REQUIRE(got);
        CHECK(*got == fits);

        // One byte over: refused before anything is sent.
        const std::string over = json_string_of(limit + 1);
        auto [ec3] = co_await st.async_set("big", over, std::nullopt, diag, nothrow);
        CHECK(ec3 == redcoord::error::invalid_argument);
        check_names(diag.message(), {"state 'big'", "value of 101 bytes", "max_value_bytes (100)"});
        const auto exists = co_await command(conn, "EXISTS", "redcoord:state:{big}");
        CHECK(exists == "0");

        // Nor was it announced: the first change the watcher hears is the next one.
        const std::string small = "small";
        auto [ec4] = co_await st.async_set("big", small, std::nullopt, diag, nothrow);
        require_ok(ec4, diag);
        const bool heard_one = co_await wait_for([&] { return !heard.empty(); });
        REQUIRE(heard_one);
        CHECK(heard.front() == small);

        // A typed value is limited by its JSON text too.
        const std::vector<int> many(60, 7);  // [7,7,...]: 121 bytes
        auto [ec5] = co_await st.async_set("typed", many, std::nullopt, diag, nothrow);
        CHECK(ec5 == redcoord::error::invalid_argument);
        check_names(diag.message(), {"state 'typed'", "value of 121 bytes"});
        const auto typed_exists = co_await command(conn, "EXISTS", "redcoord:state:{typed}");
        CHECK(typed_exists == "0");

        check_limit_option<shared_state, state_options>(s, &state_options::max_value_bytes,
                                                        "max_value_bytes");
    });
}

TEST_CASE("value limits: checkpoints take data at max_value_bytes, refuse one byte more",
          "[value_limits][checkpoint]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        checkpoint_options opts;
        opts.max_value_bytes = limit;
        checkpoint_store store(s, opts);
        CHECK(store.options().max_value_bytes == limit);

        // The data's JSON exactly at the limit: saved, and it loads back unchanged.
        checkpoint<std::string> cp;
        cp.task_id = "fits";
        cp.sequence = 1;
        cp.progress = 0.5;
        cp.data = json_string_of(limit);
        diagnostics diag;
        auto [ec] = co_await store.async_save(cp, diag, nothrow);
        require_ok(ec, diag);
        auto [ec2, latest] = co_await store.async_load_latest<std::string>("fits", diag, nothrow);
        require_ok(ec2, diag);
        REQUIRE(latest);
        CHECK(latest->sequence == 1);
        CHECK(latest->progress == 0.5);
        CHECK(latest->data == cp.data);
        const auto text = co_await command(conn, "GET", "redcoord:checkpoint:{fits}:1");
        const auto stored = json::parse(text).as_object();
        CHECK(stored.at("task_id") == "fits");
        CHECK(stored.at("data") == json::value(cp.data));
        CHECK(stored.at("saved_at").is_int64());

        // One byte over: refused; neither the checkpoint nor the task's index is written.
        checkpoint<std::string> big;
        big.task_id = "big";
        big.sequence = 3;
        big.progress = 0.25;
        big.data = json_string_of(limit + 1);
        auto [ec3] = co_await store.async_save(big, diag, nothrow);
        CHECK(ec3 == redcoord::error::invalid_argument);
        check_names(diag.message(),
                    {"checkpoint of 'big'", "value of 101 bytes", "max_value_bytes (100)"});
        const auto exists = co_await command(conn, "EXISTS", "redcoord:checkpoint:{big}:3",
                                             "redcoord:checkpoint:{big}:index");
        CHECK(exists == "0");
        auto [ec4, none] = co_await store.async_load_latest<std::string>("big", diag, nothrow);
        require_ok(ec4, diag);
        CHECK_FALSE(none);

        // An oversize save of a task that has checkpoints leaves them as they were.
        checkpoint<std::string> later = cp;
        later.sequence = 2;
        later.data = json_string_of(limit + 1);
        auto [ec5] = co_await store.async_save(later, diag, nothrow);
        CHECK(ec5 == redcoord::error::invalid_argument);
        const auto index = co_await command(conn, "ZCARD", "redcoord:checkpoint:{fits}:index");
        CHECK(index == "1");
        auto [ec6, still] = co_await store.async_load_latest<std::string>("fits", diag, nothrow);
        require_ok(ec6, diag);
        REQUIRE(still);
        CHECK(still->sequence == 1);

        check_limit_option<checkpoint_store, checkpoint_options>(s, &checkpoint_options::max_value_bytes,
                                                                 "max_value_bytes");
    });
}

TEST_CASE("value limits: idempotency takes a result at max_value_bytes, refuses one byte more",
          "[value_limits][idempotency]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        idempotency_options opts;
        opts.max_value_bytes = limit;
        idempotency idem(s, opts);
        CHECK(idem.options().max_value_bytes == limit);

        // A result exactly at the limit: stored, and a later caller gets it without running op.
        int runs = 0;
        std::size_t result_bytes = limit;
        auto op = [&]() -> asio::awaitable<std::string> {
            ++runs;
            co_return json_string_of(result_bytes);
        };
        auto [ep, first] = co_await idem.async_once("fits", op, std::nullopt, nothrow);
        REQUIRE_FALSE(ep);
        CHECK(first == json_string_of(limit));
        const auto stored = co_await command(conn, "GET", "redcoord:idempotency:{fits}");
        CHECK(stored.size() == limit);
        auto [ep2, again] = co_await idem.async_once("fits", op, std::nullopt, nothrow);
        REQUIRE_FALSE(ep2);
        CHECK(again == first);
        CHECK(runs == 1);

        // One byte over: refused; neither the result nor the in-flight marker is left.
        result_bytes = limit + 1;
        auto [ep3, v3] = co_await idem.async_once("big", op, std::nullopt, nothrow);
        CHECK(code_of(ep3) == redcoord::error::invalid_argument);
        check_names(message_of(ep3), {"idempotent operation 'big'", "value of 101 bytes",
                                      "max_value_bytes (100)"});
        CHECK(runs == 2);
        const auto exists = co_await command(conn, "EXISTS", "redcoord:idempotency:{big}",
                                             "redcoord:idempotency:{big}:running");
        CHECK(exists == "0");

        check_limit_option<idempotency, idempotency_options>(s, &idempotency_options::max_value_bytes,
                                                             "max_value_bytes");
    });
}

TEST_CASE("value limits: queues take a payload at max_value_bytes, refuse one byte more",
          "[value_limits][queue]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        queue_options opts;
        opts.max_value_bytes = limit;
        reliable_queue q(s, opts);
        CHECK(q.options().max_value_bytes == limit);

        // Text exactly at the limit: pushed, and it comes back unchanged.
        const std::string fits(limit, 'p');
        auto [ec, id] = co_await q.async_enqueue("jobs", fits, nothrow);
        REQUIRE_FALSE(ec);
        auto [ec2, item] = co_await q.async_dequeue("jobs", "c1", 0ms, nothrow);
        REQUIRE_FALSE(ec2);
        REQUIRE(item);
        CHECK(item->id == id);
        CHECK(item->payload == fits);
        auto [ec3, acked] = co_await q.async_ack("jobs", "c1", item->raw, nothrow);
        REQUIRE_FALSE(ec3);
        CHECK(acked);

        // One byte over: refused, nothing pushed.
        const std::string over(limit + 1, 'p');
        diagnostics diag;
        auto [ec4, id4] = co_await q.async_enqueue("jobs", over, diag, nothrow);
        CHECK(ec4 == redcoord::error::invalid_argument);
        check_names(diag.message(),
                    {"queue 'jobs'", "payload of 101 bytes", "max_value_bytes (100)"});
        CHECK(id4.empty());
        const auto len = co_await command(conn, "LLEN", "redcoord:queue:{jobs}");
        CHECK(len == "0");

        // A typed value is limited by its JSON text.
        const std::vector<int> many(60, 7);  // [7,7,...]: 121 bytes
        auto [ec5, id5] = co_await q.async_enqueue("jobs", many, diag, nothrow);
        CHECK(ec5 == redcoord::error::invalid_argument);
        check_names(diag.message(), {"payload of 121 bytes", "max_value_bytes (100)"});
        const auto len2 = co_await command(conn, "LLEN", "redcoord:queue:{jobs}");
        CHECK(len2 == "0");

        // Per-worker queues: the same limit; neither the worker's queue nor the set of workers
        // is written.
        auto [ec6, id6] = co_await q.async_enqueue_to("jobs", "w1", over, diag, nothrow);
        CHECK(ec6 == redcoord::error::invalid_argument);
        check_names(diag.message(), {"queue 'jobs'", "max_value_bytes (100)"});
        const auto exists = co_await command(conn, "EXISTS", "redcoord:queue:{jobs}:worker:w1",
                                             "redcoord:queue:{jobs}:workers");
        CHECK(exists == "0");
        auto [ec7, id7] = co_await q.async_enqueue_to("jobs", "w1", fits, nothrow);
        REQUIRE_FALSE(ec7);
        auto [ec8, taken] = co_await q.async_try_dequeue("jobs", "w1", nothrow);
        REQUIRE_FALSE(ec8);
        REQUIRE(taken);
        CHECK(taken->payload == fits);

        check_limit_option<reliable_queue, queue_options>(s, &queue_options::max_value_bytes,
                                                          "max_value_bytes");
    });
}

}  // namespace
