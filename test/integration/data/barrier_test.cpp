// Barriers and job dependencies against a real redis-server: arrivals from several sessions on
// separate connections and from separate processes release the waiters by push, the counter's
// key and TTL, deadlines, dependencies across processes, failed dependencies named in the
// error, and bad input.
//
// Worker processes (test/support/cluster_worker.cpp) are started with fork/exec, tied to this
// process and ended by their PID only.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "async_test.hpp"
#include "cluster_process.hpp"
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
using redcoord::test::cluster_process;
using redcoord::test::command;
using redcoord::test::nothrow;
using redcoord::test::port_of;
using redcoord::test::redis_server;
using redcoord::test::require_ok;
using redcoord::test::run_async;
using redcoord::test::session_group;
using redcoord::test::side_connection;
using redcoord::test::sleep_for;
using redcoord::test::wait_until;
using redcoord::test::with_connection;

// A cluster_worker that must print want (20 s at most for each line), then exit 0.
asio::awaitable<void> expect_lines(cluster_process& p, std::vector<std::string> want) {
    for (const auto& line : want) {
        auto got = co_await p.line_starting_with(line, 20s);
        INFO(p.transcript());
        REQUIRE(got);
        CHECK(*got == line);
    }
    auto code = co_await p.wait_exit(20s);
    INFO(p.transcript());
    REQUIRE(code);
    CHECK(*code == 0);
}

}  // namespace

TEST_CASE("barrier: arrivals from sessions on separate connections release the waiter",
          "[barrier]") {
    redcoord::test::redis_server srv;
    redcoord::test::run_async([&](asio::io_context& ioc) -> asio::awaitable<void> {
        constexpr int workers = 4;
        constexpr int per_worker = 5;
        session_group<barrier> group(ioc.get_executor(), srv, workers + 1, "node-");
        auto& barriers = group.parts;
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
        redcoord::diagnostics diag;
        auto [ec, n] = co_await barriers[0]->async_wait("batch-1", workers * per_worker, 20s,
                                                        diag, nothrow);
        require_ok(ec, diag);
        CHECK(n >= workers * per_worker);
        CHECK(arrived >= workers * per_worker - workers);  // the last replies may be in flight
        CHECK(std::chrono::steady_clock::now() - start < 10s);

        // The counter is the documented key with its TTL (24 h by default).
        const auto count =
            co_await command(group.conns[0]->conn, "GET", "redcoord:barrier:{batch-1}");
        CHECK(count == std::to_string(workers * per_worker));
        const auto pttl = std::stoll(
            co_await command(group.conns[0]->conn, "PTTL", "redcoord:barrier:{batch-1}"));
        CHECK(pttl > 24LL * 3600 * 1000 - 60000);
        CHECK(pttl <= 24LL * 3600 * 1000);

        // Already reached: completes at once.
        auto [ec2, n2] = co_await barriers[1]->async_wait("batch-1", 3, 5s, nothrow);
        CHECK_FALSE(ec2);
        CHECK(n2 == workers * per_worker);
    });
}

