// Throughput of one multiplexed connection: 1,000 coroutines issue SET/GET (500,000 operations
// in all) over a single redcoord::connection. Prints one JSON line with our figure and, measured
// in the same run against the same server, `redis-benchmark -c 1 -P 256 -t set,get` and the ratio.
//
//   build/bench/throughput [operations] [coroutines]
// Uses REDIS_URL when set; otherwise starts a throwaway redis-server on a free loopback port.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

#include "redis_server.hpp"

namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;

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
        auto [ec1, n1] = co_await conn.async_exec(set, redcoord::ignore,
                                                  asio::as_tuple(asio::use_awaitable));
        auto [ec2, n2] = co_await conn.async_exec(get, value, asio::as_tuple(asio::use_awaitable));
        if (ec1 || ec2 || value.size() != 16) ++failures;
    }
}

// Mean requests/s of SET and GET as redis-benchmark reports them (its --csv output).
std::optional<double> redis_benchmark(const std::string& host, int port, long ops) {
    const std::string cmd = "redis-benchmark -h " + host + " -p " + std::to_string(port) +
                            " -c 1 -P 256 -t set,get -n " + std::to_string(ops) + " --csv 2>&1";
    FILE* pipe = popen(cmd.c_str(), "r");
    if (!pipe) return std::nullopt;
    char line[512];
    double sum = 0;
    int count = 0;
    while (std::fgets(line, sizeof line, pipe)) {
        std::string s(line);
        if (s.rfind("\"SET\"", 0) != 0 && s.rfind("\"GET\"", 0) != 0) continue;
        const auto start = s.find(",\"") + 2;
        sum += std::stod(s.substr(start, s.find('"', start) - start));
        ++count;
    }
    pclose(pipe);
    if (count == 0) return std::nullopt;
    return sum / count;
}

}  // namespace

int main(int argc, char** argv) {
    const long total_ops = argc > 1 ? std::atol(argv[1]) : 500000;
    const int coroutines = argc > 2 ? std::atoi(argv[2]) : 1000;
    try {
        std::unique_ptr<redcoord::test::redis_server> server;
        redcoord::config cfg;
        if (const char* url = std::getenv("REDIS_URL")) {
            cfg = redcoord::parse_config(url);
        } else {
            server = std::make_unique<redcoord::test::redis_server>();
            cfg.endpoints = {{"127.0.0.1", server->port()}};
        }
        cfg.request_timeout = std::chrono::seconds(60);

        asio::io_context ioc(1);
        redcoord::connection conn(ioc.get_executor());
        conn.async_run(cfg, asio::detached);

        // Warm up: connect and touch every key once.
        long failures = 0;
        asio::co_spawn(ioc, worker(conn, 0, 2, failures), asio::detached);
        while (!conn.is_connected()) ioc.run_one();
        ioc.run_for(std::chrono::milliseconds(100));

        const int per_coroutine = static_cast<int>(total_ops / coroutines);
        const long ops = static_cast<long>(per_coroutine) * coroutines;
        const auto writes_before = conn.get_usage().writes;
        int done = 0;
        const auto start = clock_type::now();
        for (int c = 0; c < coroutines; ++c)
            asio::co_spawn(ioc, worker(conn, c, per_coroutine, failures),
                           [&](std::exception_ptr) { ++done; });
        while (done < coroutines) ioc.run_one();
        const double seconds = std::chrono::duration<double>(clock_type::now() - start).count();
        const double ops_per_s = ops / seconds;
        const auto writes = conn.get_usage().writes - writes_before;
        const long rss = peak_rss_kib();
        conn.cancel();
        ioc.run_for(std::chrono::milliseconds(100));

        const auto& ep = cfg.endpoints.front();
        const auto reference = redis_benchmark(ep.host, ep.port, ops);

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
