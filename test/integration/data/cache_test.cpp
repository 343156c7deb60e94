// The cache against a real redis-server: typed round trips, native TTLs, clear and keys limited
// to the prefix, get-or-set that calls its factory once among 50 callers on one or two
// connections (waiting by push), the array form, a failing filler taken over, and bad input.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "async_test.hpp"
#include "connection_helpers.hpp"
#include "exception_helpers.hpp"
#include "redis_server.hpp"
#include "sample_types.hpp"

namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::cache;
using redcoord::cache_options;
using redcoord::diagnostics;
using redcoord::session;
using redcoord::test::code_of;
using redcoord::test::command;
using redcoord::test::config_for;
using redcoord::test::message_of;
using redcoord::test::nothrow;
using redcoord::test::require_ok;
using redcoord::test::run_concurrently;
using redcoord::test::side_connection;
using redcoord::test::sleep_for;
using redcoord::test::wait_for;
using redcoord::test::with_connection;

using profile = redcoord::test::sample_record;  // a user type, through tag_invoke

profile make_profile(std::string name, int age) {
    return redcoord::test::make_sample_record(std::move(name), age, {"a", "b"});
}

using redcoord::test::command_calls;
using redcoord::test::key_count;

TEST_CASE("cache: typed round trip under the documented key, with and without TTL", "[cache]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        cache c(s);
        const profile alice = make_profile("alice", 31);
        diagnostics diag;
        const std::optional<std::chrono::milliseconds> ttl = 60s;
        auto [ec] = co_await c.async_set("user:1", alice, ttl, diag, nothrow);
        require_ok(ec, diag);
        auto [ec2, got] = co_await c.async_get<profile>("user:1", diag, nothrow);
        require_ok(ec2, diag);
        REQUIRE(got);
        CHECK(*got == alice);

        auto text = co_await command(conn, "GET", "redcoord:cache:{user:1}");
        CHECK(json::parse(text) == json::value_from(alice));
        const auto pttl = std::stoll(co_await command(conn, "PTTL", "redcoord:cache:{user:1}"));
        CHECK(pttl > 0);
        CHECK(pttl <= 60000);

        // Without a TTL the entry does not expire.
        auto [ec3] = co_await c.async_set("counter", 42, std::nullopt, nothrow);
        REQUIRE_FALSE(ec3);
        const auto persistent = co_await command(conn, "PTTL", "redcoord:cache:{counter}");
        CHECK(persistent == "-1");
        auto [ec4, n] = co_await c.async_get<int>("counter", nothrow);
        REQUIRE_FALSE(ec4);
        CHECK(n == std::optional<int>(42));

        // A miss is not an error.
        auto [ec5, none] = co_await c.async_get<profile>("user:2", nothrow);
        REQUIRE_FALSE(ec5);
        CHECK_FALSE(none);

        // Delete says whether there was something to delete.
        auto [ec6, deleted] = co_await c.async_del("user:1", nothrow);
        REQUIRE_FALSE(ec6);
        CHECK(deleted);
        auto [ec7, again] = co_await c.async_del("user:1", nothrow);
        REQUIRE_FALSE(ec7);
        CHECK_FALSE(again);
        const auto exists = co_await command(conn, "EXISTS", "redcoord:cache:{user:1}");
        CHECK(exists == "0");
    });
}

TEST_CASE("cache: a value that is not JSON or not a T is decode_failed", "[cache]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        cache c(s);
        co_await command(conn, "SET", "redcoord:cache:{raw}", "not json {");
        diagnostics diag;
        auto [ec, v] = co_await c.async_get<int>("raw", diag, nothrow);
        CHECK(ec == redcoord::error::decode_failed);
        CHECK(diag.message().find("raw") != std::string::npos);
        CHECK_FALSE(v);
        auto [ec2] = co_await c.async_set("text", std::string("hello"), std::nullopt, nothrow);
        REQUIRE_FALSE(ec2);
        auto [ec3, p] = co_await c.async_get<profile>("text", diag, nothrow);
        CHECK(ec3 == redcoord::error::decode_failed);
        CHECK_FALSE(p);
    });
}

