// What the benchmarks share: the server they run against (REDIS_URL, or a throwaway
// redis-server on a free loopback port), a connection up and running, driving an io_context
// until something holds, one-off commands, the process's CPU time, INFO commandstats and INFO
// cpu, percentiles, and `redis-benchmark` as the reference the figures are set against.
//
// Header only; every bench is one translation unit, so these are inline functions.
#pragma once

#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "redis_server.hpp"

namespace redcoord::bench {

using clock_type = std::chrono::steady_clock;

// Completion token for co_await that hands back the error as a value instead of throwing.
inline constexpr auto nothrow = boost::asio::as_tuple(boost::asio::use_awaitable);

// ---- time -----------------------------------------------------------------------------------

// User + system CPU time of this process so far.
inline double cpu_seconds() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

inline double seconds_since(clock_type::time_point t) {
    return std::chrono::duration<double>(clock_type::now() - t).count();
}

inline double ms_between(clock_type::time_point a, clock_type::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

// ---- driving the io_context -----------------------------------------------------------------

// Runs the io_context until pred() holds.
template <class Pred>
void run_until(boost::asio::io_context& ioc, Pred pred) {
    while (!pred()) ioc.run_for(std::chrono::milliseconds(10));
}

// As run_until, giving up at the deadline; true when pred() held.
template <class Pred>
bool run_until(boost::asio::io_context& ioc, clock_type::time_point deadline, Pred pred) {
    while (!pred() && clock_type::now() < deadline) ioc.run_for(std::chrono::milliseconds(10));
    return pred();
}

// Runs one coroutine to completion on the io_context and returns its value.
template <class T>
T run(boost::asio::io_context& ioc, boost::asio::awaitable<T> op) {
    std::optional<T> out;
    std::exception_ptr error;
    boost::asio::co_spawn(ioc, std::move(op), [&](std::exception_ptr ep, T v) {
        error = ep;
        out = std::move(v);
    });
    run_until(ioc, [&] { return out.has_value(); });
    if (error) std::rethrow_exception(error);
    return std::move(*out);
}

// Runs one command whose reply is text (or ignored), throwing on error.
inline boost::asio::awaitable<std::string> command_text(redcoord::connection& conn,
                                                        std::vector<std::string> args) {
    redcoord::request req;
    const std::string cmd = args.front();
    args.erase(args.begin());
    req.push(cmd, args);
    redcoord::generic_response reply;
    redcoord::diagnostics diag;
    auto [ec, n] = co_await conn.async_exec(req, reply, diag, nothrow);
    redcoord::throw_on_error(ec, diag);
    std::string text;
    for (const auto& node : reply)
        if (!node.value.empty()) text = node.value;  // the last scalar: enough for these
    co_return text;
}

// ---- the server -----------------------------------------------------------------------------

struct endpoint_info {
    std::string host;
    int port = 0;
};

// How a bench reaches its server.
struct bench_env {
    redcoord::config cfg;  // request timeout 60 s: a loaded server answers late, not never
    endpoint_info ep;      // the first endpoint, for redis-benchmark
    std::string url;       // REDIS_URL, or redis://127.0.0.1:<port> of the throwaway server
    // Part of every key that must be new, so that a run against a shared server (REDIS_URL)
    // meets nothing left by an earlier one: the PID and the start time.
    std::string run_tag;
};

// The server a bench runs against: REDIS_URL when set; otherwise a throwaway redis-server on
// a free loopback port (with `opts`), stopped when this goes. Create it on the main thread.
struct bench_server {
    std::unique_ptr<redcoord::test::redis_server> server;  // unset with REDIS_URL
    bench_env env;

    explicit bench_server(const redcoord::test::redis_options& opts = {}) {
        if (const char* url = std::getenv("REDIS_URL")) {
            env.url = url;
            env.cfg = redcoord::parse_config(url);
        } else {
            server = std::make_unique<redcoord::test::redis_server>(opts);
            env.url = "redis://127.0.0.1:" + std::to_string(server->port());
            env.cfg.endpoints = {{"127.0.0.1", server->port()}};
        }
        env.cfg.request_timeout = std::chrono::seconds(60);
        env.ep.host = env.cfg.endpoints.front().host;
        env.ep.port = env.cfg.endpoints.front().port;
        env.run_tag = std::to_string(getpid()) + "-" +
                      std::to_string(std::chrono::system_clock::now().time_since_epoch() /
                                     std::chrono::milliseconds(1));
    }
};

// One phase of a bench: its name on the command line, and what it runs; 0 when all went well.
struct phase {
    std::string name;
    std::function<int(const bench_env&)> run;
};

// main() of a bench made of phases: runs those named on the command line, in that order, or
// all of them when none is, one after the other against one bench_server. The exit code: 0
// when every phase returned 0, 1 when one did not or something threw (said on stderr, after
// `bench`), 2 for an unknown phase name (the phases before it have run).
inline int run_phases(const std::string& bench, int argc, char** argv,
                      const std::vector<phase>& all) {
    std::vector<std::string> names(argv + 1, argv + argc);
    if (names.empty())
        for (const auto& p : all) names.push_back(p.name);
    try {
        const bench_server server;
        int rc = 0;
        for (const auto& name : names) {
            const auto p = std::find_if(all.begin(), all.end(),
                                        [&](const phase& q) { return q.name == name; });
            if (p == all.end()) {
                std::cerr << bench << ": unknown phase '" << name << "' (";
                for (std::size_t i = 0; i < all.size(); ++i)
                    std::cerr << (i ? ", " : "") << all[i].name;
                std::cerr << ")\n";
                return 2;
            }
            rc |= p->run(server.env);
        }
        return rc;
    } catch (const std::exception& e) {
        std::cerr << bench << ": " << e.what() << "\n";
        return 1;
    }
}

// A connection with its io_context, up and running.
struct client {
    boost::asio::io_context ioc{1};
    redcoord::connection conn{ioc.get_executor()};
    explicit client(const redcoord::config& cfg) {
        conn.async_run(cfg, boost::asio::detached);
        run_until(ioc, [&] { return conn.is_connected(); });
    }
    ~client() {
        conn.cancel();
        ioc.run_for(std::chrono::milliseconds(100));
    }
};

// ---- what the server says about itself -----------------------------------------------------

struct command_stat {
    long calls = 0;
    double usec = 0;  // server time spent in the command, in all
};

// Calls and time per command from INFO commandstats ("cmdstat_evalsha:calls=12,usec=...").
inline std::map<std::string, command_stat> parse_commandstats(const std::string& info) {
    std::map<std::string, command_stat> out;
    std::istringstream in(info);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("cmdstat_", 0) != 0) continue;
        const auto colon = line.find(':');
        const auto calls = line.find("calls=", colon);
        const auto usec = line.find("usec=", colon);
        if (colon == std::string::npos || calls == std::string::npos) continue;
        auto& st = out[line.substr(8, colon - 8)];
        st.calls = std::atol(line.c_str() + calls + 6);
        if (usec != std::string::npos) st.usec = std::atof(line.c_str() + usec + 5);
    }
    return out;
}

