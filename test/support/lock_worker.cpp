// A separate process that takes redcoord locks, for the cross-process and fault tests
// (test/integration/locks/lock_process_test.cpp). It prints one line per event on stdout, flushed at
// once, so the test can follow it through a pipe:
//
//   lock_worker <server> counter <lock> <coroutines> <rounds>
//       Each coroutine, <rounds> times: acquire <lock>; GET "counter"; SET "counter" to the value
//       plus one (a non-atomic read-modify-write); RPUSH the fencing token to "fences" and the
//       node id ("worker-<pid>") to "holders"; release; then pause 0-2 ms outside the lock, so
//       the lock also changes hands between processes, not only between local coroutines.
//       Prints "ready" when connected, then "done <critical sections>", or "error ..." lines.
//       Exit code 0 when every acquisition, command and release succeeded and no two
//       coroutines of this process were ever inside at once.
//
//   lock_worker <server> busy <lock> <coroutines> <rounds> [<node id>]
//       As counter, but the coroutines start only once the key "go" exists (so that every
//       process contends from the start) and do not pause between rounds: the lock is always
//       wanted, by this process's own coroutines too. With a node id, the session uses it
//       (several processes may share one); "holders" still gets "worker-<pid>".
//
//   lock_worker <server> hold <lock> <ttl_ms> <resource>
//       Acquires <lock> with that TTL (watchdog on) and prints "acquired <fence>"; writes
//       <resource> fenced with its token ("fenced-write ok"); then waits until the lease is lost
//       and prints "lost <reason>"; writes <resource> again with the old token
//       ("fenced-write rejected" when the token was stale); releases ("release not-held" when
//       the lock was no longer its own); prints "done".
//
// <server> is the port of a redis-server on 127.0.0.1, or a connection string such as
// "127.0.0.1:7000,127.0.0.1:7001,cluster=true" (a Redis Cluster; the tests' port_of).
//
// The process gives up after two minutes (SIGALRM), so it never outlives a broken test.
#include <redcoord/redcoord.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include <unistd.h>

#include "worker_support.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using std::chrono::milliseconds;

using redcoord::test::worker::config_for;
using redcoord::test::worker::describe;
using redcoord::test::worker::nothrow;
using redcoord::test::worker::ping;
using redcoord::test::worker::say;

asio::awaitable<int> counter_mode(redcoord::connection& conn, std::string lock, int coroutines,
                                  int rounds, bool busy, std::string node_id) {
    if (!co_await ping(conn)) co_return 1;
    const std::string label = "worker-" + std::to_string(::getpid());
    redcoord::session s(conn, {.node_id = node_id.empty() ? label : node_id});
    redcoord::lock_provider locks(s, {.default_ttl = 1s});
    say("ready");
    if (busy) {
        asio::steady_timer gate(co_await asio::this_coro::executor);
        for (;;) {
            redcoord::request req;
            req.push("EXISTS", "go");
            std::int64_t exists = 0;
            redcoord::diagnostics diag;
            auto [ec, n] = co_await conn.async_exec(req, exists, diag, nothrow);
            if (ec) {
                say("error EXISTS go: " + describe(ec, diag));
                co_return 1;
            }
            if (exists == 1) break;
            gate.expires_after(1ms);
            co_await gate.async_wait(nothrow);
        }
    }

    int inside = 0;
    int finished = 0;
    int sections = 0;
    bool failed = false;
    auto fail = [&](const std::string& what) {
        failed = true;
        say("error " + what);
    };
    auto ex = co_await asio::this_coro::executor;
    for (int c = 0; c < coroutines; ++c) {
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
                asio::steady_timer t(co_await asio::this_coro::executor);
                for (int r = 0; r < rounds && !failed; ++r) {
                    redcoord::diagnostics diag;
                    redcoord::acquire_options ao;
                    ao.ttl = 1s;
                    ao.wait = 60s;
                    auto [ec, l] = co_await locks.async_acquire(lock, ao, diag, nothrow);
                    if (ec) {
                        fail("acquire: " + describe(ec, diag));
                        break;
                    }
                    if (++inside != 1) fail("two coroutines of one process inside at once");
                    const auto fence = l.fencing_token();
                    std::optional<std::string> cur;
                    {
                        redcoord::request req;
                        req.push("GET", "counter");
                        auto [gec, n] = co_await conn.async_exec(req, cur, diag, nothrow);
                        if (gec) fail("GET: " + describe(gec, diag));
                    }
                    const auto next = std::stoll(cur.value_or("0")) + 1;
                    {
                        redcoord::request req;
                        req.push("SET", "counter", std::to_string(next));
                        req.push("RPUSH", "fences", std::to_string(fence));
                        req.push("RPUSH", "holders", label);
                        redcoord::ignore_t ignored;
                        auto [sec, n] = co_await conn.async_exec(req, ignored, diag, nothrow);
                        if (sec) fail("SET/RPUSH: " + describe(sec, diag));
                    }
                    --inside;
                    if (!l.is_held())
                        fail("lease lost inside the critical section: " +
                             l.lost_reason().message());
                    auto [rec] = co_await l.async_release(diag, nothrow);
                    if (rec) fail("release: " + describe(rec, diag));
                    ++sections;
                    if (busy) continue;
                    t.expires_after(milliseconds(r % 3));
                    co_await t.async_wait(nothrow);
                }
                ++finished;
            },
            asio::detached);
    }
    asio::steady_timer t(ex);
    while (finished < coroutines) {
        t.expires_after(5ms);
        co_await t.async_wait(nothrow);
    }
    if (failed) co_return 1;
    say("done " + std::to_string(sections));
    co_return 0;
}

