// Tutorial 2: a distributed lock — acquire it, write under its fencing token, release it.
//
// Three workers (coroutines standing in for three nodes) each want to append to the same
// report. The lock lets one in at a time; the fencing token that comes with it lets the report
// refuse a write from a holder that lost its lock without noticing (a long pause), because a
// later holder always has a larger token.
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
#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string>

namespace asio = boost::asio;
using asio::use_awaitable;
using namespace std::chrono_literals;

const std::string report_key = "redcoord:example:report";

// One worker: wait for the lock, write under its token, release.
asio::awaitable<std::int64_t> worker(redcoord::session& s, redcoord::lock_provider& locks,
                                     std::string who) {
    // Options go in a named variable (see docs/locks.md on g++ 12 and co_await).
    redcoord::acquire_options opts;
    opts.ttl = 10s;   // Redis drops the lock after 10 s if this process dies
    opts.wait = 5s;   // give up with error::acquire_timeout after 5 s
    redcoord::lease l = co_await locks.async_acquire("report", opts, use_awaitable);
    std::cout << who << ": holds the lock, fencing token " << l.fencing_token() << "\n";

    // While held, the watchdog renews the lock; the work takes a moment.
    asio::steady_timer work(co_await asio::this_coro::executor, 50ms);
    co_await work.async_wait(use_awaitable);

    // The write carries the token: Redis refuses it if a newer token wrote before.
    co_await redcoord::async_fenced_set(s, report_key, "last written by " + who,
                                        l.fencing_token(), use_awaitable);
    const auto token = l.fencing_token();
    co_await l.async_release(use_awaitable);
    std::cout << who << ": released\n";
    co_return token;
}

asio::awaitable<void> tutorial(redcoord::connection& conn) {
    // The session carries what the primitives of this process share: key prefix, node id,
    // the push fan-out that wakes waiters, and the watchdog that renews every lease.
    redcoord::session s(conn, {.node_id = "example-node"});
    redcoord::lock_provider locks(s);

    // Three workers at once: they take turns, each woken by the previous one's release.
    int done = 0;
    std::int64_t first_token = 0;
    auto ex = co_await asio::this_coro::executor;
    for (std::string who : {"alice", "bob", "carol"}) {
        asio::co_spawn(ex, worker(s, locks, who), [&](std::exception_ptr ep, std::int64_t t) {
            if (ep) std::rethrow_exception(ep);
            if (first_token == 0 || t < first_token) first_token = t;
            ++done;
        });
    }
    asio::steady_timer poll(ex);
    while (done < 3) {
        poll.expires_after(10ms);
        co_await poll.async_wait(use_awaitable);
    }

    // A holder from the past (the first token) tries to write: refused.
    auto [ec] = co_await redcoord::async_fenced_set(s, report_key, "stale write", first_token,
                                                    asio::as_tuple(use_awaitable));
    std::cout << "write with token " << first_token << ": " << ec.message() << "\n";
    if (ec != redcoord::error::stale_fencing_token) throw std::runtime_error("expected a refusal");

    // run_exclusive: acquire, run the work, release — and cancel the work if the lock is lost.
    const redcoord::acquire_options defaults;
    co_await locks.async_run_exclusive(
        "report",
        []() -> asio::awaitable<void> {
            std::cout << "run_exclusive: only this node runs the nightly job now\n";
            co_return;
        },
        defaults, use_awaitable);

    // A graceful close releases whatever the session still holds and waits until Redis has
    // answered; only then is the connection stopped (stopping it first could leave locks in
    // Redis until their TTL).
    co_await s.async_close(use_awaitable);
    conn.cancel();
}

int main() {
    const char* url = std::getenv("REDIS_URL");
    try {
        const redcoord::config cfg = redcoord::parse_config(url ? url : "redis://127.0.0.1:6379");
        asio::io_context ioc;
        redcoord::connection conn(ioc.get_executor());
        conn.async_run(cfg, [&](boost::system::error_code ec) {
            if (ec && ec != asio::error::operation_aborted)
                std::cerr << "connection: " << ec.message() << " "
                          << conn.run_diagnostics().message() << "\n";
        });
        asio::co_spawn(ioc, tutorial(conn), [](std::exception_ptr ep) {
            if (ep) std::rethrow_exception(ep);
        });
        ioc.run();
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "02_lock: " << e.what() << "\n";
        return 1;
    }
}
