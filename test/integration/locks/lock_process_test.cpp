// Mutex locks across processes and under faults, against a real redis-server: worker processes
// (test/support/lock_worker.cpp) contending for one lock, a holder killed or paused while
// holding, Redis restarted under held locks and waiters, and the watchdog.
//
// Worker processes are started with fork/exec, tied to this process (PR_SET_PDEATHSIG) and
// ended by their PID only. Every wait is bounded; the tests assert outcomes, not timings.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <signal.h>

#include "async_test.hpp"
#include "connection_helpers.hpp"
#include "lock_fields.hpp"
#include "redis_server.hpp"
#include "worker_process.hpp"

#ifndef REDCOORD_LOCK_WORKER
#error "REDCOORD_LOCK_WORKER must name the lock_worker executable"
#endif

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::lease;
using redcoord::lock_options;
using redcoord::lock_provider;
using redcoord::session;
using redcoord::test::command;
using redcoord::test::config_for;
using redcoord::test::nothrow;
using redcoord::test::port_of;
using redcoord::test::redis_options;
using redcoord::test::redis_server;
using redcoord::test::require_ok;
using redcoord::test::run_async;
using redcoord::test::script_calls;
using redcoord::test::sleep_for;
using redcoord::test::with_connection;
using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

// A lock_worker child process (see worker_process.hpp).
class worker : public redcoord::test::worker_process {
public:
    explicit worker(std::vector<std::string> args)
        : worker_process(REDCOORD_LOCK_WORKER, std::move(args)) {}
};

asio::awaitable<std::int64_t> int_command(redcoord::connection& conn, std::string_view name,
                                          const std::string& key) {
    auto reply = co_await command(conn, name, key);
    co_return std::stoll(reply);
}

asio::awaitable<std::optional<std::string>> get(redcoord::connection& conn,
                                                const std::string& key) {
    redcoord::request req;
    req.push("GET", key);
    std::optional<std::string> reply;
    redcoord::diagnostics diag;
    auto [ec, n] = co_await conn.async_exec(req, reply, diag, nothrow);
    require_ok(ec, diag);
    co_return reply;
}

asio::awaitable<std::vector<std::string>> lrange_all(redcoord::connection& conn,
                                                     const std::string& key) {
    redcoord::request req;
    req.push("LRANGE", key, 0, -1);
    std::vector<std::string> reply;
    redcoord::diagnostics diag;
    auto [ec, n] = co_await conn.async_exec(req, reply, diag, nothrow);
    require_ok(ec, diag);
    co_return reply;
}

// Waits for a worker in hold mode to take its lock and make its fenced write (which must
// succeed); returns its fencing token.
asio::awaitable<std::int64_t> holder_fence(worker& w) {
    auto acquired = co_await w.line_starting_with("acquired ", 15s);
    REQUIRE(acquired);
    const std::int64_t fence = std::stoll(acquired->substr(9));
    auto wrote = co_await w.line_starting_with("fenced-write ", 10s);
    REQUIRE(wrote);
    CHECK(*wrote == "fenced-write ok");
    co_return fence;
}

// Index of the first element not larger than the one before, or -1 when strictly increasing.
long first_not_increasing(const std::vector<std::int64_t>& v) {
    for (std::size_t i = 1; i < v.size(); ++i)
        if (v[i] <= v[i - 1]) return static_cast<long>(i);
    return -1;
}