// Calls per command from INFO commandstats, the time left out.
inline std::map<std::string, long> parse_command_calls(const std::string& info) {
    std::map<std::string, long> out;
    for (const auto& [name, st] : parse_commandstats(info)) out[name] = st.calls;
    return out;
}

// A window is marked by CONFIG RESETSTAT at its start and INFO commandstats at its end: these
// are the bench's own, not the cost of what it measures.
inline bool window_marker(const std::string& command) {
    return command == "info" || command.rfind("config", 0) == 0;
}

// Every call the server counted except the bench's own window markers.
inline long server_calls(const std::map<std::string, long>& calls) {
    long n = 0;
    for (const auto& [name, c] : calls)
        if (!window_marker(name)) n += c;
    return n;
}

// Server time per call of one command (its own time, scripts' inner calls included).
inline double usec_per_call(const std::map<std::string, command_stat>& stats,
                            const std::string& name) {
    auto it = stats.find(name);
    return it == stats.end() || it->second.calls == 0
               ? 0.0
               : it->second.usec / static_cast<double>(it->second.calls);
}

// A field of INFO's text ("used_cpu_user:1.23").
inline double info_field(const std::string& info, const std::string& name) {
    const auto at = info.find(name + ":");
    return at == std::string::npos ? 0.0 : std::atof(info.c_str() + at + name.size() + 1);
}