TEST_CASE("cache: clear deletes this prefix's cache entries and nothing else", "[cache]") {
    with_connection([](redcoord::connection& conn, auto& srv) -> asio::awaitable<void> {
        // A prefix with glob characters: it must match only itself.
        session s(conn, {.prefix = "app[1]:"});
        cache c(s, {.scan_batch = 7});
        for (int i = 0; i < 40; ++i) {
            auto [ec] = co_await c.async_set("item:" + std::to_string(i), i, std::nullopt,
                                             nothrow);
            REQUIRE_FALSE(ec);
        }
        // What must survive: another prefix's cache (one the unescaped glob would match), a
        // non-cache key of this prefix, and a key that only looks similar.
        co_await command(conn, "SET", "app1:cache:{item:1}", "1");
        co_await command(conn, "SET", "other:cache:{item:1}", "1");
        co_await command(conn, "SET", "app[1]:state:{x}", "1");
        co_await command(conn, "SET", "app[1]:cachex", "1");

        diagnostics diag;
        auto [ec, n] = co_await c.async_clear(diag, nothrow);
        require_ok(ec, diag);
        CHECK(n == 40);
        auto [ec2, left] = co_await c.async_keys("*", nothrow);
        REQUIRE_FALSE(ec2);
        CHECK(left.empty());
        CHECK(key_count(srv) == 4);
        const std::vector<std::string> survivors{"app1:cache:{item:1}", "other:cache:{item:1}",
                                                 "app[1]:state:{x}", "app[1]:cachex"};
        for (const auto& k : survivors) {
            const auto e = co_await command(conn, "EXISTS", k);
            CHECK(e == "1");
        }
        auto [ec3, n2] = co_await c.async_clear(nothrow);
        REQUIRE_FALSE(ec3);
        CHECK(n2 == 0);
    });
}

TEST_CASE("cache: keys applies the pattern after the prefix and returns the caller's keys",
          "[cache]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        cache c(s, {.scan_batch = 2});
        const std::vector<std::string> names{"user:1", "user:2", "user:10", "order:1"};
        for (const auto& k : names) {
            auto [ec] = co_await c.async_set(k, k, std::nullopt, nothrow);
            REQUIRE_FALSE(ec);
        }
        co_await command(conn, "SET", "redcoord:state:{user:3}", "1");
        co_await command(conn, "SET", "user:4", "1");

        auto [ec, users] = co_await c.async_keys("user:*", nothrow);
        REQUIRE_FALSE(ec);
        const std::vector<std::string> want_users{"user:1", "user:10", "user:2"};
        CHECK(users == want_users);
        auto [ec2, all] = co_await c.async_keys("", nothrow);
        REQUIRE_FALSE(ec2);
        const std::vector<std::string> want_all{"order:1", "user:1", "user:10", "user:2"};
        CHECK(all == want_all);
        auto [ec3, one] = co_await c.async_keys("user:?", nothrow);
        REQUIRE_FALSE(ec3);
        const std::vector<std::string> want_one{"user:1", "user:2"};
        CHECK(one == want_one);
        auto [ec4, none] = co_await c.async_keys("nothing:*", nothrow);
        REQUIRE_FALSE(ec4);
        CHECK(none.empty());
    });
}

TEST_CASE("cache: get_or_set stores the factory's value once and then reads it", "[cache]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        cache c(s);
        int calls = 0;
        auto factory = [&]() -> asio::awaitable<profile> {
            ++calls;
            co_return make_profile("bob", 40);
        };
        const std::optional<std::chrono::milliseconds> ttl = 30s;
        auto [ep, p] = co_await c.async_get_or_set<profile>("user:bob", factory, ttl, nothrow);
        REQUIRE_FALSE(ep);
        CHECK(p == make_profile("bob", 40));
        auto [ep2, p2] = co_await c.async_get_or_set("user:bob", factory, ttl, nothrow);
        REQUIRE_FALSE(ep2);
        CHECK(p2 == make_profile("bob", 40));
        CHECK(calls == 1);
        const auto pttl = std::stoll(co_await command(conn, "PTTL", "redcoord:cache:{user:bob}"));
        CHECK(pttl > 0);
        CHECK(pttl <= 30000);
        // The fill lease is gone once the value is stored.
        const auto lease = co_await command(conn, "EXISTS", "redcoord:cache:{user:bob}:fill");
        CHECK(lease == "0");
        // Throwing form.
        profile p3 = co_await c.async_get_or_set("user:bob", factory, ttl, asio::use_awaitable);
        CHECK(p3.name == "bob");
    });
}

