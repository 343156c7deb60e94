// Typed events against a real redis-server: round trips, order, local fan-out on one Redis
// subscription, patterns, slow subscribers, gaps after a restart, decode failures, bad input.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "async_test.hpp"
#include "connection_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::event;
using redcoord::event_bus;
using redcoord::overflow_policy;
using redcoord::receiver;
using redcoord::session;
using redcoord::subscription;
using redcoord::test::command;
using redcoord::test::config_for;
using redcoord::test::nothrow;
using redcoord::test::quiet_config;
using redcoord::test::redis_server;
using redcoord::test::sleep_for;
using redcoord::test::wait_for;
using redcoord::test::with_quiet_connection;

struct order {
    std::string id;
    int quantity = 0;
    std::vector<std::string> tags;
};

void tag_invoke(const json::value_from_tag&, json::value& jv, const order& o) {
    jv = {{"id", o.id}, {"quantity", o.quantity}, {"tags", json::value_from(o.tags)}};
}

order tag_invoke(const json::value_to_tag<order>&, const json::value& jv) {
    const auto& obj = jv.as_object();
    return order{json::value_to<std::string>(obj.at("id")), json::value_to<int>(obj.at("quantity")),
                 json::value_to<std::vector<std::string>>(obj.at("tags"))};
}

// The next event of r, failing the test when none comes within `limit`.
template <class T>
asio::awaitable<std::tuple<error_code, event<T>>> receive(receiver<T>& r,
                                                           std::chrono::milliseconds limit = 10s) {
    using namespace asio::experimental::awaitable_operators;
    asio::steady_timer t(co_await asio::this_coro::executor, limit);
    auto res = co_await (r.async_receive(nothrow) || t.async_wait(nothrow));
    if (res.index() == 1) FAIL("no event on '" << r.name() << "' within " << limit.count() << " ms");
    co_return std::get<0>(std::move(res));
}

// Publishes, which must succeed; returns the number of receiving clients.
template <class T>
asio::awaitable<std::int64_t> publish(event_bus& bus, std::string channel, const T& value) {
    auto [ec, n] = co_await bus.async_publish(std::move(channel), value, nothrow);
    INFO(ec.message());
    REQUIRE_FALSE(ec);
    co_return n;
}

// PUBSUB NUMSUB of one channel: on the server, summed over every master of a cluster (a
// client subscribes on one master of its choosing).
asio::awaitable<std::int64_t> numsub(const redis_server& srv, const std::string& channel) {
    co_return redcoord::test::subscriber_count(srv, channel);
}

asio::awaitable<bool> wait_numsub(const redis_server& srv, const std::string& channel,
                                  std::int64_t expected) {
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < until) {
        if (co_await numsub(srv, channel) == expected) co_return true;
        co_await sleep_for(10ms);
    }
    co_return false;
}

// A second connection of the test (a publisher elsewhere), kept up in the background.
struct other_connection {
    redcoord::connection conn;
    other_connection(asio::any_io_executor ex, const redis_server& srv) : conn(std::move(ex)) {
        conn.async_run(quiet_config(srv), asio::detached);
    }
    ~other_connection() { conn.cancel(); }
};

TEST_CASE("events: a user type round-trips through a receiver and a callback", "[events]") {
    with_quiet_connection([](redcoord::connection& conn, auto& srv) -> asio::awaitable<void> {
        session s(conn);
        event_bus bus(s);
        auto r = bus.make_receiver<order>("orders");
        std::vector<order> seen;
        auto sub = bus.subscribe<order>("orders", [&](error_code ec, const event<order>& ev) {
            if (!ec) seen.push_back(ev.value);
        });
        co_await command(conn, "PING");  // the SUBSCRIBE has reached Redis

        other_connection other(co_await asio::this_coro::executor, srv);
        session s2(other.conn);
        event_bus bus2(s2);
        const order sent{"o-17", 3, {"express", "gift"}};
        const auto receivers = co_await publish(bus2, "orders", sent);
        CHECK(receivers == 1);  // one Redis subscription for both local subscribers

        auto [ec, ev] = co_await receive(r);
        REQUIRE_FALSE(ec);
        CHECK(ev.channel == "orders");
        CHECK(ev.value.id == "o-17");
        CHECK(ev.value.quantity == 3);
        CHECK(ev.value.tags == sent.tags);
        const bool got = co_await wait_for([&] { return seen.size() == 1; });
        REQUIRE(got);
        CHECK(seen[0].id == "o-17");

        // The payload is plain JSON on the documented channel.
        auto raw = bus.make_receiver<json::value>("orders");
        co_await command(conn, "PING");
        const json::value jv = {{"any", "json"}};
        co_await publish(bus2, "orders", jv);
        auto [ec2, ev2] = co_await receive(raw);
        REQUIRE_FALSE(ec2);
        CHECK(ev2.value == jv);
        auto [ec3, ev3] = co_await receive(r);
        CHECK(ec3 == redcoord::error::decode_failed);  // not an order
        CHECK(ev3.channel == "orders");
        const auto n = co_await command(conn, "PUBLISH", "redcoord:events:orders",
                                        json::serialize(json::value_from(sent)));
        CHECK(n == "1");
        auto [ec4, ev4] = co_await receive(r);
        REQUIRE_FALSE(ec4);
        CHECK(ev4.value.id == "o-17");
    });
}

