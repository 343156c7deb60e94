// Job system figures (jobs.hpp), one JSON line each:
// - throughput: 4 worker processes (this program started again with --worker, by PID), each
//   running a scheduler with concurrency 16 and a no-op function; this process enqueues N jobs
//   (64 enqueues in flight) and waits until all succeeded: jobs/s from the first enqueue to
//   the last completion, the enqueue rate, and the latency from enqueue to completion (the
//   records' created and finished times, both Redis TIME), and the server's CPU time per job
//   (INFO cpu, user + system, from the first enqueue to the last completion; for the reference,
//   around its whole run, setup included) with the share of that time the server was busy:
//   near 1, the server's one thread is the bound. Set against the target (30,000
//   jobs/s) and the same-run reference: BullMQ in the same shape against the same server
//   (bench/bullmq/jobs_reference.mjs; bench/bullmq/install installs it with npm, else the
//   reference is null);
// - cron: 3 worker processes run the same recurring job "* * * * * *" for S seconds: the
//   lateness of each run (its start on the worker's clock − the occurrence it was enqueued for,
//   job_context::occurrence), and how many times each occurrence ran (exactly once: no
//   duplicate, none missed between the first and the last seen);
// - delayed: M jobs scheduled (run_at spread over a few seconds, after the scheduling ends) with
//   the 4 worker processes running: the time to schedule them, Redis memory per job (INFO
//   memory used_memory after − before, / M) and the lateness when they come due (start − run_at,
//   run_at travels in the payload).
//
//   build/bench/jobs [throughput|cron|delayed ...] [--jobs 50000] [--cron-seconds 15]
//                    [--delayed 100000] [--spread-ms 4000]
// Uses REDIS_URL when set; otherwise starts a throwaway redis-server on a free loopback port.
#include <redcoord/redcoord.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "bench_support.hpp"
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace asio = boost::asio;
using namespace redcoord::bench;
using namespace std::chrono_literals;
using boost::system::error_code;
using std::chrono::milliseconds;
using sys_clock = std::chrono::system_clock;

// Sizes, from the command line.
struct sizes {
    std::size_t jobs = 50000;
    int cron_seconds = 15;
    std::size_t delayed = 100000;
    milliseconds spread{4000};
};
sizes sz;

constexpr int worker_processes = 4;
constexpr std::size_t worker_concurrency = 16;
constexpr int cron_nodes = 3;
constexpr std::size_t enqueue_in_flight = 64;
constexpr double target_jobs_per_s = 30000;

std::int64_t unix_ms(sys_clock::time_point t) {
    return std::chrono::duration_cast<milliseconds>(t.time_since_epoch()).count();
}

std::int64_t to_i64(const std::string& s) {
    return s.empty() ? 0 : std::strtoll(s.c_str(), nullptr, 10);
}

// ---- worker processes ----------------------------------------------------------------------

// `jobs --worker <run|cron> <url> <scheduler name> <node id>`: a node of the job system until
// killed. "run": the no-op functions; "cron": the recurring job, printing a line per run
// ("run <occurrence ms> <start ms> <attempt>"). Prints "ready" once running.
int worker_main(const std::string& mode, const std::string& url, const std::string& name,
                const std::string& node) {
    asio::io_context ioc(1);
    redcoord::connection conn(ioc.get_executor());
    conn.async_run(redcoord::parse_config(url), asio::detached);
    redcoord::session s(conn, {.node_id = node});
    redcoord::scheduler_options so;
    so.name = name;
    so.concurrency = worker_concurrency;
    redcoord::scheduler sched(s, so);
    if (mode == "run") {
        sched.add_function("noop",
                           [](redcoord::job_context&) -> asio::awaitable<void> { co_return; });
    } else {
        sched.add_function("tick", [](redcoord::job_context& ctx) -> asio::awaitable<void> {
            const auto now = unix_ms(sys_clock::now());
            const auto occ = ctx.occurrence() ? unix_ms(*ctx.occurrence()) : 0;
            std::printf("run %lld %lld %u\n", static_cast<long long>(occ),
                        static_cast<long long>(now), ctx.attempt());
            std::fflush(stdout);
            co_return;
        });
        sched.add_recurring({.name = "tick", .cron = "* * * * * *", .function = "tick"});
    }
    sched.async_run([&](error_code) { ioc.stop(); });
    std::printf("ready\n");
    std::fflush(stdout);
    ioc.run();
    return 0;
}