TEST_CASE("barrier: times out at its deadline, custom TTL and bad input", "[barrier]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        barrier_options o;
        o.ttl = 10s;
        barrier b(s, o);
        auto [ec1, n1] = co_await b.async_arrive("small", nothrow);
        CHECK_FALSE(ec1);
        CHECK(n1 == 1);
        const auto pttl = std::stoll(co_await command(conn, "PTTL", "redcoord:barrier:{small}"));
        CHECK(pttl > 0);
        CHECK(pttl <= 10000);

        const auto start = std::chrono::steady_clock::now();
        redcoord::diagnostics diag;
        auto [ec2, n2] = co_await b.async_wait("small", 2, 300ms, diag, nothrow);
        const auto took = std::chrono::steady_clock::now() - start;
        CHECK(ec2 == redcoord::error::timeout);
        CHECK(diag.message().find("1 of 2") != std::string::npos);
        CHECK(took >= 290ms);
        CHECK(took < 3s);

        auto [ec3, n3] = co_await b.async_arrive("", diag, nothrow);
        CHECK(ec3 == redcoord::error::invalid_argument);
        CHECK(diag.message().find("barrier batch") != std::string::npos);
        auto [ec4, n4] = co_await b.async_wait("small", 0, 1s, diag, nothrow);
        CHECK(ec4 == redcoord::error::invalid_argument);
        CHECK(diag.message().find("total 0 is below 1") != std::string::npos);
        auto [ec5, n5] = co_await b.async_wait("", 1, 1s, nothrow);
        CHECK(ec5 == redcoord::error::invalid_argument);
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
        redcoord::diagnostics diag;
        auto [ec] = co_await da.async_wait_dependencies("load", deps, 20s, diag, nothrow);
        const auto took = std::chrono::steady_clock::now() - start;
        require_ok(ec, diag);
        CHECK(took >= 350ms);
        CHECK(took < 10s);

        const auto status = co_await command(a.conn, "HGET", "redcoord:job:{extract}", "status");
        CHECK(status == "succeeded");
        const auto pttl = std::stoll(co_await command(a.conn, "PTTL", "redcoord:job:{extract}"));
        CHECK(pttl > 0);
        CHECK(pttl <= 24LL * 3600 * 1000);

        // No dependencies: at once.
        const std::vector<std::string> none;
        auto [ec0] = co_await da.async_wait_dependencies("free", none, 1s, nothrow);
        CHECK_FALSE(ec0);
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
        auto [ec1] = co_await db.async_complete("step-1", true, "", nothrow);
        REQUIRE_FALSE(ec1);
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
                co_await sleep_for(200ms);
                co_await db.async_complete("step-2", false, "disk full", asio::use_awaitable);
            },
            asio::detached);
        const std::vector<std::string> deps{"step-1", "step-2", "step-3"};
        const auto start = std::chrono::steady_clock::now();
        redcoord::diagnostics diag;
        auto [ec] = co_await da.async_wait_dependencies("report", deps, 20s, diag, nothrow);
        const auto took = std::chrono::steady_clock::now() - start;
        CHECK(ec == redcoord::error::dependency_failed);
        const std::string msg = diag.message();
        CHECK(msg.find("report") != std::string::npos);
        CHECK(msg.find("step-2") != std::string::npos);
        CHECK(msg.find("disk full") != std::string::npos);
        CHECK(took < 10s);  // as soon as step-2 failed, without waiting for step-3

        // Deadline: names the missing dependency.
        const std::vector<std::string> later{"step-1", "step-9"};
        auto [ec2] = co_await da.async_wait_dependencies("report-2", later, 300ms, diag, nothrow);
        CHECK(ec2 == redcoord::error::timeout);
        CHECK(diag.message().find("step-9") != std::string::npos);

        // Bad input.
        const std::vector<std::string> empty_dep{"step-1", ""};
        auto [ec3] = co_await da.async_wait_dependencies("x", empty_dep, 1s, diag, nothrow);
        CHECK(ec3 == redcoord::error::invalid_argument);
        CHECK(diag.message().find("dependency of job 'x'") != std::string::npos);
        auto [ec4] = co_await da.async_complete("", true, "", diag, nothrow);
        CHECK(ec4 == redcoord::error::invalid_argument);
        CHECK(diag.message().find("job id") != std::string::npos);
        const std::vector<std::string> one{"step-1"};
        auto [ec5] = co_await da.async_wait_dependencies("", one, 1s, nothrow);
        CHECK(ec5 == redcoord::error::invalid_argument);
        CHECK(redcoord::error_category().message(static_cast<int>(
                  redcoord::error::dependency_failed)) != "unknown redcoord error");
    });
}

