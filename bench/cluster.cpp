// Cluster figures, one JSON line each:
//   - failover: a leader process is killed with SIGKILL; time until a waiting candidate in this
//     process is elected, against the lease TTL (and how long after the lease's expiry);
//   - handover: time from async_resign to the waiting candidate's election (target < 50 ms);
//   - heartbeat CPU: 10,000 nodes hosted in this process; CPU time of this process per
//     heartbeat written (getrusage over several ticks), and writes per tick.
//
//   build/bench/cluster [failover_runs=5] [handover_runs=200] [nodes=10000] [ticks=5]
// Uses REDIS_URL when set; otherwise starts a throwaway redis-server on a free loopback port.
// The killed leader is this program started again as a child (--leader-child), by PID.
#include <redcoord/leader.hpp>
#include <redcoord/membership.hpp>
#include <redcoord/redcoord.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_support.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;
using namespace redcoord::bench;
using boost::system::error_code;
using std::chrono::milliseconds;
using steady = clock_type;

namespace {

// Nearest rank: the sample at q (0 to 1) of the sorted samples, rounded; 0 when empty.
double nearest_rank(std::vector<double> v, double q) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const auto i = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
    return v[std::min(i, v.size() - 1)];
}

double mean(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? 0 : s / static_cast<double>(v.size());
}

std::string fixed(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f", v);
    return buf;
}

asio::awaitable<void> sleep_for(milliseconds d) {
    asio::steady_timer t(co_await asio::this_coro::executor);
    t.expires_after(d);
    co_await t.async_wait(asio::use_awaitable);
}

// ---- the leader child ----------------------------------------------------------------------

// Campaigns for `name`, prints "elected <term>" and leads until killed.
int leader_child(const std::string& url, const std::string& name, milliseconds ttl,
                 milliseconds renew) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::alarm(120);
    asio::io_context ioc;
    redcoord::connection conn(ioc.get_executor());
    conn.async_run(redcoord::parse_config(url), asio::detached);
    redcoord::session_options so;
    so.node_id = "bench-child";
    redcoord::session s(conn, so);
    redcoord::leader_options lo;
    lo.leadership_timeout = ttl;
    lo.renewal_interval = renew;
    redcoord::leader_election election(s, lo);
    redcoord::lease held;
    election.async_campaign(name, [&](error_code ec, redcoord::lease l) {
        if (ec) {
            std::printf("error %s\n", ec.message().c_str());
            std::fflush(stdout);
            ioc.stop();
            return;
        }
        std::printf("elected %lld\n", static_cast<long long>(l.fencing_token()));
        std::fflush(stdout);
        held = std::move(l);
    });
    ioc.run();
    return 1;
}

// The child process (self_process): `cluster --leader-child <url> <name> <ttl> <renew>`.
struct child : self_process {
    child(const std::string& url, const std::string& name, milliseconds ttl, milliseconds renew)
        : self_process({"--leader-child", url, name, std::to_string(ttl.count()),
                        std::to_string(renew.count())}) {}

    // The first line, waiting up to `timeout`.
    asio::awaitable<std::optional<std::string>> line(milliseconds timeout) {
        const auto deadline = steady::now() + timeout;
        for (;;) {
            const bool open = drain();
            if (auto nl = out.find('\n'); nl != std::string::npos) co_return out.substr(0, nl);
            if (!open || steady::now() >= deadline) co_return std::nullopt;
            co_await sleep_for(2ms);
        }
    }
};

// ---- figures -------------------------------------------------------------------------------

