// Pub/sub against a real redis-server: SUBSCRIBE, PSUBSCRIBE and SSUBSCRIBE on one connection,
// messages published from another, subscriptions restored after a restart, the overflow of
// unreceived pushes, and cancellation of async_receive.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "async_test.hpp"
#include "connection_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::push_message;
using redcoord::test::redis_server;
using redcoord::test::run_async;
using strings = std::vector<std::string>;

using redcoord::test::config_for;
using redcoord::test::nothrow;
using redcoord::test::require_ok;
using redcoord::test::wait_until;
constexpr auto test_deadline = 30s;

// Runs req, which must succeed, and returns its one reply as T.
template <class T = redcoord::ignore_t>
asio::awaitable<T> exec(redcoord::connection& conn, const redcoord::request& req) {
    T reply{};
    redcoord::diagnostics diag;
    auto [ec, n] = co_await conn.async_exec(req, reply, diag, nothrow);
    require_ok(ec, diag);
    co_return reply;
}

// SUBSCRIBE and friends: no reply, the confirmations arrive as pushes.
template <class... Channels>
asio::awaitable<void> subscription(redcoord::connection& conn, std::string_view command,
                                   const Channels&... channels) {
    redcoord::request req;
    req.push(command, channels...);
    REQUIRE(req.expected_responses() == 0);
    co_await exec(conn, req);
}

// PUBLISH (or SPUBLISH); returns how many subscribers got the message. Retried when written
// just before a restart that the publishing connection has not noticed yet.
asio::awaitable<long long> publish(redcoord::connection& conn, std::string_view channel,
                                   std::string_view payload, std::string_view command = "PUBLISH") {
    redcoord::request req(redcoord::request::config{.retry_on_connection_lost = true});
    req.push(command, channel, payload);
    co_return co_await exec<long long>(conn, req);
}

asio::awaitable<push_message> receive(redcoord::connection& conn) {
    push_message msg;
    auto [ec] = co_await conn.async_receive(msg, nothrow);
    INFO("async_receive: " << ec.message());
    REQUIRE_FALSE(ec);
    co_return msg;
}

// Receives one push and checks its kind, channel (or pattern) and payload.
asio::awaitable<push_message> expect_push(redcoord::connection& conn, std::string_view kind,
                                          std::string_view channel, std::string_view payload) {
    auto msg = co_await receive(conn);
    INFO("expected a " << kind << " push on " << channel);
    CHECK(msg.kind == kind);
    CHECK_FALSE(msg.is_gap());
    const bool pattern_kind = kind.starts_with("p") && kind != "pmessage";
    CHECK((pattern_kind ? msg.pattern : msg.channel) == channel);
    CHECK(msg.payload == payload);
    CHECK_FALSE(msg.nodes.empty());
    co_return msg;
}

asio::awaitable<void> expect_gap(redcoord::connection& conn, redcoord::push_event event) {
    const auto msg = co_await receive(conn);
    CHECK(msg.is_gap());
    CHECK(msg.event == event);
    CHECK(msg.kind.empty());
    CHECK(msg.nodes.empty());
}

// A round trip on conn: every push the server sent before it has been read once it completes.
asio::awaitable<void> round_trip(redcoord::connection& conn) {
    redcoord::request ping;
    ping.push("PING");
    co_await exec(conn, ping);
}

// Runs `body(sub, pub, srv)`: a subscriber and a publisher connection to a fresh server.
template <class Body>
void with_connections(Body body, std::size_t max_pending_pushes = 100000) {
    redis_server srv;
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            auto cfg = config_for(srv);
            cfg.max_pending_pushes = max_pending_pushes;
            redcoord::connection sub(ioc.get_executor()), pub(ioc.get_executor());
            sub.async_run(cfg, asio::detached);
            pub.async_run(cfg, asio::detached);
            co_await body(sub, pub, srv);
            sub.cancel();
            pub.cancel();
        },
        test_deadline);
}

}  // namespace

