// The job system against a real redis-server, in one process: a job's life and record, typed
// results, retries and their backoff in the history, time tickers, priorities, timeouts,
// idempotency keys, cancellation, dependencies under each failure policy, batches with a
// continuation, listing by state and function, recurring jobs and bad input. The tests across
// processes (exactly once, leases, limits, kills) are in jobs_process_test.cpp.
#include <redcoord/redcoord.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "async_test.hpp"
#include "connection_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::job_context;
using redcoord::job_request;
using redcoord::job_state;
using redcoord::scheduler;
using redcoord::session;
using redcoord::test::command;
using redcoord::test::nothrow;
using redcoord::test::sleep_for;
using redcoord::test::with_connection;

redcoord::scheduler_options fast_options() {
    redcoord::scheduler_options o;
    o.poll_interval = 100ms;
    o.lease = 2s;
    return o;
}

redcoord::job_options attempts(std::uint32_t n, std::chrono::milliseconds delay = 50ms) {
    redcoord::job_options o;
    o.retry.max_attempts = n;
    o.retry.delay = delay;
    o.retry.backoff = redcoord::backoff_kind::exponential;
    o.retry.jitter = 0;
    return o;
}

// Adds "slow": one attempt of 200 ms at most, of a function that waits 60 s; stopped tells
// whether it was cancelled. Returns its options.
redcoord::job_options add_slow(scheduler& sched, bool& stopped) {
    auto o = attempts(1);
    o.timeout = 200ms;
    sched.add_function(
        "slow",
        [&stopped](job_context&) -> asio::awaitable<void> {
            asio::steady_timer t(co_await asio::this_coro::executor);
            t.expires_after(60s);
            auto [ec] = co_await t.async_wait(nothrow);
            stopped = ec == asio::error::operation_aborted;
        },
        o);
    return o;
}

// Starts sched's node work; it ends when sched stops.
void start(scheduler& sched, asio::any_io_executor ex) {
    asio::co_spawn(ex, sched.async_run(asio::use_awaitable), asio::detached);
}

std::vector<job_state> states_of(const redcoord::job_record& r) {
    std::vector<job_state> out;
    for (auto& e : r.history) out.push_back(e.state);
    return out;
}

}  // namespace

TEST_CASE("jobs: a job runs once and its record and result are kept", "[jobs]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        scheduler sched(s, fast_options());
        int runs = 0;
        sched.add_function("add", [&](job_context& ctx) -> asio::awaitable<int> {
            ++runs;
            auto v = ctx.payload_as<std::vector<int>>();
            co_return v.at(0) + v.at(1);
        });
        start(sched, conn.get_executor());
        job_request req{.function = "add", .payload = redcoord::job_payload(std::vector{2, 3})};
        auto [ec, id] = co_await sched.async_enqueue(req, nothrow);
        REQUIRE_FALSE(ec);
        CHECK(id.size() == 32);
        auto [wec, rec] = co_await sched.async_wait(id, 20s, nothrow);
        REQUIRE_FALSE(wec);
        REQUIRE(rec);
        CHECK(rec->state == job_state::succeeded);
        CHECK(rec->function == "add");
        CHECK(rec->attempts == 1);
        CHECK(rec->node == "node-a");
        CHECK(rec->has_result);
        CHECK(rec->fencing_token == 1);
        CHECK(states_of(*rec) ==
              std::vector{job_state::queued, job_state::running, job_state::succeeded});
        CHECK(runs == 1);
        redcoord::result_store results(s);
        auto [rec2, value] = co_await results.async_get_value<int>(id, nothrow);
        REQUIRE_FALSE(rec2);
        CHECK(value == 5);
        // The terminal record expires after record_ttl.
        const auto ttl = co_await command(conn, "PTTL", "redcoord:jobs:{default}:job:" + id);
        CHECK(std::stoll(ttl) > 0);
        sched.stop();
    });
}

TEST_CASE("jobs: every transition is published on the events channel", "[jobs]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        scheduler sched(s, fast_options());
        sched.add_function("noop", [](job_context&) -> asio::awaitable<void> { co_return; });
        redcoord::event_bus bus(s);
        std::vector<std::string> seen;
        auto sub = bus.subscribe<boost::json::value>(
            sched.events_channel(),
            [&](error_code ec, const redcoord::event<boost::json::value>& ev) {
                // each message: the steps one call made, in order
                if (!ec)
                    for (auto& step : ev.value.as_array())
                        seen.push_back(std::string(step.at("state").as_string()));
            });
        start(sched, conn.get_executor());
        job_request rq1{.function = "noop"};
        auto [ec, id] = co_await sched.async_enqueue(rq1, nothrow);
        REQUIRE_FALSE(ec);
        auto [wec, rec] = co_await sched.async_wait(id, 20s, nothrow);
        REQUIRE(rec);
        const bool all = co_await redcoord::test::wait_for([&] { return seen.size() >= 3; });
        CHECK(all);
        CHECK(seen == std::vector<std::string>{"queued", "running", "succeeded"});
        sched.stop();
    });
}