// A worker process (self_process): `jobs --worker <mode> <url> <name> <node>`.
struct worker : self_process {
    worker(const std::string& mode, const std::string& url, const std::string& name,
           const std::string& node)
        : self_process({"--worker", mode, url, name, node}) {}
    bool ready() {
        drain();
        return out.find("ready\n") != std::string::npos;
    }
};

using workers = std::vector<std::unique_ptr<worker>>;

workers start_workers(int n, const std::string& mode, const bench_env& env, const std::string& name,
                      asio::io_context& ioc) {
    workers w;
    for (int i = 0; i < n; ++i)
        w.push_back(std::make_unique<worker>(mode, env.url, name,
                                             "bench-" + mode + "-" + std::to_string(i + 1)));
    const bool up = run_until(ioc, clock_type::now() + 20s, [&] {
        return std::all_of(w.begin(), w.end(), [](auto& p) { return p->ready(); });
    });
    if (!up) throw std::runtime_error("the " + mode + " workers did not start");
    return w;
}

// ---- the bench's side ----------------------------------------------------------------------

// This process: a connection, a session and a scheduler that only enqueues (it is not run).
struct producer {
    client c;
    redcoord::session s;
    redcoord::scheduler sched;
    std::string base;  // S, the scheduler's keys
    producer(const bench_env& env, const std::string& name)
        : c(env.cfg),
          s(c.conn, {.node_id = "bench-producer"}),
          sched(s, options(name)),
          base(s.options().prefix + "jobs:{" + name + "}") {}
    ~producer() { run(c.ioc, close()); }
    asio::awaitable<int> close() {
        co_await s.async_close(nothrow);
        co_return 0;
    }
    static redcoord::scheduler_options options(const std::string& name) {
        redcoord::scheduler_options o;
        o.name = name;
        o.concurrency = 0;
        return o;
    }
};

// Enqueues jobs made by make(i), i in [0, n), `enqueue_in_flight` at a time; their ids in order.
template <class Make>
asio::awaitable<std::vector<std::string>> enqueue_all(redcoord::scheduler& sched, std::size_t n,
                                                      Make make, std::size_t& failures) {
    std::vector<std::string> ids(n);
    std::size_t next = 0, running = 0;
    auto ex = co_await asio::this_coro::executor;
    auto one = [&]() -> asio::awaitable<void> {
        while (next < n) {
            const std::size_t i = next++;
            redcoord::job_request req = make(i);
            auto [ec, id] = co_await sched.async_enqueue(std::move(req), nothrow);
            if (ec) ++failures;
            ids[i] = id;
        }
        --running;
    };
    for (std::size_t k = 0; k < enqueue_in_flight; ++k) {
        ++running;
        asio::co_spawn(ex, one(), asio::detached);
    }
    asio::steady_timer t(ex);
    while (running > 0) {
        t.expires_after(1ms);
        co_await t.async_wait(nothrow);
    }
    co_return ids;
}

// Two fields of each job's record (HMGET, 1,000 to a request).
asio::awaitable<std::vector<std::pair<std::string, std::string>>> fields_of(
    redcoord::connection& conn, const std::string& base, const std::vector<std::string>& ids,
    const std::string& a, const std::string& b) {
    std::vector<std::pair<std::string, std::string>> out;
    for (std::size_t from = 0; from < ids.size(); from += 1000) {
        redcoord::request req;
        const std::size_t to = std::min(ids.size(), from + 1000);
        for (std::size_t i = from; i < to; ++i) req.push("HMGET", base + ":job:" + ids[i], a, b);
        redcoord::generic_response resp;
        redcoord::diagnostics diag;
        auto [ec, n] = co_await conn.async_exec(req, resp, diag, nothrow);
        redcoord::throw_on_error(ec, diag);
        std::vector<std::string> values;
        for (const auto& nd : resp)
            if (nd.depth == 1) values.push_back(nd.value);
        for (std::size_t i = 0; i + 1 < values.size(); i += 2)
            out.emplace_back(values[i], values[i + 1]);
    }
    co_return out;
}