asio::awaitable<std::string> failover(redcoord::session& s, const std::string& url, int runs) {
    constexpr auto ttl = 1000ms, renew = 300ms;
    redcoord::leader_options lo;
    lo.leadership_timeout = ttl;
    lo.renewal_interval = renew;
    redcoord::leader_election election(s, lo);
    std::vector<double> failover_ms, after_expiry_ms;
    int failures = 0;
    for (int r = 0; r < runs; ++r) {
        const std::string name = "bench-failover";
        child c(url, name, ttl, renew);
        auto line = co_await c.line(20s);
        if (!line || !line->starts_with("elected ")) {
            ++failures;
            continue;
        }
        // A candidate here, waiting; the kill lands at a random point of the renewal cycle.
        bool done = false;
        steady::time_point elected_at;
        error_code cec;
        redcoord::lease mine;
        election.async_campaign(name, [&](error_code ec, redcoord::lease l) {
            elected_at = steady::now();
            cec = ec;
            mine = std::move(l);
            done = true;
        });
        co_await sleep_for(milliseconds(200 + (std::rand() % 300)));
        // The lease's remaining TTL right before the kill: when it expires in Redis.
        redcoord::request req;
        req.push("PTTL", s.keys().leader(name));
        std::int64_t pttl = 0;
        auto [pec, n] = co_await s.get_connection().async_exec(req, pttl, nothrow);
        const auto killed_at = steady::now();
        c.kill_and_reap();
        while (!done) co_await sleep_for(1ms);
        if (pec || cec) {
            ++failures;
            continue;
        }
        failover_ms.push_back(ms_between(killed_at, elected_at));
        after_expiry_ms.push_back(ms_between(killed_at + milliseconds(pttl), elected_at));
        co_await election.async_resign(mine, nothrow);
    }
    std::ostringstream o;
    o << "{\"bench\":\"cluster_failover\",\"runs\":" << runs << ",\"failures\":" << failures
      << ",\"lease_ttl_ms\":" << ttl.count() << ",\"renewal_interval_ms\":" << renew.count()
      << ",\"failover_ms_min\":" << fixed(nearest_rank(failover_ms, 0))
      << ",\"failover_ms_median\":" << fixed(nearest_rank(failover_ms, 0.5))
      << ",\"failover_ms_max\":" << fixed(nearest_rank(failover_ms, 1))
      << ",\"failover_over_ttl_max\":"
      << fixed(nearest_rank(failover_ms, 1) / static_cast<double>(ttl.count()))
      << ",\"after_lease_expiry_ms_median\":" << fixed(nearest_rank(after_expiry_ms, 0.5))
      << ",\"after_lease_expiry_ms_max\":" << fixed(nearest_rank(after_expiry_ms, 1)) << "}";
    co_return o.str();
}

asio::awaitable<std::string> handover(redcoord::session& a, redcoord::session& b, int runs) {
    redcoord::leader_options lo;
    lo.leadership_timeout = 10s;  // only the resignation's push can elect the waiter in time
    lo.renewal_interval = 3s;
    redcoord::leader_election ea(a, lo), eb(b, lo);
    std::vector<double> ms;
    int failures = 0;
    for (int r = 0; r < runs; ++r) {
        auto& holder = r % 2 == 0 ? ea : eb;
        auto& waiter = r % 2 == 0 ? eb : ea;
        auto [ec, l] = co_await holder.async_campaign("bench-handover", nothrow);
        if (ec) {
            ++failures;
            continue;
        }
        bool done = false;
        steady::time_point elected_at;
        error_code wec;
        redcoord::lease next;
        waiter.async_campaign("bench-handover", [&](error_code ec, redcoord::lease nl) {
            elected_at = steady::now();
            wec = ec;
            next = std::move(nl);
            done = true;
        });
        co_await sleep_for(20ms);  // the waiter is subscribed and waiting by now
        const auto resigned_at = steady::now();
        holder.async_resign(l, [](error_code) {});
        while (!done) co_await sleep_for(1ms);
        if (wec) {
            ++failures;
            continue;
        }
        ms.push_back(ms_between(resigned_at, elected_at));
        co_await waiter.async_resign(next, nothrow);
    }
    const double p99 = nearest_rank(ms, 0.99);
    std::ostringstream o;
    o << "{\"bench\":\"cluster_handover\",\"runs\":" << runs << ",\"failures\":" << failures
      << ",\"handover_ms_mean\":" << fixed(mean(ms))
      << ",\"handover_ms_p50\":" << fixed(nearest_rank(ms, 0.5))
      << ",\"handover_ms_p99\":" << fixed(p99)
      << ",\"handover_ms_max\":" << fixed(nearest_rank(ms, 1)) << ",\"target_ms\":50"
      << ",\"target_met_p99\":" << (p99 < 50 ? "true" : "false") << "}";
    co_return o.str();
}