// A record says, in its field x, whether the scripts may read it in their short form (x = 0:
// no option, idempotency key, watcher, dependent, history list or cancellation request) or
// must read every field (x = 1, or no x: a record written before x was kept).
TEST_CASE(
    "jobs: a plain job's record is short, a job marked while running is ended by reading "
    "its every field, and a record without its read marker keeps its options",
    "[jobs]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        scheduler sched(s, fast_options());
        bool release = false;
        sched.add_function("held", [&](job_context&) -> asio::awaitable<void> {
            asio::steady_timer t(co_await asio::this_coro::executor);
            while (!release) {
                t.expires_after(5ms);
                co_await t.async_wait(nothrow);
            }
        });
        const std::string base = "redcoord:jobs:{default}:job:";

        auto field_of = [&](const std::string& id,
                            const std::string& field) -> asio::awaitable<std::string> {
            co_return co_await command(conn, "EVAL",
                                       "return redis.call('HGET', KEYS[1], ARGV[1]) or '(none)'",
                                       "1", base + id, field);
        };
        std::string id;
        auto field_becomes = [&](std::string field, std::string value) -> asio::awaitable<bool> {
            for (int i = 0; i < 2000; ++i) {
                if (co_await field_of(id, field) == value) co_return true;
                co_await sleep_for(5ms);
            }
            co_return false;
        };
        start(sched, conn.get_executor());

        // A plain job's record leaves out what its readers fill in: its options at their
        // defaults, its due time (its creation), an empty error and the node that ended it.
        sched.add_function("noop", [](job_context&) -> asio::awaitable<void> { co_return; });
        // (enqueues a job of fn, which is plain: x = 0)
        auto enqueue_plain = [&](std::string fn) -> asio::awaitable<std::string> {
            job_request req{.function = fn};
            auto [e, new_id] = co_await sched.async_enqueue(req, nothrow);
            REQUIRE_FALSE(e);
            CHECK(co_await field_of(new_id, "x") == "0");
            co_return new_id;
        };
        id = co_await enqueue_plain("noop");
        CHECK(co_await field_becomes("state", "succeeded"));
        for (const char* left_out : {"priority", "max_attempts", "due_ms", "error", "ended_by"}) {
            INFO(left_out);
            CHECK(co_await field_of(id, left_out) == "(none)");
        }
        auto [gec, got] = co_await sched.async_get(id, nothrow);
        REQUIRE_FALSE(gec);
        REQUIRE(got);
        CHECK(got->max_attempts == 3);
        CHECK(got->priority == 0);
        CHECK(got->due == got->created);
        CHECK(got->error.empty());
        CHECK(got->node == "node-a");
        REQUIRE(got->history.size() == 3);
        CHECK(got->history.back().state == job_state::succeeded);
        CHECK(got->history.back().node == "node-a");

        // A waiter marks a plain job that is already running: its end is published on the
        // job's own channel, which only the full read at the end knows of.
        id = co_await enqueue_plain("held");
        CHECK(co_await field_becomes("state", "running"));
        redcoord::event_bus bus(s);
        int heard = 0;  // (the message is the state's bare name, not JSON: not converted)
        auto sub = bus.subscribe<std::string>(
            sched.events_channel() + ":job:" + id,
            [&](error_code, const redcoord::event<std::string>&) { ++heard; });
        bool waited = false;
        asio::co_spawn(
            conn.get_executor(),
            [&]() -> asio::awaitable<void> {
                auto [wec, rec] = co_await sched.async_wait(id, 20s, nothrow);
                waited = !wec && rec && rec->state == job_state::succeeded;
            },
            asio::detached);
        CHECK(co_await field_becomes("watched", "1"));
        CHECK(co_await field_of(id, "x") == "1");
        release = true;
        CHECK(co_await redcoord::test::wait_for([&] { return waited && heard > 0; }));
        CHECK(waited);
        CHECK(heard == 1);
        sched.stop();
        co_await sleep_for(300ms);

        // A record with options, its x removed as if written before x was kept, is read in
        // full when claimed: its timeout holds.
        scheduler later(s, fast_options());
        bool stopped = false;
        const auto o = add_slow(later, stopped);
        job_request slow{.function = "slow", .options = o};
        auto [ec2, id2] = co_await later.async_enqueue(slow, nothrow);
        REQUIRE_FALSE(ec2);
        CHECK(co_await field_of(id2, "x") == "1");
        // (out of CHECK: g++ 12 may evaluate a co_await in CHECK's condition twice)
        const auto removed = co_await command(conn, "HDEL", base + id2, "x");
        CHECK(removed == "1");
        start(later, conn.get_executor());
        auto [wec2, rec2] = co_await later.async_wait(id2, 20s, nothrow);
        REQUIRE(rec2);
        CHECK(rec2->state == job_state::failed);
        CHECK(rec2->error == "timed out after 200 ms");
        CHECK(stopped);
        later.stop();
    });
}