TEST_CASE("cache: 50 concurrent misses call the factory once, and the others wait by push",
          "[cache]") {
    with_connection([](redcoord::connection& conn, auto& srv) -> asio::awaitable<void> {
        session s(conn);
        cache c(s);
        constexpr int callers = 50;
        int calls = 0, ok = 0;
        const auto gets_before = command_calls(srv, "get");
        const bool finished =
            co_await run_concurrently(callers, [&](int) -> asio::awaitable<void> {
                auto factory = [&]() -> asio::awaitable<std::string> {
                    ++calls;
                    co_await sleep_for(200ms);  // long enough for the others to queue up
                    co_return std::string("expensive");
                };
                const std::optional<std::chrono::milliseconds> ttl = 60s;
                auto [ep, v] = co_await c.async_get_or_set("report", factory, ttl, nothrow);
                if (!ep && v == "expensive") ++ok;
            });
        REQUIRE(finished);
        CHECK(calls == 1);
        CHECK(ok == callers);
        // Waiting is by push: each caller reads the key a few times at most, however long the
        // factory takes (no polling loop).
        const auto gets = command_calls(srv, "get") - gets_before;
        CHECK(gets <= 4u * callers);
    });
}

TEST_CASE("cache: concurrent misses on two connections call the factory once", "[cache]") {
    redcoord::test::redis_server srv;
    redcoord::test::run_async([&](asio::io_context& ioc) -> asio::awaitable<void> {
        side_connection a(ioc.get_executor(), srv), b(ioc.get_executor(), srv);
        session sa(a.conn, {.node_id = "node-a"}), sb(b.conn, {.node_id = "node-b"});
        cache ca(sa), cb(sb);
        constexpr int per_node = 25;
        int calls = 0, ok = 0;
        const bool finished =
            co_await run_concurrently(2 * per_node, [&](int i) -> asio::awaitable<void> {
                cache* c = i % 2 ? &cb : &ca;
                auto factory = [&]() -> asio::awaitable<std::vector<int>> {
                    ++calls;
                    co_await sleep_for(100ms);
                    co_return std::vector<int>{1, 2, 3};
                };
                const std::optional<std::chrono::milliseconds> ttl = 60s;
                auto [ep, v] = co_await c->async_get_or_set_array("numbers", factory, ttl,
                                                                  nothrow);
                if (!ep && v == std::vector<int>{1, 2, 3}) ++ok;
            });
        REQUIRE(finished);
        CHECK(calls == 1);
        CHECK(ok == 2 * per_node);
    });
}

TEST_CASE("cache: the array form stores a JSON array of user structs", "[cache]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        cache c(s);
        int calls = 0;
        auto factory = [&]() -> asio::awaitable<std::vector<profile>> {
            ++calls;
            std::vector<profile> out;
            out.push_back(make_profile("a", 1));
            out.push_back(make_profile("b", 2));
            co_return out;
        };
        const std::optional<std::chrono::milliseconds> ttl = 5min;
        auto [ep, items] =
            co_await c.async_get_or_set_array<profile>("popular-items", factory, ttl, nothrow);
        REQUIRE_FALSE(ep);
        REQUIRE(items.size() == 2);
        CHECK(items[1] == make_profile("b", 2));
        const auto text = co_await command(conn, "GET", "redcoord:cache:{popular-items}");
        CHECK(json::parse(text).is_array());
        auto [ep2, again] =
            co_await c.async_get_or_set_array<profile>("popular-items", factory, ttl, nothrow);
        REQUIRE_FALSE(ep2);
        CHECK(again == items);
        CHECK(calls == 1);
    });
}

TEST_CASE("cache: when the filler's factory throws, a waiter takes over", "[cache]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        cache c(s);
        constexpr int callers = 20;
        int calls = 0, ok = 0, failed = 0;
        std::string failure;
        const bool finished =
            co_await run_concurrently(callers, [&](int) -> asio::awaitable<void> {
                auto factory = [&]() -> asio::awaitable<int> {
                    const int me = ++calls;
                    co_await sleep_for(100ms);
                    if (me == 1) throw std::runtime_error("backend down");
                    co_return 7;
                };
                auto [ep, v] = co_await c.async_get_or_set<int>("flaky", factory,
                                                                std::nullopt, nothrow);
                if (ep) {
                    ++failed;
                    failure = message_of(ep);
                } else if (v == 7) {
                    ++ok;
                }
            });
        REQUIRE(finished);
        CHECK(calls == 2);
        CHECK(failed == 1);
        CHECK(failure == "backend down");
        CHECK(ok == callers - 1);
    });
}

