// A separate process that takes part in a cluster (membership, leader election, queues,
// barriers, rate limiters), for the cross-process and fault tests (test/integration:
// cluster/membership_test.cpp, cluster/leader_test.cpp, data/queue_test.cpp,
// data/barrier_test.cpp, data/rate_limiter_test.cpp). It prints one line per event on stdout,
// flushed at once, so the test can follow it through a pipe:
//
//   cluster_worker <server> leader <node> <name> <ttl_ms> <renew_ms> <resource>
//       Joins the membership as <node> (heartbeat every 200 ms, grace 300 ms) and runs
//       leader-only work as leader of <name> (leadership_timeout <ttl_ms>, renewal_interval
//       <renew_ms>). Prints "joined"; "elected <term>" once in office; writes <resource> fenced
//       with the term ("fenced-write ok"); then works until the leadership is lost: "work
//       cancelled" when the work was cancelled, "lost <reason>"; then writes <resource> again
//       with the old term ("fenced-write rejected" when the term was stale); prints "done".
//
//   cluster_worker <server> member <node> <interval_ms> <grace_ms> [lock <name> <ttl_ms>]
//                  [leave <after_ms>]
//       Joins the membership as <node> and prints "joined"; with lock, acquires lock <name>
//       (TTL <ttl_ms>, renewed by the watchdog) and prints "locked <fence>"; with leave, leaves
//       gracefully after <after_ms> ms ("left") and exits 0; otherwise heartbeats until killed.
//
//   cluster_worker <server> elections <node> <name> <candidates> <rounds> <ttl_ms> <renew_ms>
//       <candidates> candidates, each on a connection and session of its own (node ids
//       <node>-1, <node>-2, ...), each <rounds> times: campaigns for <name>; in office appends
//       "start <term> <node> <server time us>" to the list "intervals", holds a moment, checks
//       it still leads, appends "end <term> <node> <server time us>", resigns. Prints
//       "ready" when connected, then "done <terms held>", or "error ..." lines (exit code 1).
//
//   cluster_worker <server> consumer <node> <queue> <interval_ms> <grace_ms> [ack]
//       Joins the membership as <node> (so its heartbeat key exists while it lives; heartbeat
//       every <interval_ms>, grace <grace_ms>) and prints "joined"; takes one item of the
//       reliable queue <queue> as consumer <node> (waiting up to 30 s) and prints
//       "holding <id> <payload>". With ack, acknowledges it, prints "acked <id>" and exits 0;
//       otherwise holds it, unacknowledged, until killed.
//
//   cluster_worker <server> barrier <node> <batch> <total>
//       Arrives at barrier <batch> ("arrived <count>"), waits up to 60 s for <total> arrivals,
//       prints "released <count>" and exits 0.
//
//   cluster_worker <server> job <node> <job> <ok|fail> [<dependency>...]
//       Prints "started", waits up to 60 s until every <dependency> completed, prints
//       "runnable", records <job> as completed (successfully with ok, failed with fail and the
//       reason "<job> failed on purpose"), prints "completed" and exits 0. When a dependency
//       failed: prints "blocked <message>", records <job> as failed ("dependency failed") and
//       exits 0.
//
//   cluster_worker <server> rate <node> <name> <limit> <window_ms> <duration_ms>
//       Prints "ready", then for <duration_ms> ms takes single permits of the rate limiter
//       <name> (<limit> per <window_ms> ms) with async_try_acquire, as fast as it can: prints
//       "took <server time ms>" for each permit taken; after a refusal sleeps a random part of
//       the retry_after. Prints "done <permits taken>" and exits 0.
//
// <server> is the port of a redis-server on 127.0.0.1, or a connection string such as
// "127.0.0.1:7000,127.0.0.1:7001,cluster=true" (a Redis Cluster; the tests' port_of).
//
// The process gives up after two minutes (SIGALRM), so it never outlives a broken test.
#include <redcoord/leader.hpp>
#include <redcoord/membership.hpp>
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
#include <exception>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
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
using redcoord::test::worker::sleep_for;

// Session options naming this process's node.
redcoord::session_options as_node(const std::string& node) {
    redcoord::session_options so;
    so.node_id = node;
    return so;
}

redcoord::membership_options heartbeats(milliseconds interval, milliseconds grace) {
    redcoord::membership_options mo;
    mo.heartbeat_interval = interval;
    mo.heartbeat_grace = grace;
    return mo;
}

// A session as <node> and its membership (heartbeat every `interval`, grace `grace`).
struct member_session {
    std::string node;
    redcoord::session s;
    redcoord::membership members;

    member_session(redcoord::connection& conn, std::string node_id, milliseconds interval,
                   milliseconds grace)
        : node(std::move(node_id)),
          s(conn, as_node(node)),
          members(s, heartbeats(interval, grace)) {}