TEST_CASE("jobs: a failing job is retried with backoff seen in its history", "[jobs]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        scheduler sched(s, fast_options());
        std::vector<std::uint32_t> attempts_seen;
        sched.add_function(
            "flaky",
            [&](job_context& ctx) -> asio::awaitable<void> {
                attempts_seen.push_back(ctx.attempt());
                if (ctx.attempt() < 3)
                    throw std::runtime_error("boom " + std::to_string(ctx.attempt()));
                co_return;
            },
            attempts(5, 200ms));
        sched.add_function(
            "hopeless",
            [&](job_context&) -> asio::awaitable<void> {
                throw std::runtime_error("always");
                co_return;
            },
            attempts(2, 10ms));
        start(sched, conn.get_executor());
        job_request rq2{.function = "flaky"};
        auto [ec, id] = co_await sched.async_enqueue(rq2, nothrow);
        REQUIRE_FALSE(ec);
        auto [wec, rec] = co_await sched.async_wait(id, 30s, nothrow);
        REQUIRE(rec);
        CHECK(rec->state == job_state::succeeded);
        CHECK(rec->attempts == 3);
        CHECK(attempts_seen == std::vector<std::uint32_t>{1, 2, 3});
        // Every step, though the record holds some of them (the first, the last start, the
        // end) and the list the others.
        CHECK(states_of(*rec) ==
              std::vector<job_state>{job_state::queued, job_state::running, job_state::retrying,
                                     job_state::queued, job_state::running, job_state::retrying,
                                     job_state::queued, job_state::running, job_state::succeeded});
        std::vector<redcoord::job_event> retries;
        for (auto& e : rec->history)
            if (e.state == job_state::retrying) retries.push_back(e);
        REQUIRE(retries.size() == 2);
        CHECK(retries[0].error == "boom 1");
        CHECK(retries[1].error == "boom 2");
        // The backoff (200 ms, then 400 ms, no jitter) separates each retry from the next
        // start, on the server's clock.
        std::vector<std::chrono::system_clock::time_point> starts;
        for (auto& e : rec->history)
            if (e.state == job_state::running) starts.push_back(e.at);
        REQUIRE(starts.size() == 3);
        CHECK(starts[1] - retries[0].at >= 200ms);
        CHECK(starts[2] - retries[1].at >= 400ms);

        job_request rq3{.function = "hopeless"};
        auto [ec2, id2] = co_await sched.async_enqueue(rq3, nothrow);
        auto [wec2, rec2] = co_await sched.async_wait(id2, 30s, nothrow);
        REQUIRE(rec2);
        CHECK(rec2->state == job_state::failed);
        CHECK(rec2->attempts == 2);
        CHECK(rec2->error == "always");
        sched.stop();
    });
}

TEST_CASE("jobs: a time ticker runs at its time point and not before", "[jobs]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        scheduler sched(s, fast_options());
        std::chrono::system_clock::time_point ran_at;
        sched.add_function("tick", [&](job_context&) -> asio::awaitable<void> {
            ran_at = std::chrono::system_clock::now();
            co_return;
        });
        start(sched, conn.get_executor());
        // (half a millisecond past a whole one: its due time is rounded up, never down)
        const auto at = std::chrono::time_point_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now() + 700ms) +
                        std::chrono::microseconds(500);
        job_request rq4{.function = "tick", .run_at = at};
        auto [ec, id] = co_await sched.async_enqueue(rq4, nothrow);
        REQUIRE_FALSE(ec);
        auto [gec, early] = co_await sched.async_get(id, nothrow);
        REQUIRE(early);
        CHECK(early->state == job_state::scheduled);
        CHECK(early->due >= at);
        auto [wec, rec] = co_await sched.async_wait(id, 20s, nothrow);
        REQUIRE(rec);
        CHECK(rec->state == job_state::succeeded);
        // After a delay: due that long after the enqueue.
        const auto before = std::chrono::system_clock::now();
        job_request delayed{.function = "tick", .delay = 300ms};
        auto [dec, did] = co_await sched.async_enqueue(delayed, nothrow);
        REQUIRE_FALSE(dec);
        auto [dwec, drec] = co_await sched.async_wait(did, 20s, nothrow);
        REQUIRE(drec);
        CHECK(drec->state == job_state::succeeded);
        CHECK(drec->started >=
              std::chrono::time_point_cast<std::chrono::milliseconds>(before + 300ms));
        job_request both{.function = "tick", .run_at = at, .delay = 1s};
        redcoord::diagnostics bdiag;
        auto [bec, bid] = co_await sched.async_enqueue(both, bdiag, nothrow);
        CHECK(bec == redcoord::error::invalid_argument);
        CHECK(bdiag.message().find("both run_at and delay") != std::string::npos);
        // Redis's clock and this one are the same machine's.
        CHECK(rec->started >= at);
        CHECK(ran_at >= at);
        sched.stop();
    });
}