TEST_CASE("lock process: 3 processes x 20 coroutines do a non-atomic read-modify-write under "
          "one lock, and the count is exact and fencing tokens strictly increase",
          "[lock-process]") {
    with_connection(
        [](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
            constexpr int processes = 3, coroutines = 20, rounds = 10;
            constexpr int sections = processes * coroutines * rounds;
            std::vector<std::unique_ptr<worker>> workers;
            for (int p = 0; p < processes; ++p) {
                std::vector<std::string> args{port_of(srv), "counter", "shared",
                                              std::to_string(coroutines),
                                              std::to_string(rounds)};
                workers.push_back(std::make_unique<worker>(std::move(args)));
            }
            for (auto& w : workers) {
                auto done = co_await w->line_starting_with("done ", 100s);
                INFO(w->transcript());
                REQUIRE(done);
                CHECK(*done == "done " + std::to_string(coroutines * rounds));
            }
            for (auto& w : workers) {
                auto code = co_await w->wait_exit(10s);
                INFO(w->transcript());
                REQUIRE(code);
                CHECK(*code == 0);
            }

            auto total = co_await get(conn, "counter");
            REQUIRE(total);
            CHECK(*total == std::to_string(sections));

            // Each holder appended its fencing token inside its critical section: in the order
            // of the critical sections they must strictly increase.
            auto fences_text = co_await lrange_all(conn, "fences");
            std::vector<std::int64_t> fences;
            for (const auto& f : fences_text) fences.push_back(std::stoll(f));
            REQUIRE(fences.size() == static_cast<std::size_t>(sections));
            const long bad = first_not_increasing(fences);
            INFO("fence at " << bad << " is not larger than the one before it: "
                             << (bad > 0 ? fences[bad - 1] : 0) << ", "
                             << (bad > 0 ? fences[bad] : 0));
            CHECK(bad == -1);
            // No grant after the last critical section: the lock's counter holds its token.
            CHECK(fences.front() > 0);
            auto counter_fence = co_await get(conn, "redcoord:lock:{shared}:fence");
            REQUIRE(counter_fence);
            CHECK(*counter_fence == std::to_string(fences.back()));

            // The lock changed hands between the processes (at least once per process).
            auto holders = co_await lrange_all(conn, "holders");
            REQUIRE(holders.size() == static_cast<std::size_t>(sections));
            int switches = 0;
            for (std::size_t i = 1; i < holders.size(); ++i)
                switches += holders[i] != holders[i - 1];
            INFO("the lock passed between processes " << switches << " times");
            CHECK(switches >= processes - 1);
        },
        120s);
}

TEST_CASE("lock process: 3 busy processes with one node id on one lock in the default mode: "
          "none is starved by another's local handoffs",
          "[lock-process]") {
    // Each process's coroutines want the lock all the time. A release hands it to the next
    // local waiter, but only so long while another process waits: until the first process has
    // done all its rounds, every process must have had at least 10% of the critical sections.
    // The processes share a node id (as processes given one by mistake do): another session
    // is told apart by its own id, not by the node id.
    with_connection(
        [](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
            constexpr int processes = 3, coroutines = 10, rounds = 100;
            constexpr int per_process = coroutines * rounds;
            std::vector<std::unique_ptr<worker>> workers;
            for (int p = 0; p < processes; ++p) {
                std::vector<std::string> args{port_of(srv), "busy", "busy",
                                              std::to_string(coroutines),
                                              std::to_string(rounds), "shared-node"};
                workers.push_back(std::make_unique<worker>(std::move(args)));
            }
            for (auto& w : workers) {
                auto ready = co_await w->line_starting_with("ready", 30s);
                INFO(w->transcript());
                REQUIRE(ready);
            }
            co_await command(conn, "SET", "go", "1");
            for (auto& w : workers) {
                auto done = co_await w->line_starting_with("done ", 100s);
                INFO(w->transcript());
                REQUIRE(done);
                CHECK(*done == "done " + std::to_string(per_process));
                auto code = co_await w->wait_exit(10s);
                REQUIRE(code);
                CHECK(*code == 0);
            }
            auto holders = co_await lrange_all(conn, "holders");
            REQUIRE(holders.size() == static_cast<std::size_t>(processes * per_process));
            // The critical sections until the first process did its last one.
            std::map<std::string, int> seen;
            std::size_t first_done = holders.size();
            for (std::size_t i = 0; i < holders.size(); ++i) {
                if (++seen[holders[i]] == per_process) {
                    first_done = i + 1;
                    break;
                }
            }
            std::map<std::string, int> shares;
            for (std::size_t i = 0; i < first_done; ++i) ++shares[holders[i]];
            INFO("critical sections until the first process finished: " << first_done);
            REQUIRE(shares.size() == static_cast<std::size_t>(processes));
            for (const auto& [node, n] : shares) {
                INFO(node << " had " << n);
                CHECK(n * 10 >= static_cast<int>(first_done));
            }
        },
        120s);
}

