// Lock benchmarks, one JSON line per figure:
// - uncontended: 100 coroutines, each on its own lock, acquire + release pairs per second over
//   one connection; alongside, measured in the same run against the same server,
//   `redis-benchmark -c 1 -P 256` of a one-key EVALSHA of a trivial script (the server's ceiling
//   for Lua calls) and the ratio of our lock operations (2 per pair) to it. The operations of
//   one executor turn share a script call: the script calls and operations per call are shown;
// - contended: 50 coroutines on one lock for 10 s: acquisitions and owner changes per second,
//   wait p50/p99/max, and Redis commands per acquisition from INFO commandstats (the commands
//   the client sent, and every call including those made inside the scripts);
// - processes: 4 processes x 10 coroutines on one lock for 10 s (the default, non-fair lock):
//   acquisitions per second, each process's share, wait p99 and max over all of them. A
//   process hands a busy lock to its own waiters (local handoff) only so long while another
//   waits; targets: no process below 10% of the acquisitions, wait max <= 100 ms;
// - tracing: the uncontended loop with tracing off (the reference), with every switch on and
//   a sink that counts, and with metrics attached: pairs per second of each and the ratios;
// - watchdog: 10,000 held locks (TTL 3 s, renewed every second) for 20 s: the process's CPU
//   seconds per minute and how late the renewals were.
//
//   build/bench/locks [uncontended|contended|processes|tracing|watchdog ...]
// Uses REDIS_URL when set; otherwise starts a throwaway redis-server on a free loopback port.
#include <redcoord/redcoord.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "bench_support.hpp"
#include "redis_cluster.hpp"
#include <sys/wait.h>
#include <unistd.h>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using namespace redcoord::bench;
using std::chrono::milliseconds;