TEST_CASE("events: 10,000 messages on one channel arrive complete and in order", "[events]") {
    with_quiet_connection([](redcoord::connection& conn, auto& srv) -> asio::awaitable<void> {
        session s(conn);
        event_bus bus(s);
        constexpr int count = 10000;
        auto r = bus.make_receiver<int>("seq", count, overflow_policy::drop_subscriber);
        int next_cb = 0;
        bool cb_in_order = true;
        auto sub = bus.subscribe<int>("seq", [&](error_code ec, const event<int>& ev) {
            if (ec || ev.value != next_cb) cb_in_order = false;
            ++next_cb;
        });
        co_await command(conn, "PING");

        other_connection other(co_await asio::this_coro::executor, srv);
        session s2(other.conn);
        event_bus bus2(s2);
        int published = 0, failed = 0;
        // All queued at once, in order: they leave pipelined.
        for (int i = 0; i < count; ++i)
            bus2.async_publish("seq", i, [&](error_code ec, std::int64_t n) {
                if (ec || n != 1) ++failed;
                ++published;
            });

        int expected = 0;
        bool in_order = true;
        for (; expected < count; ++expected) {
            auto [ec, ev] = co_await receive(r);
            if (ec || ev.value != expected) {
                INFO("at " << expected << ": " << ec.message() << " value " << ev.value);
                in_order = false;
                break;
            }
        }
        CHECK(in_order);
        CHECK(expected == count);
        const bool done = co_await wait_for([&] { return published == count && next_cb == count; });
        REQUIRE(done);
        CHECK(failed == 0);
        CHECK(cb_in_order);
        CHECK(r.dropped() == 0);
        CHECK(r.is_open());
    });
}

TEST_CASE("events: 1,000 local subscribers share one Redis subscription", "[events]") {
    with_quiet_connection([](redcoord::connection& conn, auto& srv) -> asio::awaitable<void> {
        session s(conn);
        event_bus bus(s);
        constexpr int subscribers = 1000, messages = 50;
        std::vector<int> next(subscribers, 0);
        int out_of_order = 0;
        std::vector<subscription> subs;
        for (int i = 0; i < subscribers; ++i)
            subs.push_back(bus.subscribe<int>("fan", [&, i](error_code ec, const event<int>& ev) {
                if (ec || ev.value != next[i]) ++out_of_order;
                ++next[i];
            }));
        co_await command(conn, "PING");

        other_connection other(co_await asio::this_coro::executor, srv);
        const auto subscribed = co_await numsub(srv, "redcoord:events:fan");
        CHECK(subscribed == 1);
        session s2(other.conn);
        event_bus bus2(s2);
        for (int m = 0; m < messages; ++m) {
            const auto n = co_await publish(bus2, "fan", m);
            CHECK(n == 1);
        }
        const bool all = co_await wait_for([&] {
            for (int v : next)
                if (v != messages) return false;
            return true;
        });
        CHECK(all);
        CHECK(out_of_order == 0);

        // Dropping all but one keeps the subscription; dropping the last one ends it.
        subs.resize(1);
        co_await command(conn, "PING");
        const auto still = co_await numsub(srv, "redcoord:events:fan");
        CHECK(still == 1);
        subs.clear();
        const bool gone = co_await wait_numsub(srv, "redcoord:events:fan", 0);
        CHECK(gone);
    });
}