TEST_CASE("jobs: higher priority runs first and equal priorities in order", "[jobs]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        auto o = fast_options();
        o.concurrency = 1;
        scheduler sched(s, o);
        std::vector<std::string> order;
        sched.add_function("p", [&](job_context& ctx) -> asio::awaitable<void> {
            order.push_back(ctx.payload());
            co_return;
        });
        std::vector<std::string> ids;
        auto enqueue = [&](std::string payload, int prio) -> asio::awaitable<void> {
            redcoord::job_options jo;
            jo.priority = prio;
            job_request rq5{.function = "p", .payload = payload, .options = jo};
            auto [ec, id] = co_await sched.async_enqueue(rq5, nothrow);
            REQUIRE_FALSE(ec);
            ids.push_back(id);
        };
        co_await enqueue("low-1", -5);
        co_await enqueue("mid-1", 0);
        co_await enqueue("high", 10);
        co_await enqueue("mid-2", 0);
        co_await enqueue("low-2", -5);
        start(sched, conn.get_executor());
        for (auto& id : ids) {
            auto [wec, rec] = co_await sched.async_wait(id, 20s, nothrow);
            REQUIRE(rec);
        }
        CHECK(order == std::vector<std::string>{"high", "mid-1", "mid-2", "low-1", "low-2"});
        sched.stop();
    });
}

TEST_CASE("jobs: a job over its timeout is cancelled and fails", "[jobs]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        scheduler sched(s, fast_options());
        bool stopped = false;
        add_slow(sched, stopped);
        start(sched, conn.get_executor());
        job_request rq6{.function = "slow"};
        auto [ec, id] = co_await sched.async_enqueue(rq6, nothrow);
        auto [wec, rec] = co_await sched.async_wait(id, 20s, nothrow);
        REQUIRE(rec);
        CHECK(rec->state == job_state::failed);
        CHECK(rec->error == "timed out after 200 ms");
        CHECK(stopped);
        sched.stop();
    });
}

TEST_CASE("jobs: an idempotency key enqueues one job", "[jobs]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        scheduler sched(s, fast_options());
        job_request req{.function = "f", .idempotency_key = "order-42"};
        auto [ec1, id1] = co_await sched.async_enqueue(req, nothrow);
        auto [ec2, id2] = co_await sched.async_enqueue(req, nothrow);
        REQUIRE_FALSE(ec1);
        REQUIRE_FALSE(ec2);
        CHECK(id1 == id2);
        auto [lec, page] = co_await sched.async_list(job_state::queued, "f", 0, 10, nothrow);
        CHECK(page.total == 1);
        // An explicit id that exists is refused.
        redcoord::diagnostics diag;
        job_request rq7{.function = "f", .id = id1};
        auto [ec3, id3] = co_await sched.async_enqueue(rq7, diag, nothrow);
        CHECK(ec3 == redcoord::error::server_error);
        CHECK(diag.message().find("exists") != std::string::npos);
    });
}

TEST_CASE("jobs: cancelling a queued job and a running one", "[jobs]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        scheduler sched(s, fast_options());
        bool started = false, stopped = false;
        sched.add_function("wait", [&](job_context&) -> asio::awaitable<void> {
            started = true;
            asio::steady_timer t(co_await asio::this_coro::executor);
            t.expires_after(60s);
            auto [ec] = co_await t.async_wait(nothrow);
            stopped = true;
            if (ec) throw boost::system::system_error(ec);
        });
        // Not yet run: cancelled where it waits.
        job_request rq8{.function = "wait", .run_at = std::chrono::system_clock::now() + 1h};
        auto [ec0, later] = co_await sched.async_enqueue(rq8, nothrow);
        auto [cec0, was0] = co_await sched.async_cancel(later, nothrow);
        REQUIRE(was0);
        CHECK(*was0 == job_state::scheduled);
        auto [gec0, rec0] = co_await sched.async_get(later, nothrow);
        CHECK(rec0->state == job_state::cancelled);

        start(sched, conn.get_executor());
        job_request rq9{.function = "wait"};
        auto [ec, id] = co_await sched.async_enqueue(rq9, nothrow);
        const bool running = co_await redcoord::test::wait_for([&] { return started; });
        REQUIRE(running);
        auto [cec, was] = co_await sched.async_cancel(id, nothrow);
        REQUIRE(was);
        CHECK(*was == job_state::running);
        auto [wec, rec] = co_await sched.async_wait(id, 20s, nothrow);
        REQUIRE(rec);
        CHECK(rec->state == job_state::cancelled);
        CHECK(stopped);
        auto [cec2, was2] = co_await sched.async_cancel(id, nothrow);
        CHECK(was2 == job_state::cancelled);
        auto [cec3, none] = co_await sched.async_cancel("no-such-job", nothrow);
        CHECK_FALSE(cec3);
        CHECK_FALSE(none);
        sched.stop();
    });
}