asio::awaitable<int> hold_mode(redcoord::connection& conn, std::string lock, milliseconds ttl,
                               std::string resource) {
    if (!co_await ping(conn)) co_return 1;
    redcoord::session s(conn, {.node_id = "worker-" + std::to_string(::getpid())});
    redcoord::lock_provider locks(s, {.default_ttl = ttl});
    redcoord::diagnostics diag;
    redcoord::acquire_options ao;
    ao.ttl = ttl;
    ao.wait = 10s;
    auto [ec, l] = co_await locks.async_acquire(lock, ao, diag, nothrow);
    if (ec) {
        say("error acquire: " + describe(ec, diag));
        co_return 1;
    }
    const auto fence = l.fencing_token();
    say("acquired " + std::to_string(fence));

    auto fenced_write = [&](std::string value) -> asio::awaitable<void> {
        auto [wec] = co_await redcoord::async_fenced_set(s, resource, std::move(value), fence,
                                                         nothrow);
        if (!wec)
            say("fenced-write ok");
        else if (wec == redcoord::error::stale_fencing_token)
            say("fenced-write rejected");
        else
            say("fenced-write error " + wec.message());
    };
    co_await fenced_write("worker-" + std::to_string(::getpid()));

    auto [lec] = co_await l.async_wait_lost(nothrow);
    if (lec) {
        say("error wait_lost: " + lec.message());
        co_return 1;
    }
    say("lost " + l.lost_reason().message());

    co_await fenced_write("worker-" + std::to_string(::getpid()) + "-late");

    auto [rec] = co_await l.async_release(diag, nothrow);
    if (rec == redcoord::error::not_held)
        say("release not-held");
    else if (!rec)
        say("release ok");
    else
        say("release error " + rec.message());
    say("done");
    co_return 0;
}

int usage() {
    say("error usage: lock_worker <server> counter <lock> <coroutines> <rounds> | "
        "lock_worker <server> busy <lock> <coroutines> <rounds> [<node id>] | "
        "lock_worker <server> hold <lock> <ttl_ms> <resource>");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    redcoord::test::worker::limit_lifetime();
    if (argc < 3) return usage();
    const std::string server = argv[1];
    const std::string mode = argv[2];

    asio::io_context ioc;
    redcoord::connection conn(ioc.get_executor());
    conn.async_run(config_for(server), asio::detached);

    asio::awaitable<int> body = [&]() -> asio::awaitable<int> {
        if ((mode == "counter" && argc == 6) || (mode == "busy" && (argc == 6 || argc == 7)))
            return counter_mode(conn, argv[3], std::atoi(argv[4]), std::atoi(argv[5]),
                                mode == "busy", argc == 7 ? argv[6] : "");
        if (mode == "hold" && argc == 6)
            return hold_mode(conn, argv[3], milliseconds(std::atoll(argv[4])), argv[5]);
        return {};
    }();
    if (!body.valid()) return usage();

    return redcoord::test::worker::run_to_exit(ioc, conn, std::move(body));
}