namespace {

// ---- uncontended ----------------------------------------------------------------------------

asio::awaitable<void> uncontended_worker(redcoord::lock_provider& locks, std::string name,
                                         const bool& stop, std::uint64_t& pairs,
                                         std::uint64_t& failures) {
    const redcoord::acquire_options opts;
    while (!stop && failures < 1000) {
        auto [ec, l] = co_await locks.async_acquire(name, opts, nothrow);
        if (ec) {
            ++failures;
            continue;
        }
        auto [rec] = co_await l.async_release(nothrow);
        if (rec) ++failures;
        ++pairs;
    }
}

// Starts `coroutines` uncontended workers, each on its own lock `<prefix><i>`; each counts
// done when it ends.
void spawn_uncontended(asio::io_context& ioc, redcoord::lock_provider& locks,
                       const std::string& prefix, int coroutines, const bool& stop,
                       std::uint64_t& pairs, std::uint64_t& failures, int& done) {
    for (int i = 0; i < coroutines; ++i)
        asio::co_spawn(ioc,
                       uncontended_worker(locks, prefix + std::to_string(i), stop, pairs,
                                          failures),
                       [&done](std::exception_ptr) { ++done; });
}

// EVALSHA calls per second of the script `sha` on one key, as redis-benchmark reports them.
std::optional<double> redis_benchmark_evalsha(const endpoint_info& ep, const std::string& sha,
                                              long n) {
    const std::string call = "EVALSHA " + sha + " 1 bench:evalsha";
    return rate_of(redis_benchmark(ep, "-c 1 -P 256 -n " + std::to_string(n) + " " + call), call);
}

int bench_uncontended(const bench_env& env) {
    constexpr int coroutines = 100;
    const auto measure = 3s;
    client c(env.cfg);
    redcoord::session s(c.conn, {.node_id = "bench"});
    redcoord::lock_provider locks(s);

    bool stop = false;
    std::uint64_t pairs = 0, failures = 0;
    int done = 0;
    spawn_uncontended(c.ioc, locks, "bench:uncontended:", coroutines, stop, pairs, failures, done);
    c.ioc.run_for(500ms);  // warm up

    run(c.ioc, command_text(c.conn, {"CONFIG", "RESETSTAT"}));
    const auto server_cpu0 = server_cpu(c.ioc, c.conn);
    const auto pairs0 = pairs;
    const auto usage0 = c.conn.get_usage();
    const auto cpu0 = cpu_seconds();
    const auto t0 = clock_type::now();
    c.ioc.run_for(measure);
    const double secs = seconds_since(t0);
    const auto cpu = cpu_seconds() - cpu0;
    const auto measured = pairs - pairs0;
    const auto usage1 = c.conn.get_usage();
    const auto server_cpu1 = server_cpu(c.ioc, c.conn);
    const auto ours =
        parse_commandstats(run(c.ioc, command_text(c.conn, {"INFO", "commandstats"})));
    stop = true;
    run_until(c.ioc, [&] { return done == coroutines; });

    const double pairs_per_s = static_cast<double>(measured) / secs;
    const double client_cpu_share = cpu / secs;
    const double server_cpu_share = (server_cpu1 - server_cpu0) / secs;
    const auto writes = usage1.writes - usage0.writes;
    const auto commands = usage1.commands_written - usage0.commands_written;
    const auto script_calls = ours.count("evalsha") ? ours.at("evalsha").calls : 0;

    // The reference: the server's ceiling for one-key script calls over one connection.
    const std::string sha = run(c.ioc, command_text(c.conn, {"SCRIPT", "LOAD", "return 1"}));
    const long ref_calls = std::max<long>(200000, static_cast<long>(2 * pairs_per_s * 2));
    run(c.ioc, command_text(c.conn, {"CONFIG", "RESETSTAT"}));
    const auto reference = redis_benchmark_evalsha(env.ep, sha, ref_calls);
    const auto theirs =
        parse_commandstats(run(c.ioc, command_text(c.conn, {"INFO", "commandstats"})));

    std::ostringstream json;
    json << "{\"bench\":\"locks_uncontended\",\"coroutines\":" << coroutines
         << ",\"seconds\":" << secs << ",\"pairs\":" << measured
         << ",\"pairs_per_s\":" << static_cast<long>(pairs_per_s) << ",\"script_calls_per_s\":"
         << static_cast<long>(static_cast<double>(script_calls) / secs)
         << ",\"operations_per_script_call\":"
         << (script_calls ? 2.0 * static_cast<double>(measured) / static_cast<double>(script_calls)
                          : 0.0)
         << ",\"commands_per_write\":"
         << (writes ? static_cast<double>(commands) / static_cast<double>(writes) : 0.0)
         << ",\"client_cpu_share\":" << client_cpu_share
         << ",\"server_cpu_share\":" << server_cpu_share
         << ",\"client_cpu_us_per_pair\":" << cpu * 1e6 / static_cast<double>(measured)
         << ",\"server_cpu_us_per_pair\":"
         << (server_cpu1 - server_cpu0) * 1e6 / static_cast<double>(measured)
         << ",\"server_us_per_script_call\":" << usec_per_call(ours, "evalsha")
         << ",\"failures\":" << failures << ",\"target_pairs_per_s\":150000";
    if (reference) {
        json << ",\"reference\":\"redis-benchmark -c 1 -P 256 EVALSHA <return 1> 1 key\""
             << ",\"reference_calls_per_s\":" << static_cast<long>(*reference)
             << ",\"reference_server_us_per_script\":" << usec_per_call(theirs, "evalsha")
             << ",\"ratio\":" << 2 * pairs_per_s / *reference;
    } else {
        json << ",\"reference\":null";
    }
    json << "}";
    std::cout << json.str() << std::endl;
    return failures == 0 ? 0 : 1;
}

// ---- tracing -------------------------------------------------------------------------------

// Pairs per second of the uncontended loop on a session made with o (metrics attached when m).
double traced_pairs_per_s(const bench_env& env, const redcoord::session_options& o,
                          redcoord::metrics* m) {
    constexpr int coroutines = 100;
    client c(env.cfg);
    redcoord::session s(c.conn, o);
    if (m) m->attach(s);
    redcoord::lock_provider locks(s);
    bool stop = false;
    std::uint64_t pairs = 0, failures = 0;
    int done = 0;
    spawn_uncontended(c.ioc, locks, "bench:traced:", coroutines, stop, pairs, failures, done);
    c.ioc.run_for(300ms);  // warm up
    const auto pairs0 = pairs;
    const auto t0 = clock_type::now();
    c.ioc.run_for(2s);
    const double rate = static_cast<double>(pairs - pairs0) / seconds_since(t0);
    stop = true;
    run_until(c.ioc, [&] { return done == coroutines; });
    return failures == 0 ? rate : 0;
}

// What tracing costs on the uncontended loop: off (the reference), every switch on with a sink
// that only counts, and metrics attached; three rounds each, interleaved, best of each kept.
int bench_tracing(const bench_env& env) {
    redcoord::session_options off;
    off.node_id = "bench";
    std::uint64_t events = 0;
    redcoord::session_options on = off;
    on.trace.lock_tracing = on.trace.leader_election_logging = on.trace.coordination_events = true;
    on.trace.sink = [&events](const redcoord::trace_event&) { ++events; };
    double best_off = 0, best_on = 0, best_metrics = 0;
    for (int round = 0; round < 3; ++round) {
        best_off = std::max(best_off, traced_pairs_per_s(env, off, nullptr));
        best_on = std::max(best_on, traced_pairs_per_s(env, on, nullptr));
        redcoord::metrics m;
        best_metrics = std::max(best_metrics, traced_pairs_per_s(env, off, &m));
    }
    std::cout << "{\"bench\":\"locks_tracing\",\"coroutines\":100"
              << ",\"pairs_per_s_traced\":" << static_cast<long>(best_on)
              << ",\"pairs_per_s_metrics\":" << static_cast<long>(best_metrics)
              << ",\"events\":" << events
              << ",\"reference\":\"the same loop with tracing off, same run\""
              << ",\"reference_pairs_per_s\":" << static_cast<long>(best_off)
              << ",\"ratio_traced\":" << (best_off > 0 ? best_on / best_off : 0)
              << ",\"ratio_metrics\":" << (best_off > 0 ? best_metrics / best_off : 0) << "}"
              << std::endl;
    return best_off > 0 && best_on > 0 && best_metrics > 0 ? 0 : 1;
}

// ---- contended ------------------------------------------------------------------------------

struct contended_state {
    bool stop = false;
    bool measuring = false;
    int holder = -1;
    std::uint64_t acquisitions = 0, owner_changes = 0, failures = 0;
    std::vector<std::int64_t> waits_us;
};

asio::awaitable<void> contended_worker(redcoord::lock_provider& locks, int id,
                                       contended_state& st) {
    redcoord::acquire_options opts;
    opts.wait = 30s;
    while (!st.stop && st.failures < 1000) {
        const auto t0 = clock_type::now();
        auto [ec, l] = co_await locks.async_acquire("bench:contended", opts, nothrow);
        if (ec) {
            ++st.failures;
            continue;
        }
        if (st.measuring) {
            st.waits_us.push_back(
                std::chrono::duration_cast<std::chrono::microseconds>(clock_type::now() - t0)
                    .count());
            ++st.acquisitions;
            if (st.holder != id) ++st.owner_changes;
        }
        st.holder = id;
        auto [rec] = co_await l.async_release(nothrow);
        if (rec) ++st.failures;
    }
}

int bench_contended(const bench_env& env) {
    constexpr int coroutines = 50;
    const auto measure = 10s;
    client c(env.cfg);
    redcoord::session s(c.conn, {.node_id = "bench"});
    redcoord::lock_provider locks(s);

    contended_state st;
    st.waits_us.reserve(1 << 20);
    int done = 0;
    for (int i = 0; i < coroutines; ++i)
        asio::co_spawn(c.ioc, contended_worker(locks, i, st), [&](std::exception_ptr) { ++done; });
    c.ioc.run_for(500ms);  // warm up: every coroutine is waiting by now

    // The window: from CONFIG RESETSTAT to INFO commandstats, both on the same connection, so
    // the server counts exactly what was sent in between.
    run(c.ioc, command_text(c.conn, {"CONFIG", "RESETSTAT"}));
    const auto usage0 = c.conn.get_usage();
    const auto t0 = clock_type::now();
    st.measuring = true;
    c.ioc.run_for(measure);
    st.measuring = false;
    const double secs = seconds_since(t0);
    const auto usage1 = c.conn.get_usage();
    const auto info = run(c.ioc, command_text(c.conn, {"INFO", "commandstats"}));
    st.stop = true;
    run_until(c.ioc, [&] { return done == coroutines; });

    const auto stats = parse_commandstats(info);
    // Commands a client sends at top level (scripts cannot call these, or ours do not), and
    // the bench's own window markers, which are not the lock's cost.
    static const char* top_level[] = {"evalsha",    "eval",         "evalsha_ro", "eval_ro",
                                      "subscribe",  "unsubscribe",  "psubscribe", "punsubscribe",
                                      "ssubscribe", "sunsubscribe", "ping",       "hello",
                                      "multi",      "exec"};
    long client_calls = 0, all_calls = 0;
    for (const auto& [name, st] : stats) {
        if (window_marker(name)) continue;
        all_calls += st.calls;
        for (const char* t : top_level)
            if (name == t) client_calls += st.calls;
    }
    const double acq = static_cast<double>(std::max<std::uint64_t>(st.acquisitions, 1));
    const auto commands_sent = usage1.commands_written - usage0.commands_written;
    auto lib = s.get_lock_statistics();

    std::ostringstream json;
    json << "{\"bench\":\"locks_contended\",\"coroutines\":" << coroutines
         << ",\"seconds\":" << secs << ",\"acquisitions\":" << st.acquisitions
         << ",\"acquisitions_per_s\":" << static_cast<long>(st.acquisitions / secs)
         << ",\"owner_changes_per_s\":" << static_cast<long>(st.owner_changes / secs)
         << ",\"wait_p50_ms\":" << percentile_ms(st.waits_us, 0.50)
         << ",\"wait_p99_ms\":" << percentile_ms(st.waits_us, 0.99)
         << ",\"wait_max_ms\":" << percentile_ms(st.waits_us, 1.0)
         << ",\"client_commands_per_acquisition\":" << client_calls / acq
         << ",\"all_calls_per_acquisition\":" << all_calls / acq
         << ",\"commands_written_per_acquisition\":" << static_cast<double>(commands_sent) / acq
         << ",\"evalsha_calls\":" << (stats.count("evalsha") ? stats.at("evalsha").calls : 0)
         << ",\"library_wait_p99_ms\":" << lib.wait_p99.count() / 1000.0
         << ",\"failures\":" << st.failures
         << ",\"targets\":{\"wait_p99_ms\":20,\"wait_max_ms\":100,\"commands_per_acquisition\":4}"
         << "}";
    std::cout << json.str() << std::endl;
    return st.failures == 0 ? 0 : 1;
}

// ---- processes ------------------------------------------------------------------------------

// One process of the "processes" phase: `coroutines` coroutines acquire and release `key`
// for warm-up + measure; the waits of acquisitions made in the measured window go to `out`
// (one number of microseconds per line), then "failures N".
int processes_child(const bench_env& env, const std::string& key, int index, int coroutines,
                    milliseconds warmup, milliseconds measure, const std::string& out) {
    client c(env.cfg);
    // One node id shared by every process (as processes given one by mistake do): each
    // session's own id tells them apart for the bounded local handoff.
    (void)index;
    redcoord::session_options so;
    so.node_id = "bench-host";
    redcoord::session s(c.conn, so);
    redcoord::lock_provider locks(s);
    contended_state st;
    st.waits_us.reserve(1 << 20);
    int done = 0;
    auto worker = [&](int id) -> asio::awaitable<void> {
        redcoord::acquire_options opts;
        opts.wait = 30s;
        while (!st.stop && st.failures < 1000) {
            const auto t0 = clock_type::now();
            auto [ec, l] = co_await locks.async_acquire(key, opts, nothrow);
            if (ec) {
                ++st.failures;
                continue;
            }
            if (st.measuring)
                st.waits_us.push_back(
                    std::chrono::duration_cast<std::chrono::microseconds>(clock_type::now() - t0)
                        .count());
            st.holder = id;
            auto [rec] = co_await l.async_release(nothrow);
            if (rec) ++st.failures;
        }
    };
    for (int i = 0; i < coroutines; ++i)
        asio::co_spawn(c.ioc, worker(i), [&](std::exception_ptr) { ++done; });
    c.ioc.run_for(warmup);
    st.measuring = true;
    c.ioc.run_for(measure);
    st.measuring = false;
    st.stop = true;
    run_until(c.ioc, [&] { return done == coroutines; });
    std::ofstream f(out);
    for (auto w : st.waits_us) f << w << "\n";
    f << "failures " << st.failures << "\n";
    return f ? 0 : 1;
}

int bench_processes(const bench_env& env) {
    constexpr int processes = 4, coroutines = 10;
    const milliseconds warmup = 1s, measure = 10s;
    const std::string key = "bench:processes:" + env.run_tag;
    const auto dir = std::filesystem::temp_directory_path() /
                     ("redcoord-bench-processes-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    std::vector<pid_t> children;
    std::cout.flush();
    for (int i = 0; i < processes; ++i) {
        const auto out = (dir / std::to_string(i)).string();
        const pid_t pid = fork();
        if (pid < 0) {
            std::perror("fork");
            return 1;
        }
        if (pid == 0) {
            int rc = 1;
            try {
                rc = processes_child(env, key, i, coroutines, warmup, measure, out);
            } catch (const std::exception& e) {
                std::cerr << "processes: child " << i << ": " << e.what() << std::endl;
            }
            std::_Exit(rc);  // no destructors: the parent owns the server
        }
        children.push_back(pid);
    }
    bool ok = true;
    for (auto pid : children) {
        int status = 0;
        waitpid(pid, &status, 0);
        ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    std::vector<std::int64_t> all;
    std::vector<std::size_t> counts;
    long failures = 0;
    for (int i = 0; i < processes; ++i) {
        std::ifstream f(dir / std::to_string(i));
        std::string line;
        std::size_t n = 0;
        while (std::getline(f, line)) {
            if (line.rfind("failures ", 0) == 0) {
                failures += std::stol(line.substr(9));
                continue;
            }
            all.push_back(std::stoll(line));
            ++n;
        }
        counts.push_back(n);
    }
    std::filesystem::remove_all(dir);
    const double secs = std::chrono::duration<double>(measure).count();
    const double total = static_cast<double>(std::max<std::size_t>(all.size(), 1));
    double min_share = 1.0;
    std::ostringstream shares;
    for (std::size_t i = 0; i < counts.size(); ++i) {
        const double share = static_cast<double>(counts[i]) / total;
        min_share = std::min(min_share, share);
        shares << (i ? "," : "") << share;
    }
    std::ostringstream json;
    json << "{\"bench\":\"locks_processes\",\"processes\":" << processes
         << ",\"coroutines_per_process\":" << coroutines << ",\"seconds\":" << secs
         << ",\"acquisitions\":" << all.size()
         << ",\"acquisitions_per_s\":" << static_cast<long>(all.size() / secs) << ",\"shares\":["
         << shares.str() << "],\"min_share\":" << min_share
         << ",\"wait_p50_ms\":" << percentile_ms(all, 0.50)
         << ",\"wait_p99_ms\":" << percentile_ms(all, 0.99)
         << ",\"wait_max_ms\":" << percentile_ms(all, 1.0) << ",\"failures\":" << failures
         << ",\"targets\":{\"min_share\":0.1,\"wait_max_ms\":100}}";
    std::cout << json.str() << std::endl;
    return ok && failures == 0 ? 0 : 1;
}

// ---- watchdog -------------------------------------------------------------------------------

struct watchdog_state {
    bool stop = false;
    std::vector<redcoord::lease> held;
    // Per lease, as last sampled.
    std::vector<std::uint64_t> renewals;
    std::vector<clock_type::time_point> valid_until;
    milliseconds interval{0};
    double max_send_lag_ms = 0;
    double min_remaining_ms = 1e9;
    std::int64_t min_pttl = -1;
    std::uint64_t lost = 0;
};

// Every lease's renewals() and valid_until(): a renewal moves valid_until to its send time +
// TTL - drift, so the step between two renewals is the time between their sends, which the
// watchdog schedules `interval` apart. The excess is how late the renewal was sent.
void sample_leases(watchdog_state& st) {
    const auto now = clock_type::now();
    for (std::size_t i = 0; i < st.held.size(); ++i) {
        auto& l = st.held[i];
        if (!l.is_held()) {
            ++st.lost;
            continue;
        }
        const auto r = l.renewals();
        const auto vu = l.valid_until();
        if (r > st.renewals[i]) {
            const double step =
                std::chrono::duration<double, std::milli>(vu - st.valid_until[i]).count() /
                static_cast<double>(r - st.renewals[i]);
            st.max_send_lag_ms =
                std::max(st.max_send_lag_ms,
                         step - std::chrono::duration<double, std::milli>(st.interval).count());
        }
        st.renewals[i] = r;
        st.valid_until[i] = vu;
        st.min_remaining_ms = std::min(st.min_remaining_ms,
                                       std::chrono::duration<double, std::milli>(vu - now).count());
    }
}

asio::awaitable<void> lease_sampler(watchdog_state& st) {
    asio::steady_timer t(co_await asio::this_coro::executor);
    while (!st.stop) {
        t.expires_after(200ms);
        co_await t.async_wait(nothrow);
        sample_leases(st);
    }
}

// The server's view: PTTL of a sample of the keys, 50 times a second. Right before a renewal
// a key has TTL - interval left; any less is lateness as Redis saw it (within the period).
asio::awaitable<void> pttl_sampler(redcoord::connection& conn, watchdog_state& st,
                                   std::vector<std::string> keys) {
    asio::steady_timer t(co_await asio::this_coro::executor);
    redcoord::request req;
    for (const auto& k : keys) req.push("PTTL", k);
    std::vector<std::int64_t> pttls(keys.size());
    while (!st.stop) {
        t.expires_after(20ms);
        co_await t.async_wait(nothrow);
        redcoord::generic_response reply;
        auto [ec, n] = co_await conn.async_exec(req, reply, nothrow);
        if (ec) continue;
        for (const auto& node : reply) {
            const auto v = std::atoll(node.value.c_str());
            if (v >= 0 && (st.min_pttl < 0 || v < st.min_pttl)) st.min_pttl = v;
        }
    }
}

int bench_watchdog(const bench_env& env) {
    constexpr int count = 10000;
    const auto ttl = 3s;
    const auto measure = 20s;
    client c(env.cfg);
    redcoord::session s(c.conn, {.node_id = "bench"});
    redcoord::lock_provider locks(s);

    watchdog_state st;
    st.held.resize(count);
    int acquired = 0, failures = 0;
    for (int i = 0; i < count; ++i) {
        auto op = [](redcoord::lock_provider& locks, watchdog_state& st, int i, int& acquired,
                     int& failures, milliseconds ttl) -> asio::awaitable<void> {
            redcoord::acquire_options opts;
            opts.ttl = ttl;
            auto [ec, l] =
                co_await locks.async_acquire("bench:watchdog:" + std::to_string(i), opts, nothrow);
            if (ec) ++failures;
            st.held[static_cast<std::size_t>(i)] = std::move(l);
            ++acquired;
        };
        asio::co_spawn(c.ioc, op(locks, st, i, acquired, failures, ttl), asio::detached);
    }
    const auto acquire_start = clock_type::now();
    run_until(c.ioc, [&] { return acquired == count; });
    const double acquire_secs = seconds_since(acquire_start);

    st.interval = std::chrono::duration_cast<milliseconds>(ttl * s.options().renew_fraction);
    st.renewals.resize(count);
    st.valid_until.resize(count);
    for (std::size_t i = 0; i < st.held.size(); ++i) {
        st.renewals[i] = st.held[i].renewals();
        st.valid_until[i] = st.held[i].valid_until();
    }
    std::vector<std::string> sample_keys;
    for (int i = 0; i < count; i += count / 20)
        sample_keys.push_back(s.keys().lock("bench:watchdog:" + std::to_string(i)));

    const auto renewals0 = s.get_lock_statistics().renewals;
    const auto usage0 = c.conn.get_usage();
    const auto cpu0 = cpu_seconds();
    const auto t0 = clock_type::now();
    int samplers = 0;
    asio::co_spawn(c.ioc, lease_sampler(st), [&](std::exception_ptr) { ++samplers; });
    asio::co_spawn(c.ioc, pttl_sampler(c.conn, st, sample_keys),
                   [&](std::exception_ptr) { ++samplers; });
    c.ioc.run_for(measure);
    const double secs = seconds_since(t0);
    const double cpu = cpu_seconds() - cpu0;
    const auto usage1 = c.conn.get_usage();
    const auto renewals = s.get_lock_statistics().renewals - renewals0;
    st.stop = true;
    run_until(c.ioc, [&] { return samplers == 2; });
    sample_leases(st);
    const auto lost = s.get_lock_statistics().leases_lost;
    st.held.clear();  // released, scheduled
    c.ioc.run_for(1s);

    const double ttl_ms = static_cast<double>(ttl.count() * 1000);
    std::ostringstream json;
    json << "{\"bench\":\"locks_watchdog\",\"leases\":" << count
         << ",\"ttl_ms\":" << ttl.count() * 1000 << ",\"renew_interval_ms\":" << st.interval.count()
         << ",\"seconds\":" << secs << ",\"acquire_seconds\":" << acquire_secs
         << ",\"renewals\":" << renewals
         << ",\"renewals_per_s\":" << static_cast<long>(renewals / secs)
         << ",\"writes_per_s\":" << static_cast<long>((usage1.writes - usage0.writes) / secs)
         << ",\"cpu_seconds_per_minute\":" << cpu / secs * 60.0
         << ",\"max_send_lag_ms\":" << st.max_send_lag_ms
         << ",\"min_remaining_validity_ms\":" << st.min_remaining_ms
         << ",\"server_min_pttl_ms\":" << st.min_pttl << ",\"server_renewal_lag_ms\":"
         << (st.min_pttl >= 0 ? ttl_ms - static_cast<double>(st.interval.count()) -
                                    static_cast<double>(st.min_pttl)
                              : -1.0)
         << ",\"pttl_sample_period_ms\":20,\"leases_lost\":" << lost
         << ",\"acquire_failures\":" << failures << "}";
    std::cout << json.str() << std::endl;
    return failures == 0 && lost == 0 ? 0 : 1;
}

}  // namespace

// ---- cluster ---------------------------------------------------------------------------------

// The uncontended workload against one target, for `measure`: pairs/s, the server CPU seconds
// the target's masters spent meanwhile (server_cpu reads them) and the EVALSHA calls made.
struct cluster_run {
    double pairs_per_s = 0, server_cpu_us_per_pair = 0, calls_per_pair = 0,
           client_cpu_us_per_pair = 0;
    std::uint64_t failures = 0;
};

cluster_run run_uncontended(const redcoord::config& cfg, const std::function<double()>& server_cpu,
                            const std::function<double()>& evalsha_calls) {
    constexpr int coroutines = 100;
    client c(cfg);
    redcoord::session s(c.conn, {.node_id = "bench"});
    redcoord::lock_provider locks(s);
    bool stop = false;
    std::uint64_t pairs = 0, failures = 0;
    int done = 0;
    spawn_uncontended(c.ioc, locks, "bench:cluster:", coroutines, stop, pairs, failures, done);
    c.ioc.run_for(500ms);  // warm up
    const auto cpu0 = server_cpu();
    const auto calls0 = evalsha_calls();
    const auto pairs0 = pairs;
    const auto client0 = cpu_seconds();
    const auto t0 = clock_type::now();
    c.ioc.run_for(3s);
    const double secs = seconds_since(t0);
    const auto client = cpu_seconds() - client0;
    const auto measured = static_cast<double>(pairs - pairs0);
    const auto cpu = server_cpu() - cpu0;
    const auto calls = evalsha_calls() - calls0;
    stop = true;
    run_until(c.ioc, [&] { return done == coroutines; });
    cluster_run r;
    r.pairs_per_s = measured / secs;
    r.server_cpu_us_per_pair = measured > 0 ? cpu * 1e6 / measured : 0;
    r.client_cpu_us_per_pair = measured > 0 ? client * 1e6 / measured : 0;
    r.calls_per_pair = measured > 0 ? calls / measured : 0;
    r.failures = failures;
    return r;
}

// INFO of every master of a cluster, added up: CPU seconds, or EVALSHA calls.
double masters_sum(const redcoord::test::redis_cluster& cl, bool cpu) {
    double total = 0;
    for (auto port : cl.master_ports()) {
        const auto i = cl.index_of_port(port);
        if (cpu) {
            const auto info = cl.cli(i, {"INFO", "cpu"});
            total += info_field(info, "used_cpu_user") + info_field(info, "used_cpu_sys");
        } else {
            const auto info = cl.cli(i, {"INFO", "commandstats"});
            const auto at = info.find("cmdstat_evalsha:calls=");
            if (at != std::string::npos) total += std::atof(info.c_str() + at + 22);
        }
    }
    return total;
}

// Uncontended lock pairs on a loopback Redis Cluster (3 masters) beside the same workload on
// the single server, in the same run: pairs/s, server CPU per pair (all masters added up) and
// script calls per pair (the cost of splitting the batches by slot).
int bench_cluster(const bench_env& env) {
    client single_probe(env.cfg);
    auto single_cpu = [&] { return server_cpu(single_probe.ioc, single_probe.conn); };
    auto single_calls = [&] {
        const auto stats = parse_commandstats(
            run(single_probe.ioc, command_text(single_probe.conn, {"INFO", "commandstats"})));
        return stats.count("evalsha") ? static_cast<double>(stats.at("evalsha").calls) : 0.0;
    };
    const auto single = run_uncontended(env.cfg, single_cpu, single_calls);

    redcoord::test::redis_cluster_options o;
    o.replicas_per_master = 0;
    redcoord::test::redis_cluster cl(o);
    auto cfg = redcoord::parse_config(cl.seeds() + ",cluster=true");
    const auto clustered = run_uncontended(
        cfg, [&] { return masters_sum(cl, true); }, [&] { return masters_sum(cl, false); });

    std::ostringstream json;
    json << "{\"bench\":\"locks_cluster\",\"masters\":3,\"coroutines\":100"
         << ",\"pairs_per_s\":" << static_cast<long>(clustered.pairs_per_s)
         << ",\"server_cpu_us_per_pair\":" << clustered.server_cpu_us_per_pair
         << ",\"client_cpu_us_per_pair\":" << clustered.client_cpu_us_per_pair
         << ",\"script_calls_per_pair\":" << clustered.calls_per_pair
         << ",\"failures\":" << clustered.failures
         << ",\"single_server_pairs_per_s\":" << static_cast<long>(single.pairs_per_s)
         << ",\"single_server_cpu_us_per_pair\":" << single.server_cpu_us_per_pair
         << ",\"single_client_cpu_us_per_pair\":" << single.client_cpu_us_per_pair
         << ",\"single_script_calls_per_pair\":" << single.calls_per_pair
         << ",\"server_cpu_ratio\":"
         << (single.server_cpu_us_per_pair > 0
                 ? clustered.server_cpu_us_per_pair / single.server_cpu_us_per_pair
                 : 0.0)
         << ",\"target_server_cpu_ratio\":1.5}";
    std::cout << json.str() << std::endl;
    return clustered.failures == 0 && single.failures == 0 ? 0 : 1;
}

int main(int argc, char** argv) {
    return run_phases("locks", argc, argv,
                      {{"uncontended", bench_uncontended},
                       {"contended", bench_contended},
                       {"processes", bench_processes},
                       {"watchdog", bench_watchdog},
                       {"tracing", bench_tracing},
                       {"cluster", bench_cluster}});
}