TEST_CASE("jobs: run now runs a failed job again and a scheduled one at once", "[jobs]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        scheduler sched(s, fast_options());
        int runs = 0;
        sched.add_function(
            "once-broken",
            [&](job_context&) -> asio::awaitable<void> {
                if (++runs == 1) throw std::runtime_error("broken the first time");
                co_return;
            },
            attempts(1));
        start(sched, conn.get_executor());
        job_request rq{.function = "once-broken"};
        auto [ec, id] = co_await sched.async_enqueue(rq, nothrow);
        REQUIRE_FALSE(ec);
        auto [wec, failed] = co_await sched.async_wait(id, 20s, nothrow);
        REQUIRE(failed);
        CHECK(failed->state == job_state::failed);
        CHECK(states_of(*failed) ==
              std::vector{job_state::queued, job_state::running, job_state::failed});
        auto [lec, failed_list] = co_await sched.async_list(job_state::failed, "", 0, 10, nothrow);
        CHECK(failed_list.total == 1);

        auto [rec1, again] = co_await sched.async_run_now(id, nothrow);
        REQUIRE_FALSE(rec1);
        CHECK(again);
        auto [wec2, done] = co_await sched.async_wait(id, 20s, nothrow);
        REQUIRE(done);
        CHECK(done->state == job_state::succeeded);
        CHECK(done->attempts == 1);  // attempts start over
        CHECK(runs == 2);
        // The first run's steps stay in the history, with the error it failed with.
        REQUIRE(states_of(*done) == std::vector{job_state::queued, job_state::running,
                                                job_state::failed, job_state::queued,
                                                job_state::running, job_state::succeeded});
        CHECK(done->history[2].error == "broken the first time");
        CHECK(done->history[3].error == "run again");
        CHECK(done->history[4].at >= done->history[3].at);
        auto [lec2, failed_after] =
            co_await sched.async_list(job_state::failed, "", 0, 10, nothrow);
        CHECK(failed_after.total == 0);
        auto [lec3, succeeded] =
            co_await sched.async_list(job_state::succeeded, "once-broken", 0, 10, nothrow);
        REQUIRE(succeeded.jobs.size() == 1);
        CHECK(succeeded.jobs[0].id == id);

        // A scheduled job runs now, not in an hour.
        job_request later{.function = "once-broken",
                          .run_at = std::chrono::system_clock::now() + 1h};
        auto [ec2, id2] = co_await sched.async_enqueue(later, nothrow);
        auto [rec2, now] = co_await sched.async_run_now(id2, nothrow);
        CHECK(now);
        auto [wec3, ran] = co_await sched.async_wait(id2, 20s, nothrow);
        REQUIRE(ran);
        CHECK(ran->state == job_state::succeeded);
        CHECK(states_of(*ran) == std::vector{job_state::scheduled, job_state::queued,
                                             job_state::running, job_state::succeeded});
        // Nothing to run now: a job that succeeded, one that does not exist.
        auto [rec3, not_again] = co_await sched.async_run_now(id2, nothrow);
        CHECK_FALSE(not_again);
        auto [rec4, missing] = co_await sched.async_run_now("no-such-job", nothrow);
        CHECK_FALSE(rec4);
        CHECK_FALSE(missing);
        sched.stop();
    });
}