TEST_CASE("events: pattern subscriptions name the channel that matched", "[events]") {
    with_quiet_connection([](redcoord::connection& conn, auto& srv) -> asio::awaitable<void> {
        session s(conn);
        event_bus bus(s);
        auto r = bus.make_pattern_receiver<std::string>("orders.*");
        std::vector<std::string> cb_channels;
        auto sub = bus.psubscribe<std::string>("orders.*", [&](error_code ec, const event<std::string>& ev) {
            if (!ec) cb_channels.push_back(ev.channel + "=" + ev.value);
        });
        co_await command(conn, "PING");

        other_connection other(co_await asio::this_coro::executor, srv);
        session s2(other.conn);
        event_bus bus2(s2);
        const auto n1 = co_await publish(bus2, "orders.eu", std::string("a"));
        const auto n2 = co_await publish(bus2, "invoices.eu", std::string("x"));
        const auto n3 = co_await publish(bus2, "orders.us", std::string("b"));
        CHECK(n1 == 1);
        CHECK(n2 == 0);
        CHECK(n3 == 1);

        auto [ec1, e1] = co_await receive(r);
        REQUIRE_FALSE(ec1);
        CHECK(e1.channel == "orders.eu");
        CHECK(e1.value == "a");
        auto [ec2, e2] = co_await receive(r);
        REQUIRE_FALSE(ec2);
        CHECK(e2.channel == "orders.us");
        CHECK(e2.value == "b");
        const bool both = co_await wait_for([&] { return cb_channels.size() == 2; });
        REQUIRE(both);
        CHECK(cb_channels[0] == "orders.eu=a");
        CHECK(cb_channels[1] == "orders.us=b");
        CHECK(r.queue_size() == 0);
    });
}

TEST_CASE("events: a slow drop_oldest subscriber neither stalls others nor grows", "[events]") {
    with_quiet_connection([](redcoord::connection& conn, auto& srv) -> asio::awaitable<void> {
        session s(conn);
        event_bus bus(s);
        constexpr std::size_t limit = 8;
        constexpr int count = 2000;
        auto slow = bus.make_receiver<int>("load", limit, overflow_policy::drop_oldest);
        auto fast = bus.make_receiver<int>("load", count, overflow_policy::drop_subscriber);
        std::size_t max_slow_queue = 0;
        // Watches the slow queue at every delivery (subscribed after it: called after it).
        auto probe = bus.subscribe<int>("load", [&](error_code, const event<int>&) {
            max_slow_queue = std::max(max_slow_queue, slow.queue_size());
        });
        co_await command(conn, "PING");

        other_connection other(co_await asio::this_coro::executor, srv);
        session s2(other.conn);
        event_bus bus2(s2);
        for (int i = 0; i < count; ++i) bus2.async_publish("load", i, asio::detached);

        int got = 0;
        for (; got < count; ++got) {
            auto [ec, ev] = co_await receive(fast);
            if (ec || ev.value != got) break;
        }
        CHECK(got == count);
        CHECK(fast.dropped() == 0);
        CHECK(max_slow_queue <= limit);
        CHECK(slow.queue_size() == limit);
        CHECK(slow.dropped() == count - limit);
        CHECK(slow.is_open());

        // The slow one hears of the gap once, then gets the newest events in order.
        auto [gec, gev] = co_await receive(slow);
        CHECK(gec == redcoord::error::events_gap);
        for (int i = count - static_cast<int>(limit); i < count; ++i) {
            auto [ec, ev] = co_await receive(slow);
            REQUIRE_FALSE(ec);
            CHECK(ev.value == i);
        }
        CHECK(slow.queue_size() == 0);
    });
}

