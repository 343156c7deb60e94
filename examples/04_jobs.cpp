// Tutorial 4: jobs — functions registered by name, run by whichever node of the cluster is
// free, now, at a time point, on a cron schedule, or when the jobs they wait for are done.
//
// One process plays one node here (docs/jobs.md and scripts/demo show three). It shows:
//   1. registering functions, one of them returning a typed result (read from result_store);
//   2. enqueueing a job to run now and waiting for it (async_wait);
//   3. a time ticker: a job run at a time point (run_at), not before;
//   4. retries with backoff: a job failing twice, then succeeding, its history kept;
//   5. a recurring job: a 6-field cron expression in a time zone, one job per occurrence;
//   6. a dependency, and a batch whose continuation runs once all its jobs are done;
//   7. cancelling a scheduled job and a running one;
//   8. listing the jobs in a state (async_list).
// Each step checks what it shows: the program exits 1 when something did not happen.
//
// The connection string comes from REDIS_URL (default redis://127.0.0.1:6379).
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace asio = boost::asio;
using asio::use_awaitable;
using namespace std::chrono_literals;
using redcoord::job_context;
using redcoord::job_request;
using redcoord::job_state;
using sys_clock = std::chrono::system_clock;

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
    if (!ok) {
        ++failures;
        std::cout << "  FAILED: " << what << "\n";
    }
}

// "14:02:07.250" (UTC).
std::string hms(sys_clock::time_point t) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch());
    const std::time_t secs = static_cast<std::time_t>(ms.count() / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%02d:%02d:%02d.%03d", tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(ms.count() % 1000));
    return buf;
}

long long ms_between(sys_clock::time_point a, sys_clock::time_point b) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
}

asio::awaitable<void> sleep(std::chrono::milliseconds d) {
    asio::steady_timer t(co_await asio::this_coro::executor, d);
    co_await t.async_wait(use_awaitable);
}

// Waits for job id to end (at most 10 s) and returns its record.
asio::awaitable<redcoord::job_record> wait_job(redcoord::scheduler& sched, std::string id) {
    auto rec = co_await sched.async_wait(id, 10s, use_awaitable);
    if (!rec) throw std::runtime_error("job " + id + " has no record");
    co_return *rec;
}

// Removes what an earlier run of this tutorial left (the job system's keys of "tutorial").
asio::awaitable<void> clean(redcoord::connection& conn) {
    std::string cursor = "0";
    do {
        redcoord::request scan;
        scan.push("SCAN", cursor, "MATCH", "redcoord:jobs:{tutorial}*", "COUNT", 1000);
        // The reply is [cursor, [key...]]: the cursor at depth 1, the keys at depth 2.
        redcoord::generic_response reply;
        co_await conn.async_exec(scan, reply, use_awaitable);
        std::vector<std::string> keys;
        cursor = "0";
        for (std::size_t i = 0; i < reply.size(); ++i) {
            const auto& n = reply[i];
            if (i == 1) cursor = n.value;
            if (n.depth == 2) keys.push_back(n.value);
        }
        if (!keys.empty()) {
            redcoord::request del;
            del.push_range("UNLINK", keys);
            co_await conn.async_exec(del, redcoord::ignore, use_awaitable);
        }
    } while (cursor != "0");
}