TEST_CASE("jobs: dependencies under each failure policy", "[jobs]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        scheduler sched(s, fast_options());
        std::vector<std::string> ran;
        sched.add_function(
            "step",
            [&](job_context& ctx) -> asio::awaitable<void> {
                ran.push_back(ctx.payload());
                if (ctx.payload().starts_with("bad")) throw std::runtime_error("bad step");
                co_return;
            },
            attempts(1));
        auto add = [&](std::string payload, std::vector<std::string> deps,
                       redcoord::dependency_failure policy) -> asio::awaitable<std::string> {
            job_request rq10{.function = "step",
                             .payload = payload,
                             .depends_on = deps,
                             .on_dependency_failure = policy};
            auto [ec, id] = co_await sched.async_enqueue(rq10, nothrow);
            REQUIRE_FALSE(ec);
            co_return id;
        };
        using redcoord::dependency_failure;
        // good -> after_good; bad -> {fails, skipped, runs}; fails -> fails_too (chain)
        // (g++ 12 miscompiles braced lists inside co_await expressions: named vectors.)
        const std::vector<std::string> none;
        const auto good = co_await add("good", none, dependency_failure::fail);
        const auto bad = co_await add("bad", none, dependency_failure::fail);
        const std::vector<std::string> on_good{good}, on_bad{bad}, on_both{bad, good};
        const auto after_good = co_await add("after-good", on_good, dependency_failure::fail);
        const auto fails = co_await add("fails", on_bad, dependency_failure::fail);
        const auto skipped = co_await add("skipped", on_bad, dependency_failure::skip);
        const auto runs = co_await add("runs", on_both, dependency_failure::run);
        const std::vector<std::string> on_fails{fails};
        const auto chain = co_await add("chain", on_fails, dependency_failure::fail);
        auto [gec, waiting] = co_await sched.async_get(after_good, nothrow);
        CHECK(waiting->state == job_state::waiting);
        CHECK(waiting->depends_on == std::vector<std::string>{good});
        start(sched, conn.get_executor());
        std::map<std::string, redcoord::job_record> recs;
        const std::vector<std::string> all{good, bad, after_good, fails, skipped, runs, chain};
        for (auto& id : all) {
            auto [wec, rec] = co_await sched.async_wait(id, 20s, nothrow);
            REQUIRE(rec);
            recs[rec->payload] = *rec;
        }
        CHECK(recs["good"].state == job_state::succeeded);
        CHECK(recs["bad"].state == job_state::failed);
        CHECK(recs["after-good"].state == job_state::succeeded);
        CHECK(recs["fails"].state == job_state::failed);
        CHECK(recs["fails"].error == "dependency " + bad + " failed");
        CHECK(recs["skipped"].state == job_state::cancelled);
        CHECK(recs["skipped"].error == "skipped: dependency " + bad + " failed");
        CHECK(recs["runs"].state == job_state::succeeded);
        CHECK(recs["chain"].state == job_state::failed);
        CHECK(recs["chain"].error == "dependency " + fails + " failed");
        // Dependents never ran before what they wait for, and the failed ones never ran.
        auto pos = [&](const std::string& p) {
            return std::find(ran.begin(), ran.end(), p) - ran.begin();
        };
        CHECK(pos("good") < pos("after-good"));
        CHECK(std::count(ran.begin(), ran.end(), "fails") == 0);
        CHECK(std::count(ran.begin(), ran.end(), "skipped") == 0);
        CHECK(std::count(ran.begin(), ran.end(), "chain") == 0);
        // A dependency that does not exist is refused.
        redcoord::diagnostics diag;
        job_request orphan{.function = "step"};
        orphan.depends_on.push_back("missing");
        auto [ec, id] = co_await sched.async_enqueue(orphan, diag, nothrow);
        CHECK(ec);
        CHECK(diag.message().find("dependency missing does not exist") != std::string::npos);
        sched.stop();
    });
}

TEST_CASE("jobs: a batch's continuation runs when all are done", "[jobs]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        scheduler sched(s, fast_options());
        int parts_done = 0;
        int parts_at_continuation = -1;
        sched.add_function(
            "part",
            [&](job_context& ctx) -> asio::awaitable<void> {
                ++parts_done;
                if (ctx.payload() == "2") throw std::runtime_error("part 2 failed");
                co_return;
            },
            attempts(1));
        sched.add_function("summary", [&](job_context&) -> asio::awaitable<void> {
            parts_at_continuation = parts_done;
            co_return;
        });
        // One bad request: nothing of the batch is enqueued.
        std::vector<job_request> bad_parts(3);
        for (auto& p : bad_parts) p.function = "part";
        bad_parts[1].function = "";
        job_request bad_summary{.function = "summary"};
        auto [bec, bad_ids] = co_await sched.async_enqueue_batch(bad_parts, bad_summary, nothrow);
        CHECK(bec == redcoord::error::invalid_argument);
        CHECK(bad_ids.empty());
        auto [lec, queued] = co_await sched.async_list(job_state::queued, "", 0, 10, nothrow);
        CHECK(queued.total == 0);

        std::vector<job_request> parts;
        for (int i = 0; i < 4; ++i)
            parts.push_back({.function = "part", .payload = std::to_string(i)});
        job_request rq11{.function = "summary"};
        auto [ec, ids] = co_await sched.async_enqueue_batch(parts, rq11, nothrow);
        REQUIRE_FALSE(ec);
        REQUIRE(ids.size() == 5);
        start(sched, conn.get_executor());
        auto [wec, rec] = co_await sched.async_wait(ids.back(), 20s, nothrow);
        REQUIRE(rec);
        CHECK(rec->state == job_state::succeeded);
        CHECK(parts_at_continuation == 4);
        CHECK(rec->depends_on.size() == 4);
        sched.stop();
    });
}