// The length of a list (an ended state's index: S:state:succeeded).
std::int64_t llen(client& c, const std::string& key) {
    return to_i64(run(c.ioc, command_text(c.conn, {"LLEN", key})));
}

// Removes the scheduler's keys (a run against a shared server leaves nothing behind).
void remove_keys(client& c, const std::string& base) {
    run(c.ioc,
        command_text(
            c.conn, {"EVAL",
                     "local n = 0 local cur = '0' repeat "
                     "local r = redis.call('SCAN', cur, 'MATCH', ARGV[1], 'COUNT', 1000) "
                     "cur = r[1] for _, k in ipairs(r[2]) do redis.call('UNLINK', k) n = n + 1 end "
                     "until cur == '0' return n",
                     "0", base + "*"}));
}

// ---- figures -------------------------------------------------------------------------------

// BullMQ's jobs/s in the same shape (bench/bullmq/jobs_reference.mjs), or nullopt when node
// or BullMQ (bench/bullmq/install) is missing.
std::optional<double> bullmq_jobs_per_s(const bench_env& env, std::size_t jobs) {
    const std::string dir = REDCOORD_BENCH_BULLMQ_DIR;
    if (::access((dir + "/node_modules/bullmq").c_str(), F_OK) != 0) return std::nullopt;
    const std::string cmd = "node " + dir + "/jobs_reference.mjs " + env.ep.host + " " +
                            std::to_string(env.ep.port) + " bench-bullmq-" + env.run_tag + " " +
                            std::to_string(jobs) + " " + std::to_string(worker_processes) + " " +
                            std::to_string(worker_concurrency) + " 2>&1";
    FILE* pipe = popen(cmd.c_str(), "r");
    if (!pipe) return std::nullopt;
    std::optional<double> out;
    char line[1024];
    while (std::fgets(line, sizeof line, pipe)) {
        const std::string text(line);
        const auto at = text.find("\"jobs_per_s\":");
        if (at != std::string::npos) out = std::atof(text.c_str() + at + 13);
    }
    pclose(pipe);
    return out;
}