TEST_CASE("events: drop_subscriber closes a slow subscriber with subscriber_overflow", "[events]") {
    with_quiet_connection([](redcoord::connection& conn, auto& srv) -> asio::awaitable<void> {
        session s(conn);
        event_bus bus(s);
        auto slow = bus.make_receiver<int>("burst", 4, overflow_policy::drop_subscriber);
        auto fast = bus.make_receiver<int>("burst", 100, overflow_policy::drop_subscriber);
        co_await command(conn, "PING");

        other_connection other(co_await asio::this_coro::executor, srv);
        session s2(other.conn);
        event_bus bus2(s2);
        for (int i = 0; i < 10; ++i) co_await publish(bus2, "burst", i);
        for (int i = 0; i < 10; ++i) {
            auto [ec, ev] = co_await receive(fast);
            REQUIRE_FALSE(ec);
            CHECK(ev.value == i);
        }
        CHECK_FALSE(slow.is_open());
        CHECK(slow.queue_size() == 4);
        // What it had queued, then the overflow, for good.
        for (int i = 0; i < 4; ++i) {
            auto [ec, ev] = co_await receive(slow);
            REQUIRE_FALSE(ec);
            CHECK(ev.value == i);
        }
        auto [ec1, e1] = co_await receive(slow);
        CHECK(ec1 == redcoord::error::subscriber_overflow);
        auto [ec2, e2] = co_await receive(slow);
        CHECK(ec2 == redcoord::error::subscriber_overflow);
        CHECK(fast.is_open());
        const auto subscribed = co_await numsub(srv, "redcoord:events:burst");
        CHECK(subscribed == 1);
    });
}

TEST_CASE("events: after a Redis restart subscribers get a gap, then new messages",
          "[events][single_server]") {
    with_quiet_connection([](redcoord::connection& conn, auto& srv) -> asio::awaitable<void> {
        session s(conn);
        event_bus bus(s);
        auto r = bus.make_receiver<int>("live");
        std::vector<int> cb_values;
        int cb_gaps = 0;
        auto sub = bus.subscribe<int>("live", [&](error_code ec, const event<int>& ev) {
            if (ec == redcoord::error::events_gap)
                ++cb_gaps;
            else if (!ec)
                cb_values.push_back(ev.value);
        });
        co_await command(conn, "PING");
        other_connection other(co_await asio::this_coro::executor, srv);
        session s2(other.conn);
        event_bus bus2(s2);
        co_await publish(bus2, "live", 1);
        auto [ec1, e1] = co_await receive(r);
        REQUIRE_FALSE(ec1);
        CHECK(e1.value == 1);

        srv.restart();
        auto [ec2, e2] = co_await receive(r);
        CHECK(ec2 == redcoord::error::events_gap);
        const bool cb_gap = co_await wait_for([&] { return cb_gaps == 1; });
        CHECK(cb_gap);

        // The subscription is restored on the new server.
        const bool restored = co_await wait_numsub(srv, "redcoord:events:live", 1);
        REQUIRE(restored);
        co_await publish(bus2, "live", 2);
        auto [ec3, e3] = co_await receive(r);
        REQUIRE_FALSE(ec3);
        CHECK(e3.value == 2);
        const bool cb_new = co_await wait_for([&] { return cb_values.size() == 2; });
        REQUIRE(cb_new);
        CHECK(cb_values[1] == 2);
    });
}

TEST_CASE("events: a payload that does not decode is reported, not fatal", "[events]") {
    with_quiet_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        event_bus bus(s);
        auto r = bus.make_receiver<int>("mixed");
        std::vector<error_code> cb_errors;
        auto sub = bus.subscribe<int>("mixed", [&](error_code ec, const event<int>& ev) {
            cb_errors.push_back(ec);
            if (ec) CHECK(ev.channel == "mixed");
        });
        co_await command(conn, "PING");
        co_await command(conn, "PUBLISH", "redcoord:events:mixed", "{not json");
        co_await command(conn, "PUBLISH", "redcoord:events:mixed", "\"text\"");
        co_await command(conn, "PUBLISH", "redcoord:events:mixed", "42");

        auto [ec1, e1] = co_await receive(r);
        CHECK(ec1 == redcoord::error::decode_failed);
        CHECK(e1.channel == "mixed");
        auto [ec2, e2] = co_await receive(r);
        CHECK(ec2 == redcoord::error::decode_failed);
        auto [ec3, e3] = co_await receive(r);
        REQUIRE_FALSE(ec3);
        CHECK(e3.value == 42);
        CHECK(r.is_open());
        const bool all = co_await wait_for([&] { return cb_errors.size() == 3; });
        REQUIRE(all);
        CHECK(cb_errors[0] == redcoord::error::decode_failed);
        CHECK(cb_errors[1] == redcoord::error::decode_failed);
        CHECK_FALSE(cb_errors[2]);
    });
}