TEST_CASE("lock process: a holder killed with SIGKILL leaves the lock free after its TTL, and the "
          "next holder gets a larger fencing token",
          "[lock-process]") {
    with_connection([](redcoord::connection& conn,
                       redis_server& srv) -> asio::awaitable<void> {
        session s(conn);
        lock_provider locks(s);
        const std::string key = s.keys().lock("job");
        std::vector<std::string> args{port_of(srv), "hold", "job", "500", "job-output"};
        worker w(std::move(args));
        INFO(w.transcript());
        const std::int64_t old_fence = co_await holder_fence(w);

        // Held by the worker, and kept past several TTLs by its watchdog.
        auto [ec0, none] = co_await locks.async_try_acquire("job", {}, nothrow);
        REQUIRE_FALSE(ec0);
        CHECK_FALSE(none);
        co_await sleep_for(1500ms);
        auto stored = co_await command(conn, "GET", key);
        CHECK(redcoord::test::split_lock_value(stored).node == "worker-" + std::to_string(w.pid()));
        auto [ec1, still_none] = co_await locks.async_try_acquire("job", {}, nothrow);
        REQUIRE_FALSE(ec1);
        CHECK_FALSE(still_none);

        REQUIRE(w.signal(SIGKILL));
        auto code = co_await w.wait_exit(10s);
        REQUIRE(code);
        CHECK(*code == 128 + SIGKILL);
        // Nobody renews it any more: it lives at most one TTL longer (-2: gone already).
        const auto pttl = co_await int_command(conn, "PTTL", key);
        CHECK(pttl <= 500);

        redcoord::diagnostics diag;
        auto [ec, l] = co_await locks.async_acquire("job", {.ttl = 5s, .wait = 10s}, diag,
                                                    nothrow);
        require_ok(ec, diag);
        REQUIRE(l.is_held());
        CHECK(l.fencing_token() > old_fence);

        // The new holder's fenced write goes through; the dead holder's token is stale now.
        auto [wec] = co_await redcoord::async_fenced_set(s, "job-output", "test",
                                                         l.fencing_token(), nothrow);
        CHECK_FALSE(wec);
        auto [stale] = co_await redcoord::async_fenced_set(s, "job-output", "late", old_fence,
                                                           nothrow);
        CHECK(stale == redcoord::error::stale_fencing_token);
        auto value = co_await get(conn, "job-output");
        CHECK(value == std::optional<std::string>("test"));

        auto [rec] = co_await l.async_release(diag, nothrow);
        require_ok(rec, diag);
    });
}

TEST_CASE("lock process: a holder paused with SIGSTOP past its TTL is told its lease was lost "
          "when it resumes, and its fenced write is rejected",
          "[lock-process]") {
    with_connection([](redcoord::connection& conn,
                       redis_server& srv) -> asio::awaitable<void> {
        session s(conn);
        lock_provider locks(s);
        const std::string key = s.keys().lock("job");
        std::vector<std::string> args{port_of(srv), "hold", "job", "500", "job-output"};
        worker w(std::move(args));
        INFO(w.transcript());
        const std::int64_t old_fence = co_await holder_fence(w);

        REQUIRE(w.signal(SIGSTOP));
        const bool stopped = co_await w.wait_stopped(10s);
        REQUIRE(stopped);

        // Its lease runs out while it sleeps; the test takes the lock.
        redcoord::diagnostics diag;
        auto [ec, l] = co_await locks.async_acquire("job", {.ttl = 1s, .wait = 10s}, diag,
                                                    nothrow);
        require_ok(ec, diag);
        REQUIRE(l.is_held());
        CHECK(l.fencing_token() > old_fence);
        auto [wec] = co_await redcoord::async_fenced_set(s, "job-output", "new-holder",
                                                         l.fencing_token(), nothrow);
        CHECK_FALSE(wec);

        REQUIRE(w.signal(SIGCONT));
        auto lost = co_await w.line_starting_with("lost ", 10s);
        REQUIRE(lost);
        CHECK(*lost == "lost " + error_code(redcoord::error::lease_lost).message());
        auto late = co_await w.line_starting_with("fenced-write ", 10s);
        REQUIRE(late);
        CHECK(*late == "fenced-write rejected");
        auto released = co_await w.line_starting_with("release ", 10s);
        REQUIRE(released);
        CHECK(*released == "release not-held");
        auto done = co_await w.line_starting_with("done", 10s);
        CHECK(done);
        auto code = co_await w.wait_exit(10s);
        REQUIRE(code);
        CHECK(*code == 0);

        // The old holder changed nothing: the resource and the lock are the new holder's.
        auto value = co_await get(conn, "job-output");
        CHECK(value == std::optional<std::string>("new-holder"));
        auto stored = co_await command(conn, "GET", key);
        CHECK(redcoord::test::split_lock_value(stored).owner == l.owner());
        CHECK(l.is_held());
        auto [rec] = co_await l.async_release(diag, nothrow);
        require_ok(rec, diag);
    });
}