    // Joins the membership as <node> and prints "joined"; false, after "error join: ...", when
    // it failed.
    asio::awaitable<bool> join() {
        auto [jec] = co_await members.async_join(node, nothrow);
        if (jec) {
            say("error join: " + jec.message());
            co_return false;
        }
        say("joined");
        co_return true;
    }
};

asio::awaitable<int> leader_mode(redcoord::connection& conn, std::string node, std::string name,
                                 milliseconds ttl, milliseconds renew, std::string resource) {
    if (!co_await ping(conn)) co_return 1;
    member_session m(conn, node, 200ms, 300ms);
    if (!co_await m.join()) co_return 1;
    auto& s = m.s;

    redcoord::leader_options lo;
    lo.leadership_timeout = ttl;
    lo.renewal_interval = renew;
    redcoord::leader_election election(s, lo, &m.members);
    std::int64_t term = 0;
    auto fenced_write = [&](std::string value) -> asio::awaitable<void> {
        auto [wec] = co_await redcoord::async_fenced_set(s, resource, std::move(value), term,
                                                         nothrow);
        if (!wec)
            say("fenced-write ok");
        else if (wec == redcoord::error::stale_fencing_token)
            say("fenced-write rejected");
        else
            say("fenced-write error " + wec.message());
    };
    auto work = [&](redcoord::lease& l) -> asio::awaitable<void> {
        term = l.fencing_token();
        say("elected " + std::to_string(term));
        co_await fenced_write(node + " term " + std::to_string(term));
        try {
            for (;;) co_await sleep_for(20ms);  // leader-only work
        } catch (const boost::system::system_error&) {
            say("work cancelled");
            throw;
        }
    };
    auto [ep] = co_await election.async_run_as_leader(name, work, nothrow);
    if (!ep) {
        say("error the work ended without losing the leadership");
        co_return 1;
    }
    try {
        std::rethrow_exception(ep);
    } catch (const redcoord::error_with_diagnostics& e) {
        say("lost " + e.code().message());
    } catch (const std::exception& e) {
        say(std::string("error ") + e.what());
        co_return 1;
    }
    co_await fenced_write(node + " late, term " + std::to_string(term));
    say("done");
    co_return 0;
}

asio::awaitable<int> member_mode(redcoord::connection& conn, std::string node,
                                 milliseconds interval, milliseconds grace,
                                 std::optional<std::string> lock, milliseconds lock_ttl,
                                 std::optional<milliseconds> leave_after) {
    if (!co_await ping(conn)) co_return 1;
    member_session m(conn, node, interval, grace);
    if (!co_await m.join()) co_return 1;
    redcoord::lock_provider locks(m.s);
    redcoord::lease held;
    if (lock) {
        redcoord::acquire_options ao;
        ao.ttl = lock_ttl;
        ao.wait = 10s;
        redcoord::diagnostics diag;
        auto [lec, l] = co_await locks.async_acquire(*lock, ao, diag, nothrow);
        if (lec) {
            say("error acquire: " + describe(lec, diag));
            co_return 1;
        }
        say("locked " + std::to_string(l.fencing_token()));
        held = std::move(l);
    }
    if (!leave_after) {
        for (;;) co_await sleep_for(1s);
    }
    co_await sleep_for(*leave_after);
    auto [lec] = co_await m.members.async_leave(node, nothrow);
    if (lec) {
        say("error leave: " + lec.message());
        co_return 1;
    }
    say("left");
    co_return 0;
}

// The server's clock in microseconds, appended with `what` to the list "intervals" in one
// script, so the order of the list is the order in which Redis saw the events.
const redcoord::script& record_script() {
    static const redcoord::script sc(
        "local t = redis.call('TIME')\n"
        "redis.call('RPUSH', KEYS[1], ARGV[1] .. ' ' .. t[1] .. string.format('%06d', t[2]))\n"
        "return 1\n");
    return sc;
}

asio::awaitable<bool> record(redcoord::connection& conn, std::string what) {
    std::int64_t reply = 0;
    redcoord::diagnostics diag;
    std::vector<std::string> keys{"intervals"};
    std::vector<std::string> args{std::move(what)};
    auto [ec, n] = co_await redcoord::async_eval(conn, record_script(), keys, args, reply, diag,
                                                 nothrow);
    if (ec) say("error record: " + describe(ec, diag));
    co_return !ec;
}

