// Barriers and job dependencies against a real redis-server: arrivals from several sessions on
// separate connections release a waiter by push, the counter's key and TTL, deadlines, failed
// dependencies named in the error, and bad input.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "async_test.hpp"
#include "connection_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::barrier;
using redcoord::barrier_options;
using redcoord::dependencies;
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

std::string message_of(std::exception_ptr ep) {
    if (!ep) return "(no exception)";
    try {
        std::rethrow_exception(ep);
    } catch (const std::exception& e) {
        return e.what();
    }
}

asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
    asio::steady_timer t(co_await asio::this_coro::executor);
    t.expires_after(d);
    co_await t.async_wait(asio::use_awaitable);
}

}  // namespace

TEST_CASE("barrier: arrivals from sessions on separate connections release the waiter",
          "[barrier]") {
    redcoord::test::redis_server srv;
    redcoord::test::run_async([&](asio::io_context& ioc) -> asio::awaitable<void> {
        constexpr int workers = 4;
        constexpr int per_worker = 5;
        std::vector<std::unique_ptr<side_connection>> conns;
        std::vector<std::unique_ptr<session>> sessions;
        std::vector<std::unique_ptr<barrier>> barriers;
        for (int i = 0; i <= workers; ++i) {
            conns.push_back(std::make_unique<side_connection>(ioc.get_executor(), srv));
            redcoord::session_options so;
            so.node_id = "node-" + std::to_string(i);
            sessions.push_back(std::make_unique<session>(conns.back()->conn, so));
            barriers.push_back(std::make_unique<barrier>(*sessions.back()));
        }
        auto ex = co_await asio::this_coro::executor;
        int arrived = 0;
        for (int i = 1; i <= workers; ++i) {
            asio::co_spawn(
                ex,
                [&, i]() -> asio::awaitable<void> {
                    for (int j = 0; j < per_worker; ++j) {
                        co_await sleep_for(std::chrono::milliseconds(20 + 10 * i));
                        co_await barriers[i]->async_arrive("batch-1", asio::use_awaitable);
                        ++arrived;
                    }
                },
                asio::detached);
        }
        const auto start = std::chrono::steady_clock::now();
        auto [ep, n] = co_await barriers[0]->async_wait("batch-1", workers * per_worker, 20s,
                                                        nothrow);
        INFO(message_of(ep));
        REQUIRE_FALSE(ep);
        CHECK(n >= workers * per_worker);
        CHECK(arrived >= workers * per_worker - workers);  // the last replies may be in flight
        CHECK(std::chrono::steady_clock::now() - start < 10s);

        // The counter is the documented key with its TTL (24 h by default).
        const auto count = co_await command(conns[0]->conn, "GET", "redcoord:barrier:batch-1");
        CHECK(count == std::to_string(workers * per_worker));
        const auto pttl =
            std::stoll(co_await command(conns[0]->conn, "PTTL", "redcoord:barrier:batch-1"));
        CHECK(pttl > 24LL * 3600 * 1000 - 60000);
        CHECK(pttl <= 24LL * 3600 * 1000);

        // Already reached: completes at once.
        auto [ep2, n2] = co_await barriers[1]->async_wait("batch-1", 3, 5s, nothrow);
        CHECK_FALSE(ep2);
        CHECK(n2 == workers * per_worker);
    });
}

TEST_CASE("barrier: times out at its deadline; custom TTL; bad input", "[barrier]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        barrier_options o;
        o.ttl = 10s;
        barrier b(s, o);
        auto [ep1, n1] = co_await b.async_arrive("small", nothrow);
        CHECK_FALSE(ep1);
        CHECK(n1 == 1);
        const auto pttl = std::stoll(co_await command(conn, "PTTL", "redcoord:barrier:small"));
        CHECK(pttl > 0);
        CHECK(pttl <= 10000);

        const auto start = std::chrono::steady_clock::now();
        auto [ep2, n2] = co_await b.async_wait("small", 2, 300ms, nothrow);
        const auto took = std::chrono::steady_clock::now() - start;
        CHECK(code_of(ep2) == redcoord::error::timeout);
        CHECK(message_of(ep2).find("1 of 2") != std::string::npos);
        CHECK(took >= 290ms);
        CHECK(took < 3s);

        auto [ep3, n3] = co_await b.async_arrive("", nothrow);
        CHECK(code_of(ep3) == redcoord::error::invalid_argument);
        auto [ep4, n4] = co_await b.async_wait("small", 0, 1s, nothrow);
        CHECK(code_of(ep4) == redcoord::error::invalid_argument);
        auto [ep5, n5] = co_await b.async_wait("", 1, 1s, nothrow);
        CHECK(code_of(ep5) == redcoord::error::invalid_argument);
        barrier_options bad;
        bad.ttl = 0ms;
        CHECK_THROWS_AS(barrier(s, bad), redcoord::error_with_diagnostics);
        CHECK_THROWS_AS(dependencies(s, bad), redcoord::error_with_diagnostics);
    });
}