TEST_CASE("events: a cancelled receive loses no event", "[events]") {
    with_quiet_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        event_bus bus(s);
        auto r = bus.make_receiver<int>("cancel");
        co_await command(conn, "PING");
        for (auto type : {asio::cancellation_type::terminal, asio::cancellation_type::partial,
                          asio::cancellation_type::total}) {
            asio::cancellation_signal sig;
            error_code got;
            bool done = false;
            r.async_receive(asio::bind_cancellation_slot(
                sig.slot(), [&](error_code ec, event<int>) {
                    got = ec;
                    done = true;
                }));
            co_await sleep_for(5ms);
            CHECK_FALSE(done);
            sig.emit(type);
            const bool completed = co_await wait_for([&] { return done; });
            REQUIRE(completed);
            CHECK(got == asio::error::operation_aborted);
        }
        event_bus pub(s);
        co_await publish(pub, "cancel", 7);
        auto [ec, ev] = co_await receive(r);
        REQUIRE_FALSE(ec);
        CHECK(ev.value == 7);
        // The receive helper cancels its receive at its deadline: nothing is lost either.
        co_await publish(pub, "cancel", 8);
        auto [ec2, ev2] = co_await receive(r);
        REQUIRE_FALSE(ec2);
        CHECK(ev2.value == 8);
    });
}

TEST_CASE("events: subscriptions end by RAII, from inside callbacks, and with the session",
          "[events]") {
    with_quiet_connection([](redcoord::connection& conn, auto& srv) -> asio::awaitable<void> {
        other_connection other(co_await asio::this_coro::executor, srv);
        auto s = std::make_unique<session>(conn);
        event_bus bus(*s);
        int calls = 0;
        subscription self;
        self = bus.subscribe<int>("once", [&](error_code ec, const event<int>&) {
            if (ec) return;
            ++calls;
            self.unsubscribe();  // from inside its own call
        });
        int other_calls = 0;
        auto keep = bus.subscribe<int>("once", [&](error_code ec, const event<int>&) {
            if (!ec) ++other_calls;
        });
        co_await command(conn, "PING");
        event_bus pub(*s);
        co_await publish(pub, "once", 1);
        co_await publish(pub, "once", 2);
        const bool both = co_await wait_for([&] { return other_calls == 2; });
        REQUIRE(both);
        CHECK(calls == 1);
        CHECK_FALSE(self.active());

        // A pending receive hears of the session's end.
        auto r = bus.make_receiver<int>("end");
        error_code end_ec;
        bool ended = false;
        error_code cb_end;
        keep = bus.subscribe<int>("end", [&](error_code ec, const event<int>&) { cb_end = ec; });
        r.async_receive([&](error_code ec, event<int>) {
            end_ec = ec;
            ended = true;
        });
        co_await sleep_for(5ms);
        s.reset();
        const bool done = co_await wait_for([&] { return ended; });
        REQUIRE(done);
        CHECK(end_ec == redcoord::error::session_closed);
        CHECK(cb_end == redcoord::error::session_closed);
        CHECK_FALSE(r.is_open());
    });
}

TEST_CASE("events: bad input is an error naming the field", "[events]") {
    with_quiet_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        event_bus bus(s);
        auto [ec, n] = co_await bus.async_publish("", 1, nothrow);
        CHECK(ec == redcoord::error::invalid_argument);
        try {
            auto sub = bus.subscribe<int>("", [](error_code, const event<int>&) {});
            FAIL("subscribe accepted an empty channel");
        } catch (const redcoord::error_with_diagnostics& e) {
            CHECK(e.code() == redcoord::error::invalid_argument);
            CHECK_THAT(e.get_diagnostics().message(), Catch::Contains("channel"));
        }
        try {
            auto sub = bus.psubscribe<int>("", [](error_code, const event<int>&) {});
            FAIL("psubscribe accepted an empty pattern");
        } catch (const redcoord::error_with_diagnostics& e) {
            CHECK(e.code() == redcoord::error::invalid_argument);
            CHECK_THAT(e.get_diagnostics().message(), Catch::Contains("pattern"));
        }
        try {
            auto r = bus.make_receiver<int>("c", 0, overflow_policy::drop_oldest);
            FAIL("make_receiver accepted a zero queue limit");
        } catch (const redcoord::error_with_diagnostics& e) {
            CHECK(e.code() == redcoord::error::invalid_argument);
            CHECK_THAT(e.get_diagnostics().message(), Catch::Contains("queue_limit"));
        }
        try {
            event_bus bad(s, {.queue_limit = 0});
            FAIL("event_bus accepted a zero queue limit");
        } catch (const redcoord::error_with_diagnostics& e) {
            CHECK(e.code() == redcoord::error::bad_config);
            CHECK_THAT(e.get_diagnostics().message(), Catch::Contains("queue_limit"));
        }
        // A receiver that was moved from fails at once rather than hanging.
        auto r = bus.make_receiver<int>("moved");
        auto r2 = std::move(r);
        auto [ec2, ev2] = co_await r.async_receive(nothrow);
        CHECK(ec2 == asio::error::operation_aborted);
        CHECK(r2.is_open());
    });
}

}  // namespace