asio::awaitable<int> elections_mode(std::string server, std::string node, std::string name,
                                    int candidates, int rounds, milliseconds ttl,
                                    milliseconds renew) {
    auto ex = co_await asio::this_coro::executor;
    struct candidate {
        std::unique_ptr<redcoord::connection> conn;
        std::unique_ptr<redcoord::session> s;
        std::unique_ptr<redcoord::leader_election> election;
        std::string node;
    };
    std::vector<candidate> cs;
    redcoord::leader_options lo;
    lo.leadership_timeout = ttl;
    lo.renewal_interval = renew;
    for (int i = 0; i < candidates; ++i) {
        candidate c;
        c.node = node + "-" + std::to_string(i + 1);
        c.conn = std::make_unique<redcoord::connection>(ex);
        c.conn->async_run(config_for(server), asio::detached);
        if (!co_await ping(*c.conn)) co_return 1;
        c.s = std::make_unique<redcoord::session>(*c.conn, as_node(c.node));
        c.election = std::make_unique<redcoord::leader_election>(*c.s, lo);
        cs.push_back(std::move(c));
    }
    say("ready");

    int finished = 0;
    int terms = 0;
    bool failed = false;
    auto fail = [&](const std::string& what) {
        failed = true;
        say("error " + what);
    };
    for (auto& c : cs) {
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
                std::mt19937 rng(std::random_device{}());
                for (int r = 0; r < rounds && !failed; ++r) {
                    auto [ec, l] = co_await c.election->async_campaign(name, nothrow);
                    if (ec) {
                        fail(c.node + " campaign: " + ec.message());
                        break;
                    }
                    const auto term = std::to_string(l.fencing_token());
                    if (!co_await record(*c.conn, "start " + term + " " + c.node)) {
                        failed = true;
                        break;
                    }
                    co_await sleep_for(milliseconds(rng() % 5));
                    if (!l.is_held()) {
                        fail(c.node + " lost term " + term + " while in office: " +
                             l.lost_reason().message());
                        break;
                    }
                    if (!co_await record(*c.conn, "end " + term + " " + c.node)) {
                        failed = true;
                        break;
                    }
                    redcoord::diagnostics diag;
                    auto [rec] = co_await c.election->async_resign(l, nothrow);
                    if (rec) {
                        fail(c.node + " resign: " + rec.message());
                        break;
                    }
                    ++terms;
                }
                ++finished;
            },
            asio::detached);
    }
    asio::steady_timer t(ex);
    while (finished < candidates) {
        t.expires_after(5ms);
        co_await t.async_wait(nothrow);
    }
    for (auto& c : cs) c.conn->cancel();
    if (failed) co_return 1;
    say("done " + std::to_string(terms));
    co_return 0;
}

asio::awaitable<int> consumer_mode(redcoord::connection& conn, std::string node,
                                   std::string queue, milliseconds interval, milliseconds grace,
                                   bool ack) {
    if (!co_await ping(conn)) co_return 1;
    member_session m(conn, node, interval, grace);
    if (!co_await m.join()) co_return 1;
    redcoord::reliable_queue q(m.s);
    // Errors end the worker through run_to_exit, with their diagnostics.
    const auto throwing = redcoord::with_diagnostics(asio::use_awaitable);
    auto item = co_await q.async_dequeue(queue, node, 30s, throwing);
    if (!item) {
        say("error nothing to take from " + queue);
        co_return 1;
    }
    say("holding " + item->id + " " + item->payload);
    if (!ack) {
        for (;;) co_await sleep_for(1s);  // the item stays unacknowledged until the kill
    }
    const bool acked = co_await q.async_ack(queue, node, item->raw, throwing);
    if (!acked) {
        say("error " + item->id + " was no longer in the processing list");
        co_return 1;
    }
    say("acked " + item->id);
    co_return 0;
}

asio::awaitable<int> barrier_mode(redcoord::connection& conn, std::string node,
                                  std::string batch, std::int64_t total) {
    if (!co_await ping(conn)) co_return 1;
    redcoord::session s(conn, as_node(node));
    redcoord::barrier b(s);
    const auto throwing = redcoord::with_diagnostics(asio::use_awaitable);
    const std::int64_t arrivals = co_await b.async_arrive(batch, throwing);
    say("arrived " + std::to_string(arrivals));
    const std::int64_t seen = co_await b.async_wait(batch, total, 60s, throwing);
    say("released " + std::to_string(seen));
    co_return 0;
}

asio::awaitable<int> job_mode(redcoord::connection& conn, std::string node, std::string job,
                              bool succeed, std::vector<std::string> deps) {
    if (!co_await ping(conn)) co_return 1;
    redcoord::session s(conn, as_node(node));
    redcoord::dependencies d(s);
    say("started");
    redcoord::diagnostics diag;
    auto [wec] = co_await d.async_wait_dependencies(job, deps, 60s, diag, nothrow);
    const bool blocked = wec == redcoord::error::dependency_failed;
    if (blocked)
        say("blocked " + diag.message());
    else
        redcoord::throw_on_error(wec, diag);
    std::string reason;
    if (blocked) {
        reason = "dependency failed";
    } else {
        say("runnable");
        if (!succeed) reason = job + " failed on purpose";
    }
    co_await d.async_complete(job, !blocked && succeed, reason,
                              redcoord::with_diagnostics(asio::use_awaitable));
    if (!blocked) say("completed");
    co_return 0;
}