TEST_CASE("pubsub: channel, pattern and shard messages", "[integration][pubsub]") {
    with_connections([](redcoord::connection& sub, redcoord::connection& pub,
                        redis_server&) -> asio::awaitable<void> {
        co_await subscription(sub, "SUBSCRIBE", "ps:a", "ps:b");
        co_await expect_push(sub, "subscribe", "ps:a", "1");
        co_await expect_push(sub, "subscribe", "ps:b", "2");
        co_await subscription(sub, "PSUBSCRIBE", "ps:news.*");
        co_await expect_push(sub, "psubscribe", "ps:news.*", "3");
        co_await subscription(sub, "SSUBSCRIBE", "ps:shard");
        co_await expect_push(sub, "ssubscribe", "ps:shard", "1");

        const auto receivers = co_await publish(pub, "ps:a", "hello");
        CHECK(receivers == 1);
        co_await expect_push(sub, "message", "ps:a", "hello");

        const auto pattern_receivers = co_await publish(pub, "ps:news.sport", "goal");
        CHECK(pattern_receivers == 1);
        const auto pmessage = co_await expect_push(sub, "pmessage", "ps:news.sport", "goal");
        CHECK(pmessage.pattern == "ps:news.*");

        const auto shard_receivers = co_await publish(pub, "ps:shard", "sharded", "SPUBLISH");
        CHECK(shard_receivers == 1);
        co_await expect_push(sub, "smessage", "ps:shard", "sharded");

        // Messages arrive in the order they were published, binary payloads intact.
        const std::string binary("a\0b\r\nc", 6);
        co_await publish(pub, "ps:b", "first");
        co_await publish(pub, "ps:a", binary);
        co_await publish(pub, "ps:b", "third");
        co_await expect_push(sub, "message", "ps:b", "first");
        co_await expect_push(sub, "message", "ps:a", binary);
        co_await expect_push(sub, "message", "ps:b", "third");

        // The subscribed connection still serves ordinary requests.
        redcoord::request req;
        req.push("ECHO", "still here");
        const auto echo = co_await exec<std::string>(sub, req);
        CHECK(echo == "still here");
        CHECK(sub.get_usage().pushes_received == 10);
        CHECK(sub.get_usage().pushes_dropped == 0);
    });
}

TEST_CASE("pubsub: subscriptions are restored after a restart",
          "[integration][pubsub][single_server]") {
    with_connections([](redcoord::connection& sub, redcoord::connection& pub,
                        redis_server& srv) -> asio::awaitable<void> {
        co_await subscription(sub, "SUBSCRIBE", "ps:a");
        co_await subscription(sub, "PSUBSCRIBE", "ps:p.*");
        co_await subscription(sub, "SSUBSCRIBE", "ps:s");
        co_await expect_push(sub, "subscribe", "ps:a", "1");
        co_await expect_push(sub, "psubscribe", "ps:p.*", "2");
        co_await expect_push(sub, "ssubscribe", "ps:s", "1");

        for (int restart = 1; restart <= 2; ++restart) {
            srv.restart();
            co_await expect_gap(sub, redcoord::push_event::reconnected);
            co_await expect_push(sub, "subscribe", "ps:a", "1");
            co_await expect_push(sub, "psubscribe", "ps:p.*", "2");
            co_await expect_push(sub, "ssubscribe", "ps:s", "1");
            CHECK(sub.get_usage().connects == 1u + restart);

            const auto receivers = co_await publish(pub, "ps:a", "after restart");
            CHECK(receivers == 1);
            co_await expect_push(sub, "message", "ps:a", "after restart");
            co_await publish(pub, "ps:p.x", "pattern");
            co_await expect_push(sub, "pmessage", "ps:p.x", "pattern");
            co_await publish(pub, "ps:s", "shard", "SPUBLISH");
            co_await expect_push(sub, "smessage", "ps:s", "shard");
        }
    });
}