// Two sessions (two "nodes", each on its own connection) x 4 coroutines contend for one lock
// while the server is restarted twice, each time while a holder is inside a long critical
// section (600 ms, TTL 1 s, kept by the watchdog) and the others wait: once at once
// (restart()), once staying down for 400 ms. With persistence (AOF, fsync always) Redis keeps
// the lock keys and the fencing counter across a restart, so no two holders may ever overlap
// and fencing tokens strictly increase. Without it, Redis forgets the locks: two holders may
// then overlap, but only when one of them is told (its lease is lost, or its release fails),
// never silently; the holder whose lock was forgotten is always told. Either way every
// acquisition ends by its deadline and the lock works again afterwards.
void restart_scenario(bool persistent) {
    redis_options opts;
    if (persistent) opts.extra_config = {"appendonly yes", "appendfsync always"};
    redis_server srv(opts);
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            constexpr int nodes = 2, coroutines = 4, per_epoch = 8;
            constexpr auto wait = 3s, ttl = 1s;
            const auto cfg = config_for(srv);
            std::vector<std::unique_ptr<redcoord::connection>> conns;
            std::vector<std::unique_ptr<session>> sessions;
            std::vector<std::unique_ptr<lock_provider>> providers;
            for (int n = 0; n < nodes; ++n) {
                conns.push_back(std::make_unique<redcoord::connection>(ioc.get_executor()));
                conns.back()->async_run(cfg, asio::detached);
                sessions.push_back(std::make_unique<session>(
                    *conns.back(), redcoord::session_options{.node_id =
                                                                 "node-" + std::to_string(n)}));
                providers.push_back(std::make_unique<lock_provider>(
                    *sessions.back(), lock_options{.default_ttl = ttl}));
            }

            struct section {
                std::int64_t fence = 0;
                int epoch = 0;      // restarts done before it began
                bool long_work = false;
                bool done = false;
                bool told = false;  // lost while held, or its release failed
            };
            std::vector<section> sections;
            std::set<std::size_t> inside;
            std::vector<std::pair<std::size_t, std::size_t>> overlaps;
            std::map<std::string, int> errors;
            int epoch = 0;
            bool stop = false;
            int running = 0;
            int waiting = 0;
            milliseconds worst_overrun{0};

            for (int n = 0; n < nodes; ++n) {
                for (int c = 0; c < coroutines; ++c) {
                    ++running;
                    auto& locks = *providers[static_cast<std::size_t>(n)];
                    asio::co_spawn(
                        ioc,
                        [&, &locks = locks]() -> asio::awaitable<void> {
                            asio::steady_timer t(co_await asio::this_coro::executor);
                            while (!stop) {
                                redcoord::diagnostics diag;
                                const auto t0 = steady::now();
                                ++waiting;
                                auto [ec, l] = co_await locks.async_acquire(
                                    "shared", {.ttl = ttl, .wait = wait}, diag, nothrow);
                                --waiting;
                                worst_overrun = std::max(
                                    worst_overrun, std::chrono::duration_cast<milliseconds>(
                                                       steady::now() - t0 - wait));
                                if (ec) {
                                    ++errors[ec.message() + " (after " +
                                             std::to_string(epoch) + " restarts)"];
                                    t.expires_after(20ms);  // no busy loop while Redis is down
                                    co_await t.async_wait(nothrow);
                                    continue;
                                }
                                const std::size_t me = sections.size();
                                sections.push_back({.fence = l.fencing_token(),
                                                    .epoch = epoch,
                                                    .long_work = me % 4 == 0});
                                for (auto other : inside) overlaps.emplace_back(other, me);
                                inside.insert(me);
                                // The work, cut short when the lease is lost.
                                t.expires_after(sections[me].long_work ? 600ms : 10ms);
                                co_await t.async_wait(
                                    asio::bind_cancellation_slot(l.cancellation_slot(), nothrow));
                                inside.erase(me);
                                const bool lost = l.get_status() == lease::status::lost;
                                auto [rec] = co_await l.async_release(diag, nothrow);
                                sections[me].told = lost || rec;
                                sections[me].done = true;
                            }
                            --running;
                        },
                        asio::detached);
                }
            }

            auto sections_in_epoch = [&](int e) {
                int count = 0;
                for (const auto& s : sections) count += s.epoch == e;
                return count;
            };
            // Runs until `count` critical sections of the current epoch were done (or 20 s).
            auto run_until_sections = [&](int count) -> asio::awaitable<void> {
                const auto until = steady::now() + 20s;
                while (sections_in_epoch(epoch) < count && steady::now() < until)
                    co_await sleep_for(5ms);
            };
            // Waits (up to 20 s) until a long critical section is under way and others wait;
            // returns that section, or -1.
            auto long_holder = [&]() -> asio::awaitable<long> {
                const auto until = steady::now() + 20s;
                while (steady::now() < until) {
                    for (auto i : inside)
                        if (sections[i].long_work && waiting > 0) co_return static_cast<long>(i);
                    co_await sleep_for(5ms);
                }
                co_return -1;
            };

            co_await run_until_sections(per_epoch);
            // Restart at once, a lock held and waiters waiting.
            const long held_at_restart = co_await long_holder();
            srv.restart();
            ++epoch;
            co_await run_until_sections(per_epoch);
            // Down for a while: renewals and attempts fail, then succeed again.
            const long held_at_stop = co_await long_holder();
            srv.stop();
            ++epoch;
            co_await sleep_for(400ms);
            srv.start();
            co_await run_until_sections(per_epoch);
            stop = true;
            {
                const auto until = steady::now() + 30s;
                while (running > 0 && steady::now() < until) co_await sleep_for(5ms);
            }

            std::string error_summary;
            for (const auto& [m, count] : errors)
                error_summary += "\n  " + std::to_string(count) + " x " + m;
            int told = 0;
            for (const auto& s : sections) told += s.told;
            INFO("critical sections: " << sections.size() << " (" << sections_in_epoch(0)
                                       << ", " << sections_in_epoch(1) << ", "
                                       << sections_in_epoch(2) << " per epoch), told: " << told
                                       << ", overlaps: " << overlaps.size()
                                       << ", held at the faults: " << held_at_restart << ", "
                                       << held_at_stop << ", worst overrun of a wait: "
                                       << worst_overrun.count()
                                       << " ms, acquire errors:" << error_summary);
            REQUIRE(running == 0);
            CHECK(waiting == 0);
            // Both faults struck a holder inside its critical section, with waiters waiting.
            REQUIRE(held_at_restart >= 0);
            REQUIRE(held_at_stop >= 0);
            for (const auto& s : sections) CHECK(s.done);
            // Every acquisition ended by its deadline (give or take one request's timeout).
            CHECK(worst_overrun < cfg.request_timeout + 5s);
            // The lock worked after each restart.
            CHECK(sections_in_epoch(1) >= per_epoch);
            CHECK(sections_in_epoch(2) >= per_epoch);
            for (const auto& s : sessions) CHECK(s->held_leases() == 0);

            if (persistent) {
                CHECK(overlaps.empty());
                std::vector<std::int64_t> fences;
                for (const auto& s : sections) fences.push_back(s.fence);
                const long bad = first_not_increasing(fences);
                INFO("fence at " << bad << " is not larger than the one before it");
                CHECK(bad == -1);
            } else {
                // Redis forgot both holders' locks: they were told.
                CHECK(sections[static_cast<std::size_t>(held_at_restart)].told);
                CHECK(sections[static_cast<std::size_t>(held_at_stop)].told);
                for (const auto& [a, b] : overlaps) {
                    INFO("critical sections " << a << " (fence " << sections[a].fence
                                              << ") and " << b << " (fence "
                                              << sections[b].fence << ") overlapped");
                    CHECK((sections[a].told || sections[b].told));
                }
            }

            // Afterwards the lock is free and can be taken.
            redcoord::diagnostics diag;
            auto [ec, l] = co_await providers[0]->async_acquire("shared", {.ttl = ttl, .wait = 5s},
                                                                diag, nothrow);
            require_ok(ec, diag);
            CHECK(l.is_held());
            auto [rec] = co_await l.async_release(diag, nothrow);
            require_ok(rec, diag);

            providers.clear();
            sessions.clear();
            for (auto& c : conns) c->cancel();
        },
        120s);
}

