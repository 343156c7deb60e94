// Several sessions on one connection, each its own prefix and node id: their keys, locks and
// events stay apart, every one of them is woken by pub/sub, and a channel two of them listen
// to is one Redis subscription of the connection.
#include <redcoord/redcoord.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "async_test.hpp"
#include "connection_helpers.hpp"
#include "lease_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::event;
using redcoord::event_bus;
using redcoord::lock_provider;
using redcoord::session;
using redcoord::test::command;
using redcoord::test::eventually;
using redcoord::test::must_acquire;
using redcoord::test::must_release;
using redcoord::test::nothrow;
using redcoord::test::quiet_config;
using redcoord::test::redis_server;

redcoord::session_options tenant(std::string prefix, std::string node) {
    redcoord::session_options so;
    so.prefix = std::move(prefix);
    so.node_id = std::move(node);
    return so;
}

// Runs body(shared, other): two connections to one server, the first to carry the tenants.
template <class Body>
void with_two_connections(Body body) {
    redis_server srv;
    redcoord::test::run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            redcoord::connection shared(ioc.get_executor()), other(ioc.get_executor());
            shared.async_run(quiet_config(srv), asio::detached);
            other.async_run(quiet_config(srv), asio::detached);
            co_await body(shared, other);
            shared.cancel();
            other.cancel();
        },
        60s);
}

// A waiter on `waiter_locks` for a lock `holder_locks` holds (same prefix, another
// connection): acquired when the holder releases, well before the holder's TTL would end the
// wait. Only the release's PUBLISH, heard on the waiter's connection, can wake it in time.
asio::awaitable<void> woken_by_release(lock_provider& holder_locks, lock_provider& waiter_locks,
                                       std::string name) {
    redcoord::acquire_options hold;
    hold.ttl = 60s;  // renewed by the watchdog: a waiter not woken would wait a minute
    auto held = co_await must_acquire(holder_locks, name, hold);
    redcoord::acquire_options wait;
    wait.ttl = 5s;
    wait.wait = 20s;
    std::optional<error_code> got;
    redcoord::lease acquired;
    redcoord::diagnostics diag;
    waiter_locks.async_acquire(name, wait, diag, [&](error_code ec, redcoord::lease l) {
        got = ec;
        acquired = std::move(l);
    });
    co_await redcoord::test::sleep_for(200ms);
    CHECK_FALSE(got.has_value());  // still held
    co_await must_release(held);
    co_await eventually([&] { return got.has_value(); }, 30s, "the waiter answered");
    INFO(name << ": " << got->message() << " " << diag.message());
    CHECK_FALSE(*got);
    CHECK(acquired.is_held());
    co_await must_release(acquired);
}

}  // namespace

TEST_CASE("tenants: two sessions on one connection keep keys apart and are both woken",
          "[integration][tenants]") {
    with_two_connections([](redcoord::connection& shared,
                            redcoord::connection& other) -> asio::awaitable<void> {
        session a(shared, tenant("a:", "node-a"));
        session b(shared, tenant("b:", "node-b"));
        lock_provider a_locks(a), b_locks(b);

        // The same lock name in both tenants: two keys, both held at once.
        redcoord::acquire_options opts;
        opts.ttl = 10s;
        auto la = co_await must_acquire(a_locks, "orders", opts);
        auto lb = co_await must_acquire(b_locks, "orders", opts);
        CHECK(la.key() == "a:lock:{orders}");
        CHECK(lb.key() == "b:lock:{orders}");
        {
            const auto exists = co_await command(shared, "EXISTS", "a:lock:{orders}",
                                                 "b:lock:{orders}");
            CHECK(exists == "2");
        }
        co_await must_release(la);
        co_await must_release(lb);

        // Waiters in each tenant are woken by releases made elsewhere.
        session a_elsewhere(other, tenant("a:", "node-a2"));
        session b_elsewhere(other, tenant("b:", "node-b2"));
        lock_provider a2_locks(a_elsewhere), b2_locks(b_elsewhere);
        co_await woken_by_release(a2_locks, a_locks, "job");
        co_await woken_by_release(b2_locks, b_locks, "job");
    });
}

TEST_CASE("tenants: events reach the tenant they were published to, and only it",
          "[integration][tenants]") {
    with_two_connections([](redcoord::connection& shared,
                            redcoord::connection& other) -> asio::awaitable<void> {
        session a(shared, tenant("a:", "node-a"));
        session b(shared, tenant("b:", "node-b"));
        event_bus a_bus(a), b_bus(b);
        std::vector<int> a_got, b_got;
        auto a_sub = a_bus.subscribe<int>("news", [&](error_code ec, const event<int>& ev) {
            if (!ec) a_got.push_back(ev.value);
        });
        auto b_sub = b_bus.subscribe<int>("news", [&](error_code ec, const event<int>& ev) {
            if (!ec) b_got.push_back(ev.value);
        });
        co_await command(shared, "PING");  // both SUBSCRIBEs confirmed

        session a_pub(other, tenant("a:", "pub-a"));
        session b_pub(other, tenant("b:", "pub-b"));
        event_bus a_out(a_pub), b_out(b_pub);
        co_await a_out.async_publish("news", 1, asio::use_awaitable);
        co_await b_out.async_publish("news", 2, asio::use_awaitable);
        co_await a_out.async_publish("news", 3, asio::use_awaitable);
        co_await eventually([&] { return a_got.size() == 2 && b_got.size() == 1; }, 10s,
                            "each tenant's events");
        CHECK(a_got == std::vector<int>{1, 3});
        CHECK(b_got == std::vector<int>{2});
    });
}

TEST_CASE("tenants: a channel two sessions listen to is one subscription of the connection",
          "[integration][tenants]") {
    with_two_connections([](redcoord::connection& shared,
                            redcoord::connection& other) -> asio::awaitable<void> {
        auto first = std::make_unique<session>(shared, tenant("c:", "one"));
        session second(shared, tenant("c:", "two"));
        event_bus first_bus(*first), second_bus(second);
        int first_got = 0, second_got = 0;
        auto s1 = first_bus.subscribe<int>("x", [&](error_code ec, const event<int>&) {
            if (!ec) ++first_got;
        });
        auto s2 = second_bus.subscribe<int>("x", [&](error_code ec, const event<int>&) {
            if (!ec) ++second_got;
        });
        co_await command(shared, "PING");
        {
            redcoord::request numsub;
            numsub.push("PUBSUB", "NUMSUB", "c:events:x");
            std::vector<std::string> reply;
            co_await shared.async_exec(numsub, reply, asio::use_awaitable);
            REQUIRE(reply.size() == 2);
            CHECK(reply[1] == "1");  // one Redis subscription for both
        }
        co_await command(other, "PUBLISH", "c:events:x", "1");
        co_await eventually([&] { return first_got == 1 && second_got == 1; }, 10s,
                            "both sessions heard it");

        // The first session closes: the second still hears the channel.
        s1.unsubscribe();
        first.reset();
        co_await command(shared, "PING");
        co_await command(other, "PUBLISH", "c:events:x", "2");
        co_await eventually([&] { return second_got == 2; }, 10s, "the second still hears");
        CHECK(first_got == 1);
    });
}
