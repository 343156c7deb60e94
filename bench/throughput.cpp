// Throughput of one multiplexed connection: 1,000 coroutines issue SET/GET (500,000 operations
// in all) over a single redcoord::connection. Prints one JSON line with our figure and, measured
// in the same run against the same server, `redis-benchmark -c 1 -P 256 -t set,get` and the ratio.
//
//   build/bench/throughput [operations] [coroutines]
// Uses REDIS_URL when set; otherwise starts a throwaway redis-server on a free loopback port.
#include <redcoord/redcoord.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sys/resource.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>

#include "bench_support.hpp"
#include "redis_cluster.hpp"

namespace asio = boost::asio;
using namespace redcoord::bench;

namespace {

long peak_rss_kib() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

asio::awaitable<void> worker(redcoord::connection& conn, int id, int ops, long& failures) {
    redcoord::request set;
    const std::string key = "bench:throughput:" + std::to_string(id);
    set.push("SET", key, "0123456789abcdef");
    redcoord::request get;
    get.push("GET", key);
    std::string value;
    for (int i = 0; i < ops; i += 2) {
        auto [ec1, n1] = co_await conn.async_exec(set, redcoord::ignore, nothrow);
        auto [ec2, n2] = co_await conn.async_exec(get, value, nothrow);
        if (ec1 || ec2 || value.size() != 16) ++failures;
    }
}

// Mean requests/s of SET and GET as redis-benchmark reports them.
std::optional<double> redis_benchmark_set_get(const endpoint_info& ep, long ops) {
    const auto rates = redis_benchmark(ep, "-c 1 -P 256 -t set,get -n " + std::to_string(ops));
    double sum = 0;
    int count = 0;
    for (const char* test : {"SET", "GET"}) {
        if (const auto r = rate_of(rates, test)) {
            sum += *r;
            ++count;
        }
    }
    if (count == 0) return std::nullopt;
    return sum / count;
}

// ops/s of `coroutines` coroutines doing SET/GET on their own keys, over one connection (one per
// master on a cluster).
struct measured {
    double ops_per_s = 0;
    long ops = 0;
    std::uint64_t writes = 0;
    long failures = 0;
};

measured measure(const redcoord::config& cfg, long total_ops, int coroutines) {
    client c(cfg);
    measured m;
    asio::co_spawn(c.ioc, worker(c.conn, 0, 2, m.failures), asio::detached);
    c.ioc.run_for(std::chrono::milliseconds(100));
    const int per_coroutine = static_cast<int>(total_ops / coroutines);
    m.ops = static_cast<long>(per_coroutine) * coroutines;
    const auto writes_before = c.conn.get_usage().writes;
    int done = 0;
    const auto start = clock_type::now();
    for (int i = 0; i < coroutines; ++i)
        asio::co_spawn(c.ioc, worker(c.conn, i, per_coroutine, m.failures),
                       [&](std::exception_ptr) { ++done; });
    while (done < coroutines) c.ioc.run_one();
    m.ops_per_s = static_cast<double>(m.ops) / seconds_since(start);
    m.writes = c.conn.get_usage().writes - writes_before;
    return m;
}

// The same on a loopback Redis Cluster of three masters, beside the single server (same run).
int cluster_phase(const bench_env& env, long total_ops, int coroutines) {
    const auto single = measure(env.cfg, total_ops, coroutines);
    redcoord::test::redis_cluster_options o;
    o.replicas_per_master = 0;
    redcoord::test::redis_cluster cl(o);
    const auto clustered =
        measure(redcoord::parse_config(cl.seeds() + ",cluster=true"), total_ops, coroutines);
    std::cout << "{\"bench\":\"throughput_cluster\",\"masters\":3,\"operations\":"
              << clustered.ops << ",\"coroutines\":" << coroutines
              << ",\"ops_per_s\":" << static_cast<long>(clustered.ops_per_s)
              << ",\"writes\":" << clustered.writes << ",\"failures\":" << clustered.failures
              << ",\"single_server_ops_per_s\":" << static_cast<long>(single.ops_per_s)
              << ",\"ratio_to_single_server\":" << clustered.ops_per_s / single.ops_per_s
              << "}" << std::endl;
    return clustered.failures == 0 && single.failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc > 3 && std::string(argv[3]) == "cluster") {
        try {
            const bench_server server;
            return cluster_phase(server.env, std::atol(argv[1]), std::atoi(argv[2]));
        } catch (const std::exception& e) {
            std::cerr << "throughput: " << e.what() << "\n";
            return 1;
        }
    }
    const long total_ops = argc > 1 ? std::atol(argv[1]) : 500000;
    const int coroutines = argc > 2 ? std::atoi(argv[2]) : 1000;
    try {
        const bench_server server;
        const bench_env& env = server.env;
        auto c = std::make_optional<client>(env.cfg);

        // Warm up: touch every key once.
        long failures = 0;
        asio::co_spawn(c->ioc, worker(c->conn, 0, 2, failures), asio::detached);
        c->ioc.run_for(std::chrono::milliseconds(100));

        const int per_coroutine = static_cast<int>(total_ops / coroutines);
        const long ops = static_cast<long>(per_coroutine) * coroutines;
        const auto writes_before = c->conn.get_usage().writes;
        int done = 0;
        const auto start = clock_type::now();
        for (int i = 0; i < coroutines; ++i)
            asio::co_spawn(c->ioc, worker(c->conn, i, per_coroutine, failures),
                           [&](std::exception_ptr) { ++done; });
        while (done < coroutines) c->ioc.run_one();
        const double seconds = seconds_since(start);
        const double ops_per_s = ops / seconds;
        const auto writes = c->conn.get_usage().writes - writes_before;
        const long rss = peak_rss_kib();
        c.reset();  // disconnected before the reference runs

        const auto reference = redis_benchmark_set_get(env.ep, ops);

        std::ostringstream json;
        json << "{\"bench\":\"throughput\",\"operations\":" << ops
             << ",\"coroutines\":" << coroutines << ",\"seconds\":" << seconds
             << ",\"ops_per_s\":" << static_cast<long>(ops_per_s)
             << ",\"writes\":" << writes << ",\"failures\":" << failures
             << ",\"peak_rss_kib\":" << rss;
        if (reference) {
            json << ",\"reference\":\"redis-benchmark -c 1 -P 256 -t set,get\""
                 << ",\"reference_ops_per_s\":" << static_cast<long>(*reference)
                 << ",\"ratio\":" << ops_per_s / *reference;
        } else {
            json << ",\"reference\":null";
        }
        json << "}";
        std::cout << json.str() << std::endl;
        return failures == 0 ? 0 : 1;
    } catch (const std::exception& e) {
        std::cerr << "throughput: " << e.what() << "\n";
        return 1;
    }
}
