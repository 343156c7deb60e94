// What the worker executables (lock_worker.cpp, cluster_worker.cpp) share: printing event lines
// on stdout, the connection config, waiting for the connection, and running a mode's body to
// its exit code.
#pragma once

#include "short_timeouts.hpp"

#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <utility>

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

namespace redcoord::test::worker {

// Completion token that reports errors as a tuple instead of throwing.
inline constexpr auto nothrow = boost::asio::as_tuple(boost::asio::use_awaitable);

// One line on stdout, written at once (a pipe is not line-buffered by stdio).
inline void say(const std::string& line) {
    const std::string out = line + "\n";
    std::size_t done = 0;
    while (done < out.size()) {
        const ssize_t n = ::write(STDOUT_FILENO, out.data() + done, out.size() - done);
        if (n <= 0) return;
        done += static_cast<std::size_t>(n);
    }
}

inline std::string describe(boost::system::error_code ec, const redcoord::diagnostics& diag) {
    std::string s = ec.message();
    if (!diag.message().empty()) s += " (" + std::string(diag.message()) + ")";
    return s;
}

// The config for a worker's first argument: the port of a redis-server on 127.0.0.1, or a
// connection string (the test's port_of: "127.0.0.1:p1,127.0.0.1:p2,cluster=true" on a Redis
// Cluster); with short timeouts either way.
inline redcoord::config config_for(const std::string& server) {
    if (!server.empty() && server.find_first_not_of("0123456789") == std::string::npos) {
        redcoord::config cfg;
        cfg.endpoints = {
            redcoord::endpoint{"127.0.0.1", static_cast<std::uint16_t>(std::stoi(server))}};
        return redcoord::test::with_short_timeouts(std::move(cfg));
    }
    return redcoord::test::with_short_timeouts(redcoord::parse_config(server));
}

inline boost::asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
    boost::asio::steady_timer t(co_await boost::asio::this_coro::executor);
    t.expires_after(d);
    co_await t.async_wait(boost::asio::use_awaitable);
}

// Waits until the connection is up (a PING answered), so "ready" means ready.
inline boost::asio::awaitable<bool> ping(redcoord::connection& conn) {
    redcoord::request req;
    req.push("PING");
    std::string reply;
    redcoord::diagnostics diag;
    auto [ec, n] = co_await conn.async_exec(req, reply, diag, nothrow);
    if (ec) say("error ping: " + describe(ec, diag));
    co_return !ec;
}

// Ends this process with the test process, even when it dies without ending us (the test also
// sets it before exec; this covers a worker started by hand), and after two minutes at most
// (SIGALRM), so it never outlives a broken test.
inline void limit_lifetime() {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::alarm(120);
}

// Runs `body` on ioc to its end and returns its exit code: 1, after an "error exception: ..."
// line, when it throws. Cancels conn when it ends.
inline int run_to_exit(boost::asio::io_context& ioc, redcoord::connection& conn,
                       boost::asio::awaitable<int> body) {
    int code = 1;
    boost::asio::co_spawn(ioc, std::move(body), [&](std::exception_ptr ep, int rc) {
        if (ep) {
            try {
                std::rethrow_exception(ep);
            } catch (const std::exception& e) {
                say(std::string("error exception: ") + e.what());
            }
            rc = 1;
        }
        code = rc;
        conn.cancel();
        ioc.stop();
    });
    ioc.run();
    return code;
}

}  // namespace redcoord::test::worker