TEST_CASE("barrier: separate processes arrive and are all released", "[barrier][process]") {
    redis_server srv;
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            constexpr int processes = 5;
            side_connection c(ioc.get_executor(), srv);
            session s(c.conn, {.node_id = "observer"});
            barrier b(s);
            auto ex = co_await asio::this_coro::executor;

            // A waiter in this process too, released by the same arrivals.
            bool observed = false;
            error_code observer_error;
            std::int64_t observer_count = 0;
            asio::co_spawn(
                ex,
                [&]() -> asio::awaitable<void> {
                    auto [ec, n] = co_await b.async_wait("batch-p", processes, 60s, nothrow);
                    observer_error = ec;
                    observer_count = n;
                    observed = true;
                },
                asio::detached);

            // All but the last arrive, one after the other, and wait.
            std::vector<std::unique_ptr<cluster_process>> procs;
            for (int i = 0; i < processes - 1; ++i) {
                std::vector<std::string> args{port_of(srv), "barrier", "proc-" + std::to_string(i),
                                              "batch-p", std::to_string(processes)};
                procs.push_back(std::make_unique<cluster_process>(args));
                auto arrived = co_await procs.back()->line_starting_with("arrived ", 20s);
                INFO(procs.back()->transcript());
                REQUIRE(arrived);
                CHECK(*arrived == "arrived " + std::to_string(i + 1));
            }
            const auto count = co_await command(c.conn, "GET", "redcoord:barrier:{batch-p}");
            CHECK(count == std::to_string(processes - 1));
            for (auto& p : procs) {
                auto early = co_await p->next_line(0ms);  // nobody is released before the last
                INFO(p->transcript());
                CHECK_FALSE(early);
            }
            CHECK_FALSE(observed);

            // The last arrival releases every waiter, in every process.
            std::vector<std::string> last_args{port_of(srv), "barrier", "proc-last", "batch-p",
                                               std::to_string(processes)};
            procs.push_back(std::make_unique<cluster_process>(last_args));
            const std::string released = "released " + std::to_string(processes);
            std::vector<std::string> last_lines{"arrived " + std::to_string(processes), released};
            co_await expect_lines(*procs.back(), last_lines);
            for (int i = 0; i < processes - 1; ++i) {
                std::vector<std::string> want{released};
                co_await expect_lines(*procs[i], want);
            }
            co_await wait_until([&] { return observed; });
            INFO(observer_error.message());
            CHECK_FALSE(observer_error);
            CHECK(observer_count == processes);
        },
        120s);
}

TEST_CASE("dependencies: jobs in separate processes wait for their dependencies",
          "[barrier][process]") {
    redis_server srv;
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            side_connection c(ioc.get_executor(), srv);
            const std::string port = port_of(srv);
            auto start = [&](std::string job, std::string outcome,
                             std::vector<std::string> deps) {
                std::vector<std::string> args{port, "job", "node-" + job, job, outcome};
                args.insert(args.end(), deps.begin(), deps.end());
                return std::make_unique<cluster_process>(args);
            };
            // The dependents first: extract -> transform -> load, and broken -> audit.
            auto load = start("load", "ok", {"extract", "transform"});
            auto transform = start("transform", "ok", {"extract"});
            auto audit = start("audit", "ok", {"broken"});
            for (auto* p : {load.get(), transform.get(), audit.get()}) {
                auto started = co_await p->line_starting_with("started", 20s);
                INFO(p->transcript());
                REQUIRE(started);
            }
            for (const char* job : {"load", "transform", "audit"}) {
                const auto done =
                    co_await command(c.conn, "EXISTS", std::string("redcoord:job:{") + job + "}");
                INFO(job);
                CHECK(done == "0");  // nothing runs before its dependencies
            }

            auto extract = start("extract", "ok", {});
            auto broken = start("broken", "fail", {});
            std::vector<std::string> ran{"runnable", "completed"};
            for (auto* p : {extract.get(), transform.get(), load.get(), broken.get()})
                co_await expect_lines(*p, ran);
            {
                auto blocked = co_await audit->line_starting_with("blocked ", 20s);
                auto code = co_await audit->wait_exit(20s);
                INFO(audit->transcript());
                REQUIRE(blocked);
                CHECK(blocked->find("audit") != std::string::npos);
                CHECK(blocked->find("broken failed on purpose") != std::string::npos);
                REQUIRE(code);
                CHECK(*code == 0);
            }

            // The records: statuses, and each job completed no earlier than what it waited for.
            std::map<std::string, long long> completed;
            for (const char* job : {"extract", "transform", "load", "broken", "audit"}) {
                const std::string key = std::string("redcoord:job:{") + job + "}";
                const auto status = co_await command(c.conn, "HGET", key, "status");
                const auto at = co_await command(c.conn, "HGET", key, "completed_ms");
                INFO(job);
                const bool should_fail =
                    std::string_view(job) == "broken" || std::string_view(job) == "audit";
                CHECK(status == (should_fail ? "failed" : "succeeded"));
                completed[job] = std::stoll(at);
            }
            CHECK(completed["extract"] <= completed["transform"]);
            CHECK(completed["transform"] <= completed["load"]);
            const auto reason = co_await command(c.conn, "HGET", "redcoord:job:{audit}", "reason");
            CHECK(reason == "dependency failed");
        },
        120s);
}