TEST_CASE("jobs: listing by state and function with paging", "[jobs]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        scheduler sched(s, fast_options());
        for (int i = 0; i < 7; ++i) {
            job_request rq12{.function = i % 2 ? "odd" : "even", .payload = std::to_string(i)};
            auto [ec, id] = co_await sched.async_enqueue(rq12, nothrow);
            REQUIRE_FALSE(ec);
            co_await sleep_for(3ms);  // each in a millisecond of its own: a defined order
        }
        auto [ec1, all] = co_await sched.async_list(job_state::queued, "", 0, 100, nothrow);
        CHECK(all.total == 7);
        CHECK(all.jobs.size() == 7);
        auto [ec2, even] = co_await sched.async_list(job_state::queued, "even", 0, 100, nothrow);
        CHECK(even.total == 4);
        auto [ec3, page1] = co_await sched.async_list(job_state::queued, "", 0, 3, nothrow);
        auto [ec4, page3] = co_await sched.async_list(job_state::queued, "", 6, 3, nothrow);
        CHECK(page1.jobs.size() == 3);
        CHECK(page3.jobs.size() == 1);
        // queued jobs in the order they run (the other states: newest first)
        CHECK(page1.jobs[0].payload == "0");
        CHECK(page1.jobs[2].payload == "2");
        CHECK(page3.jobs[0].payload == "6");
        auto [ec7, odd2] = co_await sched.async_list(job_state::queued, "odd", 1, 2, nothrow);
        REQUIRE(odd2.jobs.size() == 2);
        CHECK(odd2.total == 3);
        CHECK(odd2.jobs[0].payload == "3");
        CHECK(odd2.jobs[1].payload == "5");
        auto [ec5, none] = co_await sched.async_list(job_state::failed, "", 0, 10, nothrow);
        CHECK(none.total == 0);
        auto [ec6, big] = co_await sched.async_list(job_state::queued, "", 0, 5000, nothrow);
        CHECK(ec6 == redcoord::error::invalid_argument);

        // Running (from the leases) and ended jobs, by function.
        bool release = false;
        sched.add_function("even", [&](job_context&) -> asio::awaitable<void> {
            while (!release) co_await sleep_for(5ms);
        });
        sched.add_function("odd", [](job_context&) -> asio::awaitable<void> { co_return; });
        start(sched, conn.get_executor());
        redcoord::job_page running, done;
        for (int i = 0; i < 1000 && !(running.total == 4 && done.total == 3); ++i) {
            co_await sleep_for(10ms);
            auto [e1, r] = co_await sched.async_list(job_state::running, "", 0, 100, nothrow);
            auto [e2, d] = co_await sched.async_list(job_state::succeeded, "", 0, 100, nothrow);
            running = std::move(r);
            done = std::move(d);
        }
        REQUIRE(running.total == 4);
        REQUIRE(done.total == 3);
        // (the keeper member, left out of the listing, holds the leases' set in skiplist
        // encoding: see RUNNING_KEEPER in src/lua/lib/jobs.lua)
        CHECK(co_await command(conn, "OBJECT", "ENCODING", "redcoord:jobs:{default}:running") ==
              "skiplist");
        CHECK(running.jobs.size() == 4);
        for (auto& j : running.jobs) CHECK(j.function == "even");
        auto [ec8, odd_running] =
            co_await sched.async_list(job_state::running, "odd", 0, 10, nothrow);
        CHECK(odd_running.total == 0);
        auto [ec9, even_running] =
            co_await sched.async_list(job_state::running, "even", 1, 10, nothrow);
        CHECK(even_running.total == 4);
        CHECK(even_running.jobs.size() == 3);
        auto [ec10, odd_done] =
            co_await sched.async_list(job_state::succeeded, "odd", 0, 10, nothrow);
        CHECK(odd_done.total == 3);
        release = true;
        std::uint64_t evens_done = 0;
        for (int i = 0; i < 1000 && evens_done != 4; ++i) {
            co_await sleep_for(10ms);
            auto [e, d] = co_await sched.async_list(job_state::succeeded, "even", 0, 10, nothrow);
            evens_done = d.total;
        }
        CHECK(evens_done == 4);
        auto [ec11, none_running] =
            co_await sched.async_list(job_state::running, "", 0, 10, nothrow);
        CHECK(none_running.total == 0);
        sched.stop();
    });
}