int bench_throughput(const bench_env& env) {
    const std::string name = "bench-throughput-" + env.run_tag;
    producer p(env, name);
    auto w = start_workers(worker_processes, "run", env, name, p.c.ioc);

    std::size_t failures = 0;
    const double cpu0 = server_cpu(p.c.ioc, p.c.conn);
    const auto t0 = clock_type::now();
    auto ids =
        run(p.c.ioc,
            enqueue_all(
                p.sched, sz.jobs,
                [](std::size_t) { return redcoord::job_request{.function = "noop"}; }, failures));
    const double enqueue_s = seconds_since(t0);
    const std::string done_key = p.base + ":state:succeeded";
    std::int64_t done = 0;
    const auto deadline = clock_type::now() + std::chrono::seconds(60 + sz.jobs / 500);
    while (clock_type::now() < deadline) {
        done = llen(p.c, done_key);
        if (done >= static_cast<std::int64_t>(sz.jobs)) break;
        p.c.ioc.run_for(5ms);
    }
    const double seconds = seconds_since(t0);
    const double cpu = server_cpu(p.c.ioc, p.c.conn) - cpu0;

    auto times = run(p.c.ioc, fields_of(p.c.conn, p.base, ids, "created_ms", "finished_ms"));
    std::vector<std::int64_t> latency_us;
    for (auto& [created, finished] : times)
        if (!finished.empty() && to_i64(finished) > 0)
            latency_us.push_back((to_i64(finished) - to_i64(created)) * 1000);
    w.clear();
    remove_keys(p.c, p.base);

    const double rate = static_cast<double>(done) / seconds;
    const double ref_cpu0 = server_cpu(p.c.ioc, p.c.conn);
    const auto reference = bullmq_jobs_per_s(env, sz.jobs);
    const double ref_cpu = server_cpu(p.c.ioc, p.c.conn) - ref_cpu0;
    const auto per_job_us = [&](double cpu_s) {
        return static_cast<long>(cpu_s * 1e6 / static_cast<double>(sz.jobs));
    };
    std::ostringstream json;
    json << "{\"bench\":\"jobs_throughput\",\"worker_processes\":" << worker_processes
         << ",\"concurrency_per_process\":" << worker_concurrency << ",\"function\":\"no-op\""
         << ",\"jobs\":" << sz.jobs << ",\"enqueue_in_flight\":" << enqueue_in_flight
         << ",\"seconds\":" << seconds << ",\"succeeded\":" << done
         << ",\"jobs_per_s\":" << static_cast<long>(rate)
         << ",\"enqueue_per_s\":" << static_cast<long>(static_cast<double>(sz.jobs) / enqueue_s)
         << ",\"latency_p50_ms\":" << percentile_ms(latency_us, 0.50)
         << ",\"latency_p99_ms\":" << percentile_ms(latency_us, 0.99)
         << ",\"latency_max_ms\":" << percentile_ms(latency_us, 1.0)
         << ",\"enqueue_failures\":" << failures
         << ",\"server_cpu_us_per_job\":" << per_job_us(cpu)
         << ",\"server_cpu_share\":" << cpu / seconds
         << ",\"target_jobs_per_s\":" << static_cast<long>(target_jobs_per_s)
         << ",\"ratio_to_target\":" << rate / target_jobs_per_s
         << ",\"reference\":\"BullMQ " << worker_processes << " worker processes x "
         << worker_concurrency << ", same jobs, same server, this run\"";
    if (reference)
        json << ",\"reference_jobs_per_s\":" << static_cast<long>(*reference)
             << ",\"reference_server_cpu_us_per_job\":" << per_job_us(ref_cpu)
             << ",\"ratio\":" << rate / *reference << "}";
    else
        json << ",\"reference_jobs_per_s\":null,\"reference_note\":\"run bench/bullmq/install "
                "(npm) for it\"}";
    std::cout << json.str() << std::endl;
    return done == static_cast<std::int64_t>(sz.jobs) && failures == 0 ? 0 : 1;
}

int bench_cron(const bench_env& env) {
    const std::string name = "bench-cron-" + env.run_tag;
    client c(env.cfg);
    auto w = start_workers(cron_nodes, "cron", env, name, c.ioc);
    const auto end = clock_type::now() + std::chrono::seconds(sz.cron_seconds);
    run_until(c.ioc, end, [&] {
        for (auto& p : w) p->drain();
        return false;
    });
    // Let the last occurrence's run print before the workers go.
    c.ioc.run_for(300ms);
    std::map<std::int64_t, int> runs;  // occurrence -> runs
    std::vector<std::int64_t> lateness_us;
    int bad_lines = 0, retried = 0;
    for (auto& p : w) {
        p->drain();
        std::istringstream in(p->out);
        std::string word;
        long long occ = 0, start = 0;
        unsigned attempt = 0;
        std::string line;
        while (std::getline(in, line)) {
            if (line == "ready") continue;
            std::istringstream l(line);
            if (!(l >> word >> occ >> start >> attempt) || word != "run" || occ <= 0) {
                ++bad_lines;
                continue;
            }
            ++runs[occ];
            if (attempt > 1) ++retried;
            lateness_us.push_back((start - occ) * 1000);
        }
    }
    w.clear();
    remove_keys(c, "redcoord:jobs:{" + name + "}");

    int duplicates = 0, missed = 0;
    for (auto& [occ, n] : runs) duplicates += n > 1 ? n - 1 : 0;
    if (!runs.empty()) {
        const auto first = runs.begin()->first, last = runs.rbegin()->first;
        missed = static_cast<int>((last - first) / 1000 + 1) - static_cast<int>(runs.size());
    }
    int runs_total = 0;
    for (auto& [occ, n] : runs) runs_total += n;
    std::ostringstream json;
    json << "{\"bench\":\"jobs_cron\",\"nodes\":" << cron_nodes
         << ",\"cron\":\"* * * * * *\",\"seconds\":" << sz.cron_seconds
         << ",\"occurrences\":" << runs.size() << ",\"runs\":" << runs_total
         << ",\"duplicates\":" << duplicates << ",\"missed\":" << missed << ",\"exactly_once\":"
         << (duplicates == 0 && missed == 0 && !runs.empty() ? "true" : "false")
         << ",\"lateness_p50_ms\":" << percentile_ms(lateness_us, 0.50)
         << ",\"lateness_p99_ms\":" << percentile_ms(lateness_us, 0.99)
         << ",\"lateness_max_ms\":" << percentile_ms(lateness_us, 1.0)
         << ",\"retried_runs\":" << retried << ",\"bad_lines\":" << bad_lines << "}";
    std::cout << json.str() << std::endl;
    const auto expected = static_cast<std::size_t>(std::max(1, sz.cron_seconds - 3));
    return duplicates == 0 && missed == 0 && runs.size() >= expected && bad_lines == 0 ? 0 : 1;
}