TEST_CASE("dependencies: a job waits for its dependencies completed on other connections",
          "[barrier]") {
    redcoord::test::redis_server srv;
    redcoord::test::run_async([&](asio::io_context& ioc) -> asio::awaitable<void> {
        side_connection a(ioc.get_executor(), srv), b(ioc.get_executor(), srv),
            c(ioc.get_executor(), srv);
        session sa(a.conn, {.node_id = "node-a"}), sb(b.conn, {.node_id = "node-b"}),
            sc(c.conn, {.node_id = "node-c"});
        dependencies da(sa), db(sb), dc(sc);
        auto ex = co_await asio::this_coro::executor;

        bool extracted = false, transformed = false;
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
                co_await sleep_for(200ms);
                co_await db.async_complete("extract", true, "", asio::use_awaitable);
                extracted = true;
            },
            asio::detached);
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
                co_await sleep_for(400ms);
                co_await dc.async_complete("transform", true, "", asio::use_awaitable);
                transformed = true;
            },
            asio::detached);
        const std::vector<std::string> deps{"extract", "transform"};
        const auto start = std::chrono::steady_clock::now();
        auto [ep] = co_await da.async_wait_dependencies("load", deps, 20s, nothrow);
        const auto took = std::chrono::steady_clock::now() - start;
        INFO(message_of(ep));
        REQUIRE_FALSE(ep);
        CHECK(took >= 350ms);
        CHECK(took < 10s);

        const auto status = co_await command(a.conn, "HGET", "redcoord:job:extract", "status");
        CHECK(status == "succeeded");
        const auto pttl = std::stoll(co_await command(a.conn, "PTTL", "redcoord:job:extract"));
        CHECK(pttl > 0);
        CHECK(pttl <= 24LL * 3600 * 1000);

        // No dependencies: at once.
        const std::vector<std::string> none;
        auto [ep0] = co_await da.async_wait_dependencies("free", none, 1s, nothrow);
        CHECK_FALSE(ep0);
    });
}

TEST_CASE("dependencies: a failed dependency is dependency_failed naming the job",
          "[barrier]") {
    redcoord::test::redis_server srv;
    redcoord::test::run_async([&](asio::io_context& ioc) -> asio::awaitable<void> {
        side_connection a(ioc.get_executor(), srv), b(ioc.get_executor(), srv);
        session sa(a.conn, {.node_id = "node-a"}), sb(b.conn, {.node_id = "node-b"});
        dependencies da(sa), db(sb);
        auto ex = co_await asio::this_coro::executor;
        auto [ep1] = co_await db.async_complete("step-1", true, "", nothrow);
        REQUIRE_FALSE(ep1);
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
                co_await sleep_for(200ms);
                co_await db.async_complete("step-2", false, "disk full", asio::use_awaitable);
            },
            asio::detached);
        const std::vector<std::string> deps{"step-1", "step-2", "step-3"};
        const auto start = std::chrono::steady_clock::now();
        auto [ep] = co_await da.async_wait_dependencies("report", deps, 20s, nothrow);
        const auto took = std::chrono::steady_clock::now() - start;
        CHECK(code_of(ep) == redcoord::error::dependency_failed);
        const std::string msg = message_of(ep);
        CHECK(msg.find("report") != std::string::npos);
        CHECK(msg.find("step-2") != std::string::npos);
        CHECK(msg.find("disk full") != std::string::npos);
        CHECK(took < 10s);  // as soon as step-2 failed, without waiting for step-3

        // Deadline: names the missing dependency.
        const std::vector<std::string> later{"step-1", "step-9"};
        auto [ep2] = co_await da.async_wait_dependencies("report-2", later, 300ms, nothrow);
        CHECK(code_of(ep2) == redcoord::error::timeout);
        CHECK(message_of(ep2).find("step-9") != std::string::npos);

        // Bad input.
        const std::vector<std::string> empty_dep{"step-1", ""};
        auto [ep3] = co_await da.async_wait_dependencies("x", empty_dep, 1s, nothrow);
        CHECK(code_of(ep3) == redcoord::error::invalid_argument);
        auto [ep4] = co_await da.async_complete("", true, "", nothrow);
        CHECK(code_of(ep4) == redcoord::error::invalid_argument);
        const std::vector<std::string> one{"step-1"};
        auto [ep5] = co_await da.async_wait_dependencies("", one, 1s, nothrow);
        CHECK(code_of(ep5) == redcoord::error::invalid_argument);
        CHECK(redcoord::error_category().message(static_cast<int>(
                  redcoord::error::dependency_failed)) != "unknown redcoord error");
    });
}