TEST_CASE("jobs: a recurring job fires once per occurrence with one node", "[jobs]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        scheduler sched(s, fast_options());
        std::vector<std::int64_t> occurrences;
        sched.add_function("tick", [&](job_context& ctx) -> asio::awaitable<void> {
            REQUIRE(ctx.occurrence());
            occurrences.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      ctx.occurrence()->time_since_epoch())
                                      .count());
            co_return;
        });
        sched.add_recurring({.name = "every-second", .cron = "* * * * * *", .function = "tick"});
        start(sched, conn.get_executor());
        const bool three =
            co_await redcoord::test::wait_for([&] { return occurrences.size() >= 3; }, 20s);
        REQUIRE(three);
        for (std::size_t i = 1; i < occurrences.size(); ++i)
            CHECK(occurrences[i] - occurrences[i - 1] == 1000);
        auto [rec_ec, infos] = co_await sched.async_recurring(nothrow);
        REQUIRE(infos.size() == 1);
        CHECK(infos[0].name == "every-second");
        CHECK(infos[0].cron == "* * * * * *");
        CHECK(infos[0].last_fired.time_since_epoch().count() > 0);
        sched.stop();
    });
}

TEST_CASE("jobs: bad input is refused naming what was wrong", "[jobs]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        scheduler sched(s, fast_options());
        redcoord::diagnostics diag;
        job_request rq13{.function = ""};
        auto [ec1, id1] = co_await sched.async_enqueue(rq13, diag, nothrow);
        CHECK(ec1 == redcoord::error::invalid_argument);
        CHECK(diag.message().find("function") != std::string::npos);
        redcoord::job_options bad;
        bad.priority = 5000;
        job_request rq14{.function = "f", .options = bad};
        auto [ec2, id2] = co_await sched.async_enqueue(rq14, diag, nothrow);
        CHECK(ec2 == redcoord::error::invalid_argument);
        CHECK(diag.message().find("priority") != std::string::npos);
        bad = {};
        bad.retry.max_attempts = 0;
        job_request rq15{.function = "f", .options = bad};
        auto [ec3, id3] = co_await sched.async_enqueue(rq15, diag, nothrow);
        CHECK(diag.message().find("retry.max_attempts") != std::string::npos);
        job_request rq16{.function = "f", .id = "a,b"};
        auto [ec4, id4] = co_await sched.async_enqueue(rq16, diag, nothrow);
        CHECK(ec4 == redcoord::error::invalid_argument);
        CHECK(diag.message().find("comma") != std::string::npos);
        try {
            sched.add_recurring({.name = "x", .cron = "61 0 * * *", .function = "f"});
            FAIL("a bad cron expression was accepted");
        } catch (const redcoord::error_with_diagnostics& e) {
            CHECK(e.code() == redcoord::error::invalid_argument);
            CHECK(std::string(e.what()).find("minute") != std::string::npos);
        }
        try {
            sched.add_recurring(
                {.name = "y", .cron = "* * * * *", .time_zone = "Mars/Olympus", .function = "f"});
            FAIL("an unknown time zone was accepted");
        } catch (const redcoord::error_with_diagnostics& e) {
            CHECK(std::string(e.what()).find("Mars/Olympus") != std::string::npos);
        }
        try {
            sched.add_recurring({.name = "a,b", .cron = "* * * * *", .function = "f"});
            FAIL("a recurring job name with a comma was accepted");
        } catch (const redcoord::error_with_diagnostics& e) {
            CHECK(e.code() == redcoord::error::invalid_argument);
            CHECK(std::string(e.what()).find("comma") != std::string::npos);
        }
        try {
            redcoord::scheduler_options o;
            o.lease = 10ms;
            scheduler bad_sched(s, o);
            FAIL("a 10 ms lease was accepted");
        } catch (const redcoord::error_with_diagnostics& e) {
            CHECK(e.code() == redcoord::error::bad_config);
            CHECK(std::string(e.what()).find("lease") != std::string::npos);
        }
    });
}

TEST_CASE("jobs: a node claims its functions' jobs behind many of a function it does not run",
          "[jobs]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        scheduler sched(s, fast_options());
        int ran = 0;
        sched.add_function("mine", [&](job_context&) -> asio::awaitable<void> {
            ++ran;
            co_return;
        });
        job_request theirs{.function = "theirs"};
        for (int i = 0; i < 300; ++i) {
            theirs.id.clear();
            auto [ec, id] = co_await sched.async_enqueue(theirs, nothrow);
            REQUIRE_FALSE(ec);
        }
        job_request mine{.function = "mine"};
        auto [ec, id] = co_await sched.async_enqueue(mine, nothrow);
        REQUIRE_FALSE(ec);
        start(sched, conn.get_executor());
        auto [wec, rec] = co_await sched.async_wait(id, 20s, nothrow);
        REQUIRE(rec);
        CHECK(rec->state == job_state::succeeded);
        CHECK(ran == 1);
        auto [lec, page] = co_await sched.async_list(job_state::queued, "theirs", 0, 1, nothrow);
        CHECK(page.total == 300);
        sched.stop();
    });
}