TEST_CASE("events: async_receive_all takes what is queued, in order, errors after events",
          "[events]") {
    with_quiet_connection([](redcoord::connection& conn, auto& srv) -> asio::awaitable<void> {
        session s(conn);
        event_bus bus(s);
        auto r = bus.make_receiver<int>("batch");
        auto other_type = bus.make_receiver<std::string>("batch");  // decoded once per type
        co_await command(conn, "PING");
        other_connection other(co_await asio::this_coro::executor, srv);
        session s2(other.conn);
        event_bus bus2(s2);
        constexpr int count = 5000;
        for (int i = 0; i < count; ++i) bus2.async_publish("batch", i, asio::detached);

        std::vector<event<int>> got;
        int calls = 0;
        while (got.size() < count) {
            auto [ec] = co_await r.async_receive_all(got, nothrow);
            REQUIRE_FALSE(ec);
            ++calls;
        }
        REQUIRE(got.size() == count);
        bool in_order = true;
        for (int i = 0; i < count; ++i)
            if (got[i].value != i || got[i].channel != "batch") in_order = false;
        CHECK(in_order);
        CHECK(calls < count);  // several events per resume

        // The string receiver got every one as decode_failed (they are numbers), each with
        // its channel, one per call (a failure ends a batch).
        std::vector<event<std::string>> strings;
        auto [sec] = co_await other_type.async_receive_all(strings, nothrow);
        CHECK(sec == redcoord::error::decode_failed);
        REQUIRE(strings.size() == 1);
        CHECK(strings[0].channel == "batch");

        // Events before a bad payload come first; its failure is reported with it.
        co_await command(conn, "PUBLISH", "redcoord:events:batch", "1");
        co_await command(conn, "PUBLISH", "redcoord:events:batch", "2");
        co_await command(conn, "PUBLISH", "redcoord:events:batch", "{not json");
        co_await command(conn, "PUBLISH", "redcoord:events:batch", "3");
        std::vector<event<int>> more;
        while (more.size() < 3) {
            auto [ec] = co_await r.async_receive_all(more, nothrow);
            if (ec) {
                CHECK(ec == redcoord::error::decode_failed);
                CHECK(more.size() == 3);
                break;
            }
        }
        REQUIRE(more.size() == 3);
        CHECK(more[0].value == 1);
        CHECK(more[1].value == 2);
        CHECK(more[2].channel == "batch");
        more.clear();
        auto [ec4] = co_await r.async_receive_all(more, nothrow);
        CHECK_FALSE(ec4);
        REQUIRE(more.size() == 1);
        CHECK(more[0].value == 3);

        // Cancelled while waiting: completes with operation_aborted and loses nothing.
        asio::cancellation_signal sig;
        std::optional<error_code> cancelled;
        std::vector<event<int>> none;
        r.async_receive_all(none, asio::bind_cancellation_slot(
                                      sig.slot(), [&](error_code ec) { cancelled = ec; }));
        sig.emit(asio::cancellation_type::terminal);
        co_await wait_for([&] { return cancelled.has_value(); });
        CHECK(*cancelled == asio::error::operation_aborted);
        CHECK(none.empty());
        co_await command(conn, "PUBLISH", "redcoord:events:batch", "4");
        std::vector<event<int>> after;
        auto [ec5] = co_await r.async_receive_all(after, nothrow);
        CHECK_FALSE(ec5);
        REQUIRE(after.size() == 1);
        CHECK(after[0].value == 4);
    });
}