// The server's CPU seconds so far (user + system), from INFO cpu.
inline double server_cpu(boost::asio::io_context& ioc, redcoord::connection& conn) {
    const auto info = run(ioc, command_text(conn, {"INFO", "cpu"}));
    return info_field(info, "used_cpu_user") + info_field(info, "used_cpu_sys");
}

// ---- percentiles ----------------------------------------------------------------------------

// The q-quantile (0 to 1, rounding down to a sample) of v, which it reorders; 0 when empty.
inline std::int64_t percentile(std::vector<std::int64_t>& v, double q) {
    if (v.empty()) return 0;
    const auto i = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1));
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i), v.end());
    return v[i];
}

// As percentile, of samples in microseconds, in milliseconds.
inline double percentile_ms(std::vector<std::int64_t>& us, double q) {
    return static_cast<double>(percentile(us, q)) / 1000.0;
}

// ---- processes of the bench's own -----------------------------------------------------------

// This program started again with `args` (its argv[1]...) by PID, its stdout through a
// non-blocking pipe; killed (SIGKILL) and reaped when this goes, and killed with this process.
struct self_process {
    pid_t pid = -1;
    int fd = -1;
    std::string out;  // what drain() has read so far

    explicit self_process(std::vector<std::string> args) {
        args.insert(args.begin(), "/proc/self/exe");
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
        const pid_t parent = ::getpid();
        pid = ::fork();
        if (pid < 0) throw std::runtime_error("fork failed");
        if (pid == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) ::_exit(127);
            ::dup2(fds[1], STDOUT_FILENO);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        ::close(fds[1]);
        fd = fds[0];
        ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    }
    ~self_process() {
        kill_and_reap();
        if (fd >= 0) ::close(fd);
    }
    self_process(const self_process&) = delete;
    self_process& operator=(const self_process&) = delete;

    // Appends what the process wrote so far to out; false once it closed its stdout.
    bool drain() {
        char buf[4096];
        for (;;) {
            const ssize_t n = ::read(fd, buf, sizeof buf);
            if (n == 0) return false;
            if (n < 0) return true;
            out.append(buf, static_cast<std::size_t>(n));
        }
    }
    void kill_and_reap() {
        if (pid <= 0) return;
        ::kill(pid, SIGKILL);
        int st = 0;
        while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
        }
        pid = -1;
    }
};

// ---- redis-benchmark, the reference ---------------------------------------------------------

// Requests/s per test as redis-benchmark reports them, run against ep with `args` (options,
// then a command if any). Its --csv output: a header line "test","rps",... then one line a
// test, "SET","123.45",... (a command given on the line is named by its words). Empty when
// redis-benchmark could not be run.
inline std::map<std::string, double> redis_benchmark(const endpoint_info& ep,
                                                     const std::string& args) {
    const std::string cmd = "redis-benchmark -h " + ep.host + " -p " + std::to_string(ep.port) +
                            " --csv " + args + " 2>&1";
    std::map<std::string, double> out;
    FILE* pipe = popen(cmd.c_str(), "r");
    if (!pipe) return out;
    char line[1024];
    while (std::fgets(line, sizeof line, pipe)) {
        const std::string s(line);
        if (s.size() < 2 || s[0] != '"' || s.rfind("\"test\"", 0) == 0) continue;
        const auto name_end = s.find('"', 1);
        const auto start = s.find(",\"", name_end);
        if (name_end == std::string::npos || start == std::string::npos) continue;
        const auto end = s.find('"', start + 2);
        out[s.substr(1, name_end - 1)] = std::atof(s.substr(start + 2, end - start - 2).c_str());
    }
    pclose(pipe);
    return out;
}

// One test's requests/s from redis_benchmark(); unset when it did not report it.
inline std::optional<double> rate_of(const std::map<std::string, double>& rates,
                                     const std::string& test) {
    auto it = rates.find(test);
    return it == rates.end() ? std::nullopt : std::optional<double>(it->second);
}

}  // namespace redcoord::bench