TEST_CASE("lock process: Redis restarted with persistence under held locks and waiters: never "
          "two holders, fencing tokens increase, nothing hangs",
          "[lock-process][single_server]") {
    restart_scenario(true);
}

TEST_CASE("lock process: Redis restarted without persistence under held locks and waiters: "
          "holders that overlap are told, nothing hangs",
          "[lock-process][single_server]") {
    restart_scenario(false);
}

TEST_CASE("lock process: the watchdog keeps a 300 ms lock held for many TTLs and sends nothing "
          "after the release",
          "[lock-process]") {
    with_connection([](redcoord::connection& observer,
                       redis_server& srv) -> asio::awaitable<void> {
        // The holder's own connection, without health-check PINGs: after the release, it has
        // nothing to write at all.
        redcoord::connection conn(co_await asio::this_coro::executor);
        auto cfg = config_for(srv);
        cfg.health_check_interval = 0ms;
        conn.async_run(cfg, asio::detached);
        {
            // No statistics reports either (one goes 5 s after the first acquisition).
            session s(conn, {.statistics_interval = 0ms});
            lock_provider locks(s);
            const std::string key = s.keys().lock("dog");
            redcoord::diagnostics diag;
            auto [ec, l] = co_await locks.async_acquire("dog", {.ttl = 300ms, .wait = 5s}, diag,
                                                        nothrow);
            require_ok(ec, diag);
            REQUIRE(l.is_held());

            // About 2 s, several times the TTL: held throughout.
            for (int i = 0; i < 8; ++i) {
                co_await sleep_for(250ms);
                REQUIRE(l.is_held());
                const auto pttl = co_await int_command(observer, "PTTL", key);
                CHECK(pttl > 0);
                auto stored = co_await command(observer, "GET", key);
                CHECK(redcoord::test::split_lock_value(stored).owner == l.owner());
            }
            CHECK(l.renewals() > 0);
            const auto stats = s.get_lock_statistics();
            CHECK(stats.renewals == l.renewals());
            CHECK(stats.leases_lost == 0);

            auto [rec] = co_await l.async_release(diag, nothrow);
            require_ok(rec, diag);
            CHECK(s.held_leases() == 0);
            auto exists = co_await command(observer, "EXISTS", key);
            CHECK(exists == "0");

            // No renewal after the release: neither the holder's connection nor the server
            // sees another script call over the next few TTLs.
            const auto written = conn.get_usage().commands_written;
            const auto calls = script_calls(srv);
            co_await sleep_for(1s);
            CHECK(conn.get_usage().commands_written == written);
            const auto calls_after = script_calls(srv);
            CHECK(calls_after == calls);
            CHECK(l.renewals() == stats.renewals);
        }
        conn.cancel();
    });
}

}  // namespace