asio::awaitable<int> rate_mode(redcoord::connection& conn, std::string node, std::string name,
                               std::uint32_t limit, milliseconds window, milliseconds duration) {
    if (!co_await ping(conn)) co_return 1;
    redcoord::session s(conn, as_node(node));
    redcoord::rate_limiter limiter(s);
    const redcoord::rate_limit rate{limit, window};
    std::mt19937 rng(std::random_device{}());
    say("ready");
    const auto until = std::chrono::steady_clock::now() + duration;
    std::int64_t taken = 0;
    while (std::chrono::steady_clock::now() < until) {
        redcoord::diagnostics diag;
        auto [ec, d] = co_await limiter.async_try_acquire(name, rate, diag, nothrow);
        if (ec) {
            say("error try_acquire: " + describe(ec, diag));
            co_return 1;
        }
        if (d.allowed) {
            ++taken;
            say("took " + std::to_string(d.server_time.count()));
        } else {
            co_await sleep_for(milliseconds(rng() % (d.retry_after.count() + 1)));
        }
    }
    say("done " + std::to_string(taken));
    co_return 0;
}

int usage() {
    say("error usage: cluster_worker <server> leader <node> <name> <ttl_ms> <renew_ms> <resource>"
        " | cluster_worker <server> member <node> <interval_ms> <grace_ms> [lock <name> <ttl_ms>]"
        " [leave <after_ms>] | cluster_worker <server> elections <node> <name> <candidates>"
        " <rounds> <ttl_ms> <renew_ms> | cluster_worker <server> consumer <node> <queue>"
        " <interval_ms> <grace_ms> [ack] | cluster_worker <server> barrier <node> <batch> <total>"
        " | cluster_worker <server> job <node> <job> <ok|fail> [<dependency>...]"
        " | cluster_worker <server> rate <node> <name> <limit> <window_ms> <duration_ms>");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    redcoord::test::worker::limit_lifetime();
    if (argc < 3) return usage();
    const std::string server = argv[1];
    const std::string mode = argv[2];
    const std::vector<std::string> args(argv + 3, argv + argc);
    auto ms = [](const std::string& v) { return milliseconds(std::atoll(v.c_str())); };

    asio::io_context ioc;
    redcoord::connection conn(ioc.get_executor());
    if (mode != "elections") conn.async_run(config_for(server), asio::detached);

    asio::awaitable<int> body = [&]() -> asio::awaitable<int> {
        if (mode == "leader" && args.size() == 5)
            return leader_mode(conn, args[0], args[1], ms(args[2]), ms(args[3]), args[4]);
        if (mode == "member" && args.size() >= 3) {
            std::optional<std::string> lock;
            milliseconds lock_ttl{0};
            std::optional<milliseconds> leave_after;
            for (std::size_t i = 3; i < args.size();) {
                if (args[i] == "lock" && i + 2 < args.size()) {
                    lock = args[i + 1];
                    lock_ttl = ms(args[i + 2]);
                    i += 3;
                } else if (args[i] == "leave" && i + 1 < args.size()) {
                    leave_after = ms(args[i + 1]);
                    i += 2;
                } else {
                    return {};
                }
            }
            return member_mode(conn, args[0], ms(args[1]), ms(args[2]), lock, lock_ttl,
                               leave_after);
        }
        if (mode == "elections" && args.size() == 6)
            return elections_mode(server, args[0], args[1], std::atoi(args[2].c_str()),
                                  std::atoi(args[3].c_str()), ms(args[4]), ms(args[5]));
        if (mode == "consumer" && (args.size() == 4 || (args.size() == 5 && args[4] == "ack")))
            return consumer_mode(conn, args[0], args[1], ms(args[2]), ms(args[3]),
                                 args.size() == 5);
        if (mode == "barrier" && args.size() == 3)
            return barrier_mode(conn, args[0], args[1], std::atoll(args[2].c_str()));
        if (mode == "job" && args.size() >= 3 && (args[2] == "ok" || args[2] == "fail"))
            return job_mode(conn, args[0], args[1], args[2] == "ok",
                            std::vector<std::string>(args.begin() + 3, args.end()));
        if (mode == "rate" && args.size() == 5)
            return rate_mode(conn, args[0], args[1],
                             static_cast<std::uint32_t>(std::atoll(args[2].c_str())),
                             ms(args[3]), ms(args[4]));
        return {};
    }();
    if (!body.valid()) return usage();

    return redcoord::test::worker::run_to_exit(ioc, conn, std::move(body));
}