asio::awaitable<std::string> heartbeat_cpu(redcoord::connection& conn, redcoord::session& s,
                                           int nodes, int ticks) {
    constexpr auto interval = 1000ms;
    redcoord::membership_options mo;
    mo.heartbeat_interval = interval;
    mo.dead_check_interval = std::chrono::hours(1);  // heartbeats only
    redcoord::membership m(s, mo);
    int joined = 0, failed = 0;
    for (int i = 0; i < nodes; ++i) {
        m.async_join("bench-node-" + std::to_string(i), [&](error_code ec) {
            if (ec) ++failed;
            ++joined;
        });
    }
    while (joined < nodes) co_await sleep_for(5ms);
    // Start measuring between ticks.
    co_await sleep_for(interval / 2);
    const auto u0 = conn.get_usage();
    const double c0 = cpu_seconds() * 1e6;
    const auto t0 = steady::now();
    co_await sleep_for(interval * ticks);
    const double c1 = cpu_seconds() * 1e6;
    const auto t1 = steady::now();
    const auto u1 = conn.get_usage();
    const std::uint64_t per_tick = static_cast<std::uint64_t>(nodes) + 3;
    const auto commands = u1.commands_written - u0.commands_written;
    const auto written_ticks = commands / per_tick;
    const double heartbeats = static_cast<double>(written_ticks) * nodes;
    const auto writes = u1.writes - u0.writes;
    std::ostringstream o;
    o << "{\"bench\":\"cluster_heartbeat_cpu\",\"nodes\":" << nodes
      << ",\"heartbeat_interval_ms\":" << interval.count() << ",\"seconds\":"
      << fixed(ms_between(t0, t1) / 1000) << ",\"ticks\":" << written_ticks
      << ",\"heartbeats\":" << static_cast<long long>(heartbeats) << ",\"join_failures\":" << failed
      << ",\"cpu_ms\":" << fixed((c1 - c0) / 1000)
      << ",\"cpu_us_per_heartbeat\":" << fixed(heartbeats > 0 ? (c1 - c0) / heartbeats : 0)
      << ",\"writes\":" << writes << ",\"writes_per_tick\":"
      << fixed(written_ticks ? static_cast<double>(writes) / static_cast<double>(written_ticks) : 0)
      << ",\"bytes_per_heartbeat\":"
      << fixed(heartbeats > 0
                   ? static_cast<double>(u1.bytes_written - u0.bytes_written) / heartbeats
                   : 0)
      << "}";
    co_return o.str();
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 6 && std::string(argv[1]) == "--leader-child")
        return leader_child(argv[2], argv[3], milliseconds(std::atoll(argv[4])),
                            milliseconds(std::atoll(argv[5])));
    const int failover_runs = argc > 1 ? std::atoi(argv[1]) : 5;
    const int handover_runs = argc > 2 ? std::atoi(argv[2]) : 200;
    const int nodes = argc > 3 ? std::atoi(argv[3]) : 10000;
    const int ticks = argc > 4 ? std::atoi(argv[4]) : 5;
    try {
        const bench_server server;
        const std::string& url = server.env.url;
        redcoord::config cfg = redcoord::parse_config(url);
        cfg.request_timeout = 60s;

        asio::io_context ioc(1);
        redcoord::connection conn_a(ioc.get_executor()), conn_b(ioc.get_executor()),
            conn_c(ioc.get_executor());
        conn_a.async_run(cfg, asio::detached);
        conn_b.async_run(cfg, asio::detached);
        conn_c.async_run(cfg, asio::detached);
        redcoord::session_options so_a, so_b, so_c;
        so_a.node_id = "bench-a";
        so_b.node_id = "bench-b";
        so_c.node_id = "bench-hosts";
        redcoord::session sa(conn_a, so_a), sb(conn_b, so_b), sc(conn_c, so_c);

        int code = 0;
        asio::co_spawn(
            ioc,
            [&]() -> asio::awaitable<void> {
                const std::string f = co_await failover(sa, url, failover_runs);
                std::cout << f << std::endl;
                const std::string h = co_await handover(sa, sb, handover_runs);
                std::cout << h << std::endl;
                const std::string c = co_await heartbeat_cpu(conn_c, sc, nodes, ticks);
                std::cout << c << std::endl;
            },
            [&](std::exception_ptr ep) {
                if (ep) {
                    try {
                        std::rethrow_exception(ep);
                    } catch (const std::exception& e) {
                        std::cerr << "cluster: " << e.what() << "\n";
                    }
                    code = 1;
                }
                conn_a.cancel();
                conn_b.cancel();
                conn_c.cancel();
                ioc.stop();
            });
        ioc.run();
        return code;
    } catch (const std::exception& e) {
        std::cerr << "cluster: " << e.what() << "\n";
        return 1;
    }
}