TEST_CASE("cache: a waiting get_or_set can be cancelled", "[cache]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        cache c(s);
        bool release = false, filler_done = false;
        auto ex = co_await asio::this_coro::executor;
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
                auto factory = [&]() -> asio::awaitable<int> {
                    co_await wait_for([&] { return release; });
                    co_return 1;
                };
                co_await c.async_get_or_set<int>("slow", factory, std::nullopt, nothrow);
                filler_done = true;
            },
            asio::detached);
        // The filler holds its lease before the waiter comes.
        bool has_lease = false;
        for (int i = 0; i < 1000 && !has_lease; ++i) {
            const auto e = co_await command(conn, "EXISTS", "redcoord:cache:{slow}:fill");
            has_lease = e == "1";
            if (!has_lease) co_await sleep_for(2ms);
        }
        REQUIRE(has_lease);

        asio::cancellation_signal cancel;
        bool waiter_done = false;
        std::exception_ptr waiter_ep;
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
                auto factory = []() -> asio::awaitable<int> { co_return 2; };
                auto [ep, v] = co_await c.async_get_or_set<int>(
                    "slow", factory, std::nullopt,
                    asio::bind_cancellation_slot(cancel.slot(), nothrow));
                waiter_ep = ep;
                waiter_done = true;
            },
            asio::detached);
        co_await sleep_for(20ms);
        cancel.emit(asio::cancellation_type::terminal);
        const bool cancelled = co_await wait_for([&] { return waiter_done; });
        REQUIRE(cancelled);
        CHECK(code_of(waiter_ep) == asio::error::operation_aborted);
        release = true;
        const bool filled = co_await wait_for([&] { return filler_done; });
        CHECK(filled);
    });
}

TEST_CASE("cache: bad input is invalid_argument naming the field", "[cache]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        cache c(s, {.max_value_bytes = 100});
        diagnostics diag;
        auto [ec] = co_await c.async_set("", 1, std::nullopt, diag, nothrow);
        CHECK(ec == redcoord::error::invalid_argument);
        CHECK(diag.message().find("cache key") != std::string::npos);

        const std::optional<std::chrono::milliseconds> negative = -5ms;
        auto [ec2] = co_await c.async_set("k", 1, negative, diag, nothrow);
        CHECK(ec2 == redcoord::error::invalid_argument);
        CHECK(diag.message().find("ttl -5 ms") != std::string::npos);

        const std::string big(200, 'x');
        auto [ec3] = co_await c.async_set("k", big, std::nullopt, diag, nothrow);
        CHECK(ec3 == redcoord::error::invalid_argument);
        CHECK(diag.message().find("max_value_bytes") != std::string::npos);
        const auto exists = co_await command(conn, "EXISTS", "redcoord:cache:{k}");
        CHECK(exists == "0");

        auto [ec4, v] = co_await c.async_get<int>("", diag, nothrow);
        CHECK(ec4 == redcoord::error::invalid_argument);
        auto [ec5, d] = co_await c.async_del("", diag, nothrow);
        CHECK(ec5 == redcoord::error::invalid_argument);

        int calls = 0;
        auto factory = [&]() -> asio::awaitable<std::string> {
            ++calls;
            co_return std::string(300, 'y');
        };
        auto [ep, s1] = co_await c.async_get_or_set("", factory, std::nullopt, nothrow);
        CHECK(code_of(ep) == redcoord::error::invalid_argument);
        CHECK(message_of(ep).find("cache key") != std::string::npos);
        auto [ep2, s2] = co_await c.async_get_or_set("k", factory, negative, nothrow);
        CHECK(code_of(ep2) == redcoord::error::invalid_argument);
        CHECK(message_of(ep2).find("ttl") != std::string::npos);
        // A factory's value over the limit is not stored, and the lease is given back.
        auto [ep3, s3] = co_await c.async_get_or_set("k", factory, std::nullopt, nothrow);
        CHECK(code_of(ep3) == redcoord::error::invalid_argument);
        CHECK(message_of(ep3).find("max_value_bytes") != std::string::npos);
        CHECK(calls == 1);
        const auto lease = co_await command(conn, "EXISTS", "redcoord:cache:{k}:fill");
        CHECK(lease == "0");

        CHECK_THROWS_AS(cache(s, {.max_value_bytes = 0}), redcoord::error_with_diagnostics);
        CHECK_THROWS_AS(cache(s, {.fill_lease_ttl = 0ms}), redcoord::error_with_diagnostics);
        CHECK_THROWS_AS(cache(s, {.scan_batch = 0}), redcoord::error_with_diagnostics);
    });
}

}  // namespace