TEST_CASE("pubsub: unsubscribed channels are not restored",
          "[integration][pubsub][single_server]") {
    with_connections([](redcoord::connection& sub, redcoord::connection& pub,
                        redis_server& srv) -> asio::awaitable<void> {
        co_await subscription(sub, "SUBSCRIBE", "ps:keep", "ps:drop");
        co_await expect_push(sub, "subscribe", "ps:keep", "1");
        co_await expect_push(sub, "subscribe", "ps:drop", "2");
        co_await subscription(sub, "PSUBSCRIBE", "ps:x.*", "ps:y.*");
        co_await expect_push(sub, "psubscribe", "ps:x.*", "3");
        co_await expect_push(sub, "psubscribe", "ps:y.*", "4");

        co_await subscription(sub, "UNSUBSCRIBE", "ps:drop");
        co_await expect_push(sub, "unsubscribe", "ps:drop", "3");
        co_await subscription(sub, "PUNSUBSCRIBE");  // all patterns
        strings unsubscribed;
        for (int i = 0; i < 2; ++i) {
            const auto msg = co_await receive(sub);
            CHECK(msg.kind == "punsubscribe");
            unsubscribed.push_back(msg.pattern);
        }
        std::sort(unsubscribed.begin(), unsubscribed.end());
        CHECK(unsubscribed == strings{"ps:x.*", "ps:y.*"});

        srv.restart();
        co_await expect_gap(sub, redcoord::push_event::reconnected);
        co_await expect_push(sub, "subscribe", "ps:keep", "1");

        const auto to_drop = co_await publish(pub, "ps:drop", "lost");
        CHECK(to_drop == 0);
        const auto to_pattern = co_await publish(pub, "ps:x.1", "lost");
        CHECK(to_pattern == 0);
        const auto to_keep = co_await publish(pub, "ps:keep", "kept");
        CHECK(to_keep == 1);
        co_await expect_push(sub, "message", "ps:keep", "kept");
        CHECK(srv.cli({"PUBSUB", "CHANNELS"}) == "ps:keep");
        CHECK(srv.cli({"PUBSUB", "NUMPAT"}) == "0");
    });
}

TEST_CASE("pubsub: pushes nobody receives overflow into a gap", "[integration][pubsub]") {
    constexpr std::size_t max_pending = 5;
    constexpr int published = 20;
    with_connections(
        [&](redcoord::connection& sub, redcoord::connection& pub,
            redis_server&) -> asio::awaitable<void> {
            co_await subscription(sub, "SUBSCRIBE", "ps:flood");
            co_await expect_push(sub, "subscribe", "ps:flood", "1");

            redcoord::request flood;
            for (int i = 0; i < published; ++i) flood.push("PUBLISH", "ps:flood", i);
            co_await exec<redcoord::generic_response>(pub, flood);
            co_await round_trip(sub);

            CHECK(sub.get_usage().pushes_received == 1u + published);
            CHECK(sub.get_usage().pushes_dropped == published - max_pending);
            co_await expect_gap(sub, redcoord::push_event::overflow);
            for (int i = published - static_cast<int>(max_pending); i < published; ++i)
                co_await expect_push(sub, "message", "ps:flood", std::to_string(i));

            // Caught up: the next message comes without a gap.
            co_await publish(pub, "ps:flood", "fresh");
            co_await expect_push(sub, "message", "ps:flood", "fresh");
            CHECK(sub.get_usage().pushes_dropped == published - max_pending);
        },
        max_pending);
}

TEST_CASE("pubsub: cancelling async_receive", "[integration][pubsub]") {
    with_connections([](redcoord::connection& sub, redcoord::connection& pub,
                        redis_server&) -> asio::awaitable<void> {
        co_await subscription(sub, "SUBSCRIBE", "ps:c");
        co_await expect_push(sub, "subscribe", "ps:c", "1");

        const std::array types = {asio::cancellation_type::terminal,
                                  asio::cancellation_type::partial, asio::cancellation_type::total};
        for (auto type : types) {
            push_message msg;
            std::optional<error_code> result;
            asio::cancellation_signal signal;
            sub.async_receive(msg, asio::bind_cancellation_slot(
                                       signal.slot(), [&](error_code ec) { result = ec; }));
            co_await round_trip(sub);
            CHECK_FALSE(result);
            signal.emit(type);
            co_await wait_until([&] { return result.has_value(); });
            CHECK(*result == asio::error::operation_aborted);
        }

        // No push is lost: the next one goes to the next receiver.
        co_await publish(pub, "ps:c", "after cancel");
        co_await expect_push(sub, "message", "ps:c", "after cancel");
    });
}