double used_memory(client& c) {
    return info_field(run(c.ioc, command_text(c.conn, {"INFO", "memory"})), "used_memory");
}

int bench_delayed(const bench_env& env) {
    const std::string name = "bench-delayed-" + env.run_tag;
    producer p(env, name);
    auto w = start_workers(worker_processes, "run", env, name, p.c.ioc);
    const double mem0 = used_memory(p.c);

    // How fast this process schedules, from a first slice, to put every run_at after the end
    // of the scheduling (with a margin): the lateness is then that of the job system, not of
    // this loop.
    std::size_t failures = 0;
    const std::size_t probe = std::min<std::size_t>(sz.delayed, 2000);
    const auto far = sys_clock::now() + 1h;
    auto make_far = [&](std::size_t) {
        return redcoord::job_request{.function = "noop", .payload = "0", .run_at = far};
    };
    const auto t0 = clock_type::now();
    auto probe_ids = run(p.c.ioc, enqueue_all(p.sched, probe, make_far, failures));
    const double probe_s = seconds_since(t0);
    const double rate = static_cast<double>(probe) / std::max(probe_s, 1e-3);
    const auto rest_s = static_cast<double>(sz.delayed - probe) / rate;
    const auto base = sys_clock::now() + milliseconds(static_cast<long>(rest_s * 1300) + 1000);
    const auto spread = sz.spread;
    const std::size_t rest = sz.delayed - probe;
    auto make = [&](std::size_t i) {
        const auto at =
            base + milliseconds(
                       rest ? spread.count() * static_cast<long>(i) / static_cast<long>(rest) : 0);
        return redcoord::job_request{
            .function = "noop", .payload = std::to_string(unix_ms(at)), .run_at = at};
    };
    auto ids = run(p.c.ioc, enqueue_all(p.sched, rest, make, failures));
    const double schedule_s = seconds_since(t0);
    const auto scheduled_at = sys_clock::now();
    const double mem1 = used_memory(p.c);
    // The probe's jobs are due in an hour: bring them in line with the others (one request).
    {
        redcoord::request req;
        for (std::size_t i = 0; i < probe_ids.size(); ++i) {
            const auto at =
                unix_ms(base + spread * static_cast<long>(i) / static_cast<long>(probe));
            req.push("HSET", p.base + ":job:" + probe_ids[i], "payload", std::to_string(at));
            req.push("ZADD", p.base + ":delayed", at, probe_ids[i]);
        }
        run(p.c.ioc, [&]() -> asio::awaitable<int> {
            redcoord::diagnostics diag;
            auto [ec, n] = co_await p.c.conn.async_exec(req, redcoord::ignore, diag, nothrow);
            redcoord::throw_on_error(ec, diag);
            co_return 0;
        }());
    }
    ids.insert(ids.end(), probe_ids.begin(), probe_ids.end());

    const std::string done_key = p.base + ":state:succeeded";
    std::int64_t done = 0;
    const auto deadline = clock_type::now() + std::chrono::seconds(60 + sz.delayed / 500) + spread;
    while (clock_type::now() < deadline) {
        done = llen(p.c, done_key);
        if (done >= static_cast<std::int64_t>(sz.delayed)) break;
        p.c.ioc.run_for(20ms);
    }
    auto fields = run(p.c.ioc, fields_of(p.c.conn, p.base, ids, "started_ms", "payload"));
    std::vector<std::int64_t> lateness_us;
    std::size_t early = 0;
    for (auto& [started, due] : fields) {
        if (to_i64(started) <= 0) continue;
        const auto late = to_i64(started) - to_i64(due);
        if (late < 0) ++early;
        lateness_us.push_back(late * 1000);
    }
    // Jobs that took more than one attempt (a lease that lapsed, for a no-op), and why.
    auto tries = run(p.c.ioc, fields_of(p.c.conn, p.base, ids, "attempts", "error"));
    std::size_t reattempted = 0;
    std::map<std::string, std::size_t> why;
    for (auto& [attempts, err] : tries)
        if (to_i64(attempts) > 1) {
            ++reattempted;
            ++why[err.substr(0, err.find(" on node"))];
        }
    w.clear();
    remove_keys(p.c, p.base);

    std::ostringstream json;
    json << "{\"bench\":\"jobs_delayed\",\"jobs\":" << sz.delayed
         << ",\"worker_processes\":" << worker_processes
         << ",\"concurrency_per_process\":" << worker_concurrency
         << ",\"spread_ms\":" << spread.count() << ",\"schedule_seconds\":" << schedule_s
         << ",\"schedule_per_s\":"
         << static_cast<long>(static_cast<double>(sz.delayed) / schedule_s)
         << ",\"first_due_after_scheduled_ms\":"
         << std::chrono::duration_cast<milliseconds>(base - scheduled_at).count()
         << ",\"used_memory_before\":" << static_cast<long>(mem0)
         << ",\"used_memory_after\":" << static_cast<long>(mem1) << ",\"bytes_per_job\":"
         << static_cast<long>((mem1 - mem0) / static_cast<double>(sz.delayed))
         << ",\"ran\":" << done << ",\"early\":" << early
         << ",\"lateness_p50_ms\":" << percentile_ms(lateness_us, 0.50)
         << ",\"lateness_p99_ms\":" << percentile_ms(lateness_us, 0.99)
         << ",\"lateness_max_ms\":" << percentile_ms(lateness_us, 1.0)
         << ",\"reattempted\":" << reattempted << ",\"reattempt_errors\":{";
    for (auto it = why.begin(); it != why.end(); ++it)
        json << (it == why.begin() ? "" : ",") << "\"" << it->first << "\":" << it->second;
    json << "},\"enqueue_failures\":" << failures << "}";
    std::cout << json.str() << std::endl;
    return done == static_cast<std::int64_t>(sz.delayed) && early == 0 && failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 6 && std::string(argv[1]) == "--worker") {
        try {
            return worker_main(argv[2], argv[3], argv[4], argv[5]);
        } catch (const std::exception& e) {
            std::cerr << "jobs worker: " << e.what() << "\n";
            return 1;
        }
    }
    // Sizes out of the arguments; what is left names the phases.
    std::vector<char*> rest{argv[0]};
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a.rfind("--", 0) == 0 && i + 1 < argc) {
            const long v = std::atol(argv[++i]);
            if (v <= 0) {
                std::cerr << "jobs: " << a << " " << argv[i] << ": not a positive number\n";
                return 2;
            }
            if (a == "--jobs")
                sz.jobs = static_cast<std::size_t>(v);
            else if (a == "--cron-seconds")
                sz.cron_seconds = static_cast<int>(v);
            else if (a == "--delayed")
                sz.delayed = static_cast<std::size_t>(v);
            else if (a == "--spread-ms")
                sz.spread = milliseconds(v);
            else {
                std::cerr << "jobs: unknown option " << a << "\n";
                return 2;
            }
        } else {
            rest.push_back(argv[i]);
        }
    }
    return run_phases(
        "jobs", static_cast<int>(rest.size()), rest.data(),
        {{"throughput", bench_throughput}, {"cron", bench_cron}, {"delayed", bench_delayed}});
}
