// A node of the job system in a process of its own, for the cross-process and fault tests of
// jobs (test/integration/jobs/jobs_process_test.cpp, through REDCOORD_JOB_WORKER).
//
//   job_worker <server> <node-id> <lease-ms> <concurrency> [cron <name> <expr> <misfire>]...
//
// It registers the test functions below, adds the recurring jobs given, runs the scheduler and
// prints "ready", then one line per event: "start <id> <attempt> <fence>" when a job starts,
// "done <id>" when one returns, "stopped <id>" when one is told to stop. Every function records
// what it did in Redis, under `test:` keys, for the test to check:
// - record: RPUSH test:runs "<id> <node> <attempt>";
// - sleep: sleeps <payload> ms (cancellable), recording like record at its start;
// - limited: INCR test:active, RPUSH the value to test:seen, sleeps <payload> ms, DECR;
// - rated: RPUSH test:starts the server's TIME in ms;
// - flaky: fails until its attempt reaches <payload>, then succeeds.
#include <redcoord/jobs.hpp>

#include <boost/asio/detached.hpp>

#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "worker_support.hpp"

namespace asio = boost::asio;
using namespace redcoord::test::worker;
using std::chrono::milliseconds;

namespace {

asio::awaitable<std::string> run(redcoord::connection& conn, redcoord::request req) {
    std::string reply;
    redcoord::diagnostics diag;
    auto [ec, n] = co_await conn.async_exec(req, reply, diag, nothrow);
    if (ec) throw std::runtime_error("command failed: " + describe(ec, diag));
    co_return reply;
}

asio::awaitable<void> record(redcoord::connection& conn, redcoord::job_context& ctx,
                             const std::string& node) {
    say("start " + ctx.id() + " " + std::to_string(ctx.attempt()) + " " +
        std::to_string(ctx.fencing_token()));
    redcoord::request req;
    req.push("RPUSH", "test:runs", ctx.id() + " " + node + " " + std::to_string(ctx.attempt()));
    co_await run(conn, std::move(req));
}

asio::awaitable<void> nap(milliseconds d, redcoord::job_context& ctx) {
    asio::steady_timer t(co_await asio::this_coro::executor);
    t.expires_after(d);
    auto [ec] = co_await t.async_wait(nothrow);
    if (ec) {
        say("stopped " + ctx.id());
        throw boost::system::system_error(ec);
    }
}

int usage() {
    std::cerr << "usage: job_worker <server> <node> <lease-ms> <concurrency> "
                 "[cron <name> <expr> <misfire>]...\n";
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    limit_lifetime();
    if (argc < 5) return usage();
    const std::string server = argv[1];
    const std::string node = argv[2];
    const milliseconds lease(std::atoll(argv[3]));
    const std::size_t concurrency = static_cast<std::size_t>(std::atoll(argv[4]));
    std::vector<redcoord::recurring_job> crons;
    for (int i = 5; i < argc; i += 4) {
        if (std::string(argv[i]) != "cron" || i + 3 >= argc) return usage();
        redcoord::recurring_job r;
        r.name = argv[i + 1];
        r.cron = argv[i + 2];
        r.function = "record";
        const std::string m = argv[i + 3];
        r.misfire = m == "each"   ? redcoord::misfire_policy::run_each
                    : m == "once" ? redcoord::misfire_policy::run_once
                                  : redcoord::misfire_policy::skip;
        crons.push_back(r);
    }

    asio::io_context ioc;
    redcoord::connection conn(ioc.get_executor());
    conn.async_run(config_for(server), asio::detached);
    redcoord::session s(conn, {.node_id = node});
    redcoord::scheduler_options so;
    so.lease = lease;
    so.concurrency = concurrency;
    so.poll_interval = milliseconds(200);
    redcoord::scheduler sched(s, so);

    redcoord::job_options once;
    once.retry.max_attempts = 1;
    redcoord::job_options retried;
    retried.retry.max_attempts = 5;
    retried.retry.delay = milliseconds(50);
    sched.add_function(
        "record",
        [&](redcoord::job_context& ctx) -> asio::awaitable<void> {
            co_await record(conn, ctx, node);
            say("done " + ctx.id());
        },
        once);
    sched.add_function(
        "sleep",
        [&](redcoord::job_context& ctx) -> asio::awaitable<void> {
            co_await record(conn, ctx, node);
            co_await nap(milliseconds(std::atoll(ctx.payload().c_str())), ctx);
            say("done " + ctx.id());
        },
        retried);
    sched.add_function("limited", [&](redcoord::job_context& ctx) -> asio::awaitable<void> {
        say("start " + ctx.id() + " " + std::to_string(ctx.attempt()) + " " +
            std::to_string(ctx.fencing_token()));
        redcoord::request inc;
        inc.push("INCR", "test:active");
        const auto active = co_await run(conn, std::move(inc));
        redcoord::request seen;
        seen.push("RPUSH", "test:seen", active);
        co_await run(conn, std::move(seen));
        co_await nap(milliseconds(std::atoll(ctx.payload().c_str())), ctx);
        redcoord::request dec;
        dec.push("DECR", "test:active");
        co_await run(conn, std::move(dec));
        say("done " + ctx.id());
    });
    sched.add_function("rated", [&](redcoord::job_context& ctx) -> asio::awaitable<void> {
        redcoord::request req;
        req.push("EVAL",
                 "local t = redis.call('TIME') "
                 "return redis.call('RPUSH', KEYS[1], t[1] * 1000 + math.floor(t[2] / 1000))",
                 1, "test:starts");
        redcoord::diagnostics diag;
        std::int64_t n = 0;
        auto [ec, sz] = co_await conn.async_exec(req, n, diag, nothrow);
        if (ec) throw std::runtime_error("rated: " + describe(ec, diag));
        say("done " + ctx.id());
    });
    sched.add_function(
        "flaky",
        [&](redcoord::job_context& ctx) -> asio::awaitable<void> {
            co_await record(conn, ctx, node);
            if (ctx.attempt() < static_cast<std::uint32_t>(std::atoi(ctx.payload().c_str())))
                throw std::runtime_error("flaky attempt " + std::to_string(ctx.attempt()));
            say("done " + ctx.id());
        },
        retried);
    for (auto& r : crons) sched.add_recurring(r);

    return run_to_exit(ioc, conn, [&]() -> asio::awaitable<int> {
        if (!co_await ping(conn)) co_return 1;
        asio::co_spawn(co_await asio::this_coro::executor, sched.async_run(asio::use_awaitable),
                       asio::detached);
        say("ready");
        // Runs until the test kills it (limit_lifetime ends it after two minutes at most).
        for (;;) co_await sleep_for(milliseconds(1000));
        co_return 0;
    }());
}