TEST_CASE("pubsub: one receiver at a time", "[integration][pubsub]") {
    with_connections([](redcoord::connection& sub, redcoord::connection& pub,
                        redis_server&) -> asio::awaitable<void> {
        co_await subscription(sub, "SUBSCRIBE", "ps:one");
        co_await expect_push(sub, "subscribe", "ps:one", "1");

        push_message first;
        std::optional<error_code> first_result;
        sub.async_receive(first, [&](error_code ec) { first_result = ec; });
        push_message second;
        auto [ec] = co_await sub.async_receive(second, nothrow);
        CHECK(ec == redcoord::error::invalid_argument);
        CHECK_FALSE(first_result);

        co_await publish(pub, "ps:one", "to the first");
        co_await wait_until([&] { return first_result.has_value(); });
        CHECK_FALSE(*first_result);
        CHECK(first.payload == "to the first");
    });
}

TEST_CASE("pubsub: pushes left when async_run ends are still received", "[integration][pubsub]") {
    with_connections([](redcoord::connection& sub, redcoord::connection& pub,
                        redis_server&) -> asio::awaitable<void> {
        co_await subscription(sub, "SUBSCRIBE", "ps:end");
        co_await publish(pub, "ps:end", "last words");
        co_await round_trip(sub);
        sub.cancel();
        co_await expect_push(sub, "subscribe", "ps:end", "1");
        co_await expect_push(sub, "message", "ps:end", "last words");
        push_message msg;
        auto [ec] = co_await sub.async_receive(msg, nothrow);
        CHECK(ec == redcoord::error::run_not_started);
    });
}

TEST_CASE("pubsub: async_receive_all takes every queued push at once, overflow first",
          "[integration][pubsub]") {
    constexpr std::size_t max_pending = 50;
    with_connections(
        [&](redcoord::connection& sub, redcoord::connection& pub,
            redis_server&) -> asio::awaitable<void> {
            // The subscription request completes once the server confirmed it.
            co_await subscription(sub, "SUBSCRIBE", "ps:all");
            std::vector<push_message> got;
            auto [ec] = co_await sub.async_receive_all(got, nothrow);
            REQUIRE_FALSE(ec);
            REQUIRE(got.size() == 1);
            CHECK(got[0].kind == "subscribe");

            redcoord::request burst;
            for (int i = 0; i < 30; ++i) burst.push("PUBLISH", "ps:all", i);
            co_await exec<redcoord::generic_response>(pub, burst);
            co_await round_trip(sub);
            got.clear();
            auto [ec2] = co_await sub.async_receive_all(got, nothrow);
            REQUIRE_FALSE(ec2);
            REQUIRE(got.size() == 30);  // all of them, in one completion
            for (int i = 0; i < 30; ++i) CHECK(got[i].payload == std::to_string(i));

            // Past max_pending_pushes: the overflow event, then the newest.
            redcoord::request flood;
            for (int i = 0; i < 80; ++i) flood.push("PUBLISH", "ps:all", i);
            co_await exec<redcoord::generic_response>(pub, flood);
            co_await round_trip(sub);
            got.clear();
            auto [ec3] = co_await sub.async_receive_all(got, nothrow);
            REQUIRE_FALSE(ec3);
            REQUIRE(got.size() == max_pending + 1);
            CHECK(got[0].event == redcoord::push_event::overflow);
            CHECK(got[1].payload == "30");
            CHECK(got.back().payload == "79");

            // One receiver at a time, of either kind.
            std::optional<error_code> first, second;
            push_message one;
            sub.async_receive_all(got, [&](error_code e) { first = e; });
            sub.async_receive(one, [&](error_code e) { second = e; });
            co_await wait_until([&] { return second.has_value(); });
            CHECK(*second == redcoord::error::invalid_argument);
            co_await publish(pub, "ps:all", "last");
            co_await wait_until([&] { return first.has_value(); });
            CHECK_FALSE(*first);
        },
        max_pending);
}