asio::awaitable<void> tutorial(redcoord::connection& conn) {
    co_await clean(conn);
    redcoord::session s(conn, {.node_id = "example-node"});

    // Schedulers with the same name share their jobs: every node of an application creates
    // one, registers the functions it can run, and calls async_run. Short timings here so the
    // tutorial takes seconds: look for work every 100 ms, a 2 s lease.
    redcoord::scheduler_options so;
    so.name = "tutorial";
    so.poll_interval = 100ms;
    so.lease = 2s;
    redcoord::scheduler sched(s, so);

    // ---- 1. functions -------------------------------------------------------------------
    // A function is a coroutine taking the job's context. Its return value (anything
    // Boost.JSON converts) is the job's result, kept in the session's result_store.
    sched.add_function("add", [](job_context& ctx) -> asio::awaitable<int> {
        const auto terms = ctx.payload_as<std::vector<int>>();
        int sum = 0;
        for (int t : terms) sum += t;
        co_return sum;
    });

    sys_clock::time_point ticker_started{};
    sched.add_function("ticker", [&](job_context&) -> asio::awaitable<void> {
        ticker_started = sys_clock::now();
        co_return;
    });

    // Fails its first two attempts. Its options: 3 attempts, 100 ms then 200 ms apart
    // (exponential backoff, no jitter so that the tutorial's output is steady).
    redcoord::job_options flaky_opts;
    flaky_opts.retry.max_attempts = 3;
    flaky_opts.retry.backoff = redcoord::backoff_kind::exponential;
    flaky_opts.retry.delay = 100ms;
    flaky_opts.retry.jitter = 0;
    sched.add_function(
        "flaky",
        [](job_context& ctx) -> asio::awaitable<std::string> {
            std::cout << "  flaky: attempt " << ctx.attempt() << " of " << ctx.max_attempts()
                      << "\n";
            if (ctx.attempt() < 3)
                throw std::runtime_error("service unavailable (attempt " +
                                         std::to_string(ctx.attempt()) + ")");
            co_return std::string("made it");
        },
        flaky_opts);

    std::vector<sys_clock::time_point> occurrences;
    sched.add_function("heartbeat", [&](job_context& ctx) -> asio::awaitable<void> {
        // A recurring job's context names the occurrence that enqueued it.
        const auto occ = ctx.occurrence().value_or(sys_clock::time_point{});
        std::cout << "  heartbeat: occurrence " << hms(occ) << ", started " << hms(sys_clock::now())
                  << "\n";
        occurrences.push_back(occ);
        co_return;
    });

    std::vector<std::string> order;
    sched.add_function("fetch", [&](job_context&) -> asio::awaitable<void> {
        co_await sleep(200ms);
        order.push_back("fetch");
    });
    sched.add_function("report", [&](job_context&) -> asio::awaitable<void> {
        order.push_back("report");
        co_return;
    });

    redcoord::job_options once;
    once.retry.max_attempts = 1;
    sched.add_function(
        "part",
        [](job_context& ctx) -> asio::awaitable<int> {
            const int n = ctx.payload_as<int>();
            if (n == 3) throw std::runtime_error("part 3 is broken");
            co_return n * 10;
        },
        once);
    std::string summary;
    sched.add_function("summary", [&](job_context& ctx) -> asio::awaitable<void> {
        // The continuation's record lists the jobs it waited for: read their outcomes.
        auto self = co_await sched.async_get(ctx.id(), use_awaitable);
        int ok = 0, failed = 0;
        for (const auto& id : self->depends_on) {
            auto rec = co_await sched.async_get(id, use_awaitable);
            (rec && rec->state == job_state::succeeded ? ok : failed)++;
        }
        summary = std::to_string(ok) + " succeeded, " + std::to_string(failed) + " failed";
        std::cout << "  summary: " << summary << "\n";
    });

    bool slow_saw_stop = false;
    sched.add_function("slow", [&](job_context& ctx) -> asio::awaitable<void> {
        // Awaited operations complete with operation_aborted when the job is cancelled.
        asio::steady_timer t(co_await asio::this_coro::executor, 30s);
        auto [ec] = co_await t.async_wait(asio::as_tuple(use_awaitable));
        slow_saw_stop = ec == asio::error::operation_aborted && ctx.stop_requested();
        if (ec) throw boost::system::system_error(ec);
    });

    // ---- 5. (set up now) a recurring job ----------------------------------------------------
    // Every second ("sec min hour dom mon dow"), as Berlin's wall clock reads it. Every node
    // adds the same recurring jobs; each occurrence is enqueued once across the cluster.
    sched.add_recurring({.name = "heartbeat",
                         .cron = "* * * * * *",
                         .time_zone = "Europe/Berlin",
                         .function = "heartbeat"});

    // This node's part: claim and run jobs, renew their leases, fire the recurring jobs.
    bool run_done = false;
    sched.async_run([&](boost::system::error_code) { run_done = true; });

    // ---- 2. enqueue now, wait, read the typed result ---------------------------------------
    std::cout << "1-2. a job now, its typed result\n";
    // Keep requests in named variables (g++ 12 and braced temporaries inside co_await).
    job_request add_req{.function = "add", .payload = redcoord::job_payload(std::vector{2, 3, 4})};
    const std::string add_id = co_await sched.async_enqueue(add_req, use_awaitable);
    auto add = co_await wait_job(sched, add_id);
    redcoord::result_store results(s);
    const int sum = (co_await results.async_get_value<int>(add_id, use_awaitable)).value_or(0);
    std::cout << "  add [2,3,4]: " << to_string(add.state) << " on " << add.node << ", result "
              << sum << "\n";
    check(add.state == job_state::succeeded && add.has_result && sum == 9, "add returned 9");

    // ---- 3. a time ticker --------------------------------------------------------------------
    std::cout << "3. a time ticker\n";
    const auto at = sys_clock::now() + 700ms;
    job_request tick_req{.function = "ticker", .run_at = at};
    const std::string tick_id = co_await sched.async_enqueue(tick_req, use_awaitable);
    auto queued = co_await sched.async_get(tick_id, use_awaitable);
    std::cout << "  enqueued for " << hms(at) << ": " << to_string(queued->state) << "\n";
    auto tick = co_await wait_job(sched, tick_id);
    std::cout << "  ran at " << hms(ticker_started) << " (" << ms_between(at, ticker_started)
              << " ms after its time)\n";
    check(queued->state == job_state::scheduled, "the ticker was scheduled");
    check(tick.state == job_state::succeeded && ticker_started >= at,
          "the ticker ran, not before its time");

    // ---- 4. retries with backoff ------------------------------------------------------------
    std::cout << "4. retries with backoff\n";
    job_request flaky_req{.function = "flaky"};
    const std::string flaky_id = co_await sched.async_enqueue(flaky_req, use_awaitable);
    auto flaky = co_await wait_job(sched, flaky_id);
    int retries = 0;
    for (const auto& e : flaky.history) {
        std::cout << "  " << hms(e.at) << " " << to_string(e.state) << " (attempt " << e.attempt
                  << ")" << (e.error.empty() ? "" : ": " + e.error) << "\n";
        if (e.state == job_state::retrying) ++retries;
    }
    check(flaky.state == job_state::succeeded && flaky.attempts == 3 && retries == 2,
          "flaky succeeded on its third attempt after two retries");

    // ---- 6. a dependency, and a batch ---------------------------------------------------------
    std::cout << "6. a dependency and a batch\n";
    job_request fetch_req{.function = "fetch"};
    const std::string fetch_id = co_await sched.async_enqueue(fetch_req, use_awaitable);
    job_request report_req{.function = "report", .depends_on = {fetch_id}};
    const std::string report_id = co_await sched.async_enqueue(report_req, use_awaitable);
    auto waiting = co_await sched.async_get(report_id, use_awaitable);
    std::cout << "  report waits for fetch: " << to_string(waiting->state) << "\n";
    auto report = co_await wait_job(sched, report_id);
    std::cout << "  ran in order: " << (order.size() == 2 ? order[0] + ", " + order[1] : "?")
              << "\n";
    check(report.state == job_state::succeeded &&
              order == std::vector<std::string>{"fetch", "report"},
          "report ran after fetch");

    // Three parts (the third fails) and a continuation that runs whatever their outcome.
    std::vector<job_request> parts;
    for (int i = 1; i <= 3; ++i)
        parts.push_back({.function = "part", .payload = redcoord::job_payload(i)});
    job_request cont{.function = "summary"};
    const auto batch = co_await sched.async_enqueue_batch(parts, cont, use_awaitable);
    auto sum_rec = co_await wait_job(sched, batch.back());
    check(sum_rec.state == job_state::succeeded && summary == "2 succeeded, 1 failed",
          "the batch's continuation saw 2 parts succeed and 1 fail");

    // ---- 7. cancellation ---------------------------------------------------------------------
    std::cout << "7. cancellation\n";
    job_request later_req{.function = "ticker", .run_at = sys_clock::now() + 1h};
    const std::string later_id = co_await sched.async_enqueue(later_req, use_awaitable);
    const auto was_later = co_await sched.async_cancel(later_id, use_awaitable);
    auto later = co_await wait_job(sched, later_id);
    std::cout << "  a job due in an hour: was " << to_string(*was_later) << ", now "
              << to_string(later.state) << "\n";
    check(later.state == job_state::cancelled, "the scheduled job was cancelled");

    job_request slow_req{.function = "slow"};
    const std::string slow_id = co_await sched.async_enqueue(slow_req, use_awaitable);
    for (int i = 0; i < 100; ++i) {  // until it runs
        auto r = co_await sched.async_get(slow_id, use_awaitable);
        if (r && r->state == job_state::running) break;
        co_await sleep(20ms);
    }
    // Cancelling works from any node: the one running the job is told to stop it.
    const auto was_slow = co_await sched.async_cancel(slow_id, use_awaitable);
    auto slow = co_await wait_job(sched, slow_id);
    std::cout << "  a running job: was " << to_string(*was_slow) << ", now "
              << to_string(slow.state) << " (" << slow.error << ")\n";
    check(was_slow == job_state::running && slow.state == job_state::cancelled && slow_saw_stop,
          "the running job was stopped and cancelled");

    // ---- 5. the recurring job, by now ----------------------------------------------------------
    std::cout << "5. the recurring job\n";
    for (int i = 0; i < 40 && occurrences.size() < 2; ++i) co_await sleep(100ms);
    const auto recurring = co_await sched.async_recurring(use_awaitable);
    for (const auto& r : recurring)
        std::cout << "  " << r.name << " \"" << r.cron << "\" " << r.time_zone << ": last fired "
                  << hms(r.last_fired) << ", next " << hms(r.next) << "\n";
    bool one_second_apart = occurrences.size() >= 2;
    for (std::size_t i = 1; i < occurrences.size(); ++i)
        one_second_apart = one_second_apart && occurrences[i] - occurrences[i - 1] == 1s;
    check(one_second_apart,
          "heartbeat ran once per second (" + std::to_string(occurrences.size()) + " occurrences)");

    // ---- 8. listing ---------------------------------------------------------------------------
    std::cout << "8. listing\n";
    const auto done = co_await sched.async_list(job_state::succeeded, "", 0, 100, use_awaitable);
    const auto failed = co_await sched.async_list(job_state::failed, "", 0, 100, use_awaitable);
    const auto parts_ok =
        co_await sched.async_list(job_state::succeeded, "part", 0, 100, use_awaitable);
    std::cout << "  succeeded: " << done.total << " (part: " << parts_ok.total
              << "), failed: " << failed.total << "\n";
    for (const auto& j : failed.jobs)
        std::cout << "  failed: " << j.function << " " << j.payload << ": " << j.error << "\n";
    check(parts_ok.total == 2 && failed.total == 1 && done.total >= 7,
          "the lists hold the jobs that ran");

    // Stop this node's part (it hands back what it runs), then the session.
    sched.stop();
    for (int i = 0; i < 100 && !run_done; ++i) co_await sleep(20ms);
    check(run_done, "the scheduler stopped");
    co_await clean(conn);
    co_await s.async_close(use_awaitable);
}

}  // namespace

int main() {
    const char* url = std::getenv("REDIS_URL");
    try {
        const redcoord::config cfg = redcoord::parse_config(url ? url : "redis://127.0.0.1:6379");
        asio::io_context ioc;
        redcoord::connection conn(ioc.get_executor());
        conn.async_run(cfg, asio::detached);
        asio::co_spawn(ioc, tutorial(conn), [&](std::exception_ptr ep) {
            conn.cancel();
            if (ep) std::rethrow_exception(ep);
        });
        ioc.run();
        if (failures > 0) {
            std::cerr << "04_jobs: " << failures << " check(s) failed\n";
            return 1;
        }
        std::cout << "all shown\n";
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "04_jobs: " << e.what() << "\n";
        return 1;
    }
}
