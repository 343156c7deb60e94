// Leader election against a real redis-server: campaign and resign, the leadership key, watches,
// leaders in other processes (test/support/cluster_worker.cpp) killed with SIGKILL or paused
// with SIGSTOP, many candidates in many processes that must never lead at once, Redis restarts,
// the quorum guard and bad options. Every wait is bounded; the tests assert outcomes, not
// timings.
#include <redcoord/leader.hpp>
#include <redcoord/membership.hpp>
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "async_test.hpp"
#include "cluster_process.hpp"
#include "connection_helpers.hpp"
#include "lock_fields.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::leader_election;
using redcoord::leader_info;
using redcoord::leader_options;
using redcoord::lease;
using redcoord::membership;
using redcoord::membership_options;
using redcoord::session;
using redcoord::session_options;
using redcoord::test::as_node;
using redcoord::test::cluster_process;
using redcoord::test::command;
using redcoord::test::config_for;
using redcoord::test::eventually;
using redcoord::test::nothrow;
using redcoord::test::port_of;
using redcoord::test::redis_server;
using redcoord::test::require_ok;
using redcoord::test::sleep_for;
using redcoord::test::with_connection;
using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

leader_options short_terms(milliseconds ttl, milliseconds renew) {
    leader_options o;
    o.leadership_timeout = ttl;
    o.renewal_interval = renew;
    return o;
}

asio::awaitable<std::optional<leader_info>> info_of(leader_election& e, std::string name) {
    auto [ec, info] = co_await e.async_leader_info(std::move(name), nothrow);
    REQUIRE_FALSE(ec);
    co_return info;
}

// cluster_worker arguments for node-w leading "scheduler" (lease `ttl`, renewed every `renew`)
// and writing `resource` fenced with its term.
std::vector<std::string> old_leader_args(const redis_server& srv, milliseconds ttl,
                                         milliseconds renew, std::string resource) {
    return {port_of(srv), "leader", "node-w", "scheduler", std::to_string(ttl.count()),
            std::to_string(renew.count()), std::move(resource)};
}

// A campaign running in the background; `done` once elected (or failed).
struct pending_campaign {
    bool done = false;
    error_code ec;
    lease leadership;
    asio::cancellation_signal cancel;

    void start(leader_election& e, std::string name) {
        e.async_campaign(std::move(name),
                         asio::bind_cancellation_slot(cancel.slot(), [this](error_code ec, lease l) {
                             this->ec = ec;
                             leadership = std::move(l);
                             done = true;
                         }));
    }
};

// Every state a watch reported, as "node/term" or "none".
struct watch_log {
    std::vector<std::string> seen;
    std::function<void(const std::optional<leader_info>&)> recorder() {
        return [this](const std::optional<leader_info>& i) {
            seen.push_back(i ? i->node + "/" + std::to_string(i->term) : "none");
        };
    }
    bool contains(const std::string& s) const {
        return std::find(seen.begin(), seen.end(), s) != seen.end();
    }
    std::vector<std::string> leaders() const {
        std::vector<std::string> out;
        for (const auto& s : seen)
            if (s != "none") out.push_back(s);
        return out;
    }
    std::string text() const {
        std::string out;
        for (const auto& s : seen) out += s + "; ";
        return out;
    }
};

TEST_CASE("leader: a campaign elects, the leadership key and async_leader_info describe the "
          "leader, and resigning clears it",
          "[leader]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, as_node("node-a"));
        leader_election election(s, short_terms(5s, 1s));
        auto none = co_await info_of(election, "scheduler");
        CHECK_FALSE(none);

        auto [ec, l] = co_await election.async_campaign("scheduler", nothrow);
        REQUIRE_FALSE(ec);
        REQUIRE(l.is_held());
        CHECK(l.key() == "redcoord:leader:{scheduler}");
        CHECK(l.resource() == "scheduler");
        const auto first_term = l.fencing_token();
        CHECK(first_term > 0);
        CHECK(l.ttl() == 5s);
        const auto stored = co_await command(conn, "GET", "redcoord:leader:{scheduler}");
        CHECK(redcoord::test::split_lock_value(stored).node == "node-a");
        const auto fence = co_await command(conn, "GET", "redcoord:leader:{scheduler}:fence");
        CHECK(fence == std::to_string(first_term));
        const auto pttl =
            std::stoll(co_await command(conn, "PTTL", "redcoord:leader:{scheduler}"));
        CHECK(pttl > 0);
        CHECK(pttl <= 5000);

        auto info = co_await info_of(election, "scheduler");
        REQUIRE(info);
        CHECK(info->name == "scheduler");
        CHECK(info->node == "node-a");
        CHECK(info->owner == l.owner());
        CHECK(info->term == first_term);
        CHECK(info->since <= std::chrono::system_clock::now() + 5s);
        CHECK(info->expires > std::chrono::system_clock::now() - 1s);

        auto [rec] = co_await election.async_resign(l, nothrow);
        REQUIRE_FALSE(rec);
        CHECK_FALSE(l.is_held());
        auto after = co_await info_of(election, "scheduler");
        CHECK_FALSE(after);

        // Terms only grow: the next leader has a larger term.
        auto [ec2, l2] = co_await election.async_campaign("scheduler", nothrow);
        REQUIRE_FALSE(ec2);
        CHECK(l2.fencing_token() > first_term);
        auto [rec2] = co_await election.async_resign(l2, nothrow);
        CHECK_FALSE(rec2);

        // Bad input is an error, not a hang.
        auto [bec, bl] = co_await election.async_campaign("", nothrow);
        CHECK(bec == redcoord::error::invalid_argument);
        auto [iec, ii] = co_await election.async_leader_info("", nothrow);
        CHECK(iec == redcoord::error::invalid_argument);
    });
}

TEST_CASE("leader: on_acquired and on_lost are called for each term this election wins and "
          "loses, not on a resignation, and a campaign may set its own TTL and renewal interval",
          "[leader]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, as_node("node-a"));
        std::vector<leader_info> acquired;
        std::vector<std::pair<leader_info, error_code>> lost;
        auto o = short_terms(5s, 1s);
        o.on_acquired = [&](const leader_info& i) { acquired.push_back(i); };
        o.on_lost = [&](const leader_info& i, error_code why) { lost.emplace_back(i, why); };
        leader_election election(s, o);

        // Its own TTL and renewal interval for this campaign.
        redcoord::campaign_options co;
        co.leadership_timeout = 2s;
        co.renewal_interval = 100ms;
        auto [ec, l] = co_await election.async_campaign("scheduler", co, nothrow);
        REQUIRE_FALSE(ec);
        CHECK(l.ttl() == 2s);
        const auto pttl =
            std::stoll(co_await command(conn, "PTTL", "redcoord:leader:{scheduler}"));
        CHECK(pttl > 0);
        CHECK(pttl <= 2000);
        REQUIRE(acquired.size() == 1);
        CHECK(acquired[0].name == "scheduler");
        CHECK(acquired[0].node == "node-a");
        CHECK(acquired[0].owner == l.owner());
        CHECK(acquired[0].term == l.fencing_token());
        CHECK(lost.empty());

        // Taken away (deleted by hand): the next renewal finds it gone, and on_lost is told.
        co_await command(conn, "DEL", "redcoord:leader:{scheduler}");
        const bool heard = co_await eventually([&] { return !lost.empty(); }, 20s);
        REQUIRE(heard);
        CHECK(lost.size() == 1);
        CHECK(lost[0].first.term == acquired[0].term);
        CHECK(lost[0].second == redcoord::error::lease_lost);
        CHECK_FALSE(l.is_held());

        // A resignation is not a loss.
        auto [ec2, l2] = co_await election.async_campaign("scheduler", nothrow);
        REQUIRE_FALSE(ec2);
        CHECK(l2.ttl() == 5s);
        REQUIRE(acquired.size() == 2);
        CHECK(acquired[1].term > acquired[0].term);
        auto [rec] = co_await election.async_resign(l2, nothrow);
        CHECK_FALSE(rec);
        co_await sleep_for(50ms);
        CHECK(lost.size() == 1);

        // A renewal interval not shorter than the TTL is refused, naming both.
        redcoord::campaign_options bad;
        bad.leadership_timeout = 1s;
        bad.renewal_interval = 1s;
        redcoord::diagnostics diag;
        auto [bec, bl] = co_await election.async_campaign("scheduler", bad, diag, nothrow);
        CHECK(bec == redcoord::error::invalid_argument);
        CHECK(diag.message().find("renewal_interval") != std::string::npos);
        CHECK(diag.message().find("leadership_timeout") != std::string::npos);
        CHECK_FALSE(bl.is_held());
        CHECK(acquired.size() == 2);
    });
}

TEST_CASE("leader: async_resign hands over to a waiting candidate at once (woken by push), and the "
          "watch reports every change",
          "[leader]") {
    with_connection([](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
        session sa(conn, as_node("node-a"));
        // A 60 s leadership: the waiting candidate's fallback timer would take that long, so
        // only the resignation's push can elect it within this test's deadline.
        leader_election ea(sa, short_terms(60s, 20s));

        redcoord::connection conn_b(co_await asio::this_coro::executor);
        conn_b.async_run(config_for(srv), asio::detached);
        session sb(conn_b, as_node("node-b"));
        leader_election eb(sb, short_terms(60s, 20s));

        redcoord::connection conn_w(co_await asio::this_coro::executor);
        conn_w.async_run(config_for(srv), asio::detached);
        session sw(conn_w);
        leader_election ew(sw);
        watch_log log;
        auto w = ew.watch_leader("scheduler", log.recorder());
        const bool initial = co_await eventually([&] { return !log.seen.empty(); }, 10s);
        REQUIRE(initial);
        CHECK(log.seen.front() == "none");

        auto [ec, la] = co_await ea.async_campaign("scheduler", nothrow);
        REQUIRE_FALSE(ec);
        const std::int64_t term_a = la.fencing_token();
        CHECK(term_a > 0);
        const std::string seen_a = "node-a/" + std::to_string(term_a);
        const bool saw_a = co_await eventually([&] { return log.contains(seen_a); }, 10s);
        INFO(log.text());
        CHECK(saw_a);

        pending_campaign b;
        b.start(eb, "scheduler");
        co_await sleep_for(300ms);  // b is waiting (subscribed) by now
        CHECK_FALSE(b.done);

        auto [rec] = co_await ea.async_resign(la, nothrow);
        REQUIRE_FALSE(rec);
        const bool elected = co_await eventually([&] { return b.done; }, 20s);
        REQUIRE(elected);
        REQUIRE_FALSE(b.ec);
        const std::int64_t term_b = b.leadership.fencing_token();
        CHECK(term_b > term_a);
        const std::string seen_b = "node-b/" + std::to_string(term_b);
        const bool saw_b = co_await eventually([&] { return log.contains(seen_b); }, 10s);
        INFO(log.text());
        CHECK(saw_b);
        CHECK(log.leaders() == std::vector<std::string>{seen_a, seen_b});
        auto info = co_await info_of(ea, "scheduler");
        REQUIRE(info);
        CHECK(info->node == "node-b");

        auto [rec2] = co_await eb.async_resign(b.leadership, nothrow);
        CHECK_FALSE(rec2);
        const bool saw_none = co_await eventually([&] { return log.seen.back() == "none"; }, 10s);
        INFO(log.text());
        CHECK(saw_none);
        conn_b.cancel();
        conn_w.cancel();
    });
}

TEST_CASE("leader: a cancelled campaign leaves the race, and leader-only work is "
          "cancelled when the leadership is lost",
          "[leader]") {
    with_connection([](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
        session s(conn, as_node("node-a"));
        leader_election election(s, short_terms(2s, 300ms));
        auto [ec, l] = co_await election.async_campaign("jobs", nothrow);
        REQUIRE_FALSE(ec);
        const std::int64_t first_term = l.fencing_token();

        redcoord::connection conn_b(co_await asio::this_coro::executor);
        conn_b.async_run(config_for(srv), asio::detached);
        session sb(conn_b);
        leader_election eb(sb, short_terms(2s, 300ms));
        pending_campaign waiting;
        waiting.start(eb, "jobs");
        co_await sleep_for(700ms);  // waiting for the push (or its fallback timer) by now
        waiting.cancel.emit(asio::cancellation_type::terminal);
        const bool ended = co_await eventually([&] { return waiting.done; }, 10s);
        REQUIRE(ended);
        CHECK(waiting.ec == asio::error::operation_aborted);
        CHECK_FALSE(waiting.leadership);
        auto [rec] = co_await election.async_resign(l, nothrow);
        REQUIRE_FALSE(rec);
        // The cancelled candidate was never granted a term: the counter still holds the first.
        {
            const auto fence = co_await command(conn, "GET", "redcoord:leader:{jobs}:fence");
            CHECK(fence == std::to_string(first_term));
        }

        // async_run_as_leader: the work runs bound to the term; the key taken away by hand
        // (as another leader would) makes the next renewal fail, which cancels the work.
        bool work_started = false, work_cancelled = false;
        std::int64_t term = 0;
        std::exception_ptr outcome;
        bool finished = false;
        election.async_run_as_leader(
            "jobs",
            [&](lease& lead) -> asio::awaitable<void> {
                work_started = true;
                term = lead.fencing_token();
                try {
                    for (;;) co_await sleep_for(10ms);
                } catch (const boost::system::system_error&) {
                    work_cancelled = true;
                    throw;
                }
            },
            [&](std::exception_ptr ep) {
                outcome = ep;
                finished = true;
            });
        const bool started = co_await eventually([&] { return work_started; }, 10s);
        REQUIRE(started);
        CHECK(term > first_term);
        co_await command(conn, "DEL", "redcoord:leader:{jobs}");
        const bool done = co_await eventually([&] { return finished; }, 10s);
        REQUIRE(done);
        CHECK(work_cancelled);
        REQUIRE(outcome);
        try {
            std::rethrow_exception(outcome);
        } catch (const redcoord::error_with_diagnostics& e) {
            CHECK(e.code() == redcoord::error::lease_lost);
        }
        conn_b.cancel();
    });
}

TEST_CASE("leader: a leader process killed with SIGKILL is replaced once its lease lapses, and the "
          "watch reports the new leader",
          "[leader]") {
    with_connection(
        [](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
            constexpr auto ttl = 2000ms, renew = 500ms;
            cluster_process old_leader(old_leader_args(srv, ttl, renew, "out"));
            auto elected = co_await old_leader.line_starting_with("elected ", 20s);
            INFO(old_leader.transcript());
            REQUIRE(elected);
            const auto old_term = std::stoll(elected->substr(8));

            session s(conn, as_node("node-t"));
            leader_election election(s, short_terms(ttl, renew));
            watch_log log;
            auto w = election.watch_leader("scheduler", log.recorder());
            pending_campaign mine;
            mine.start(election, "scheduler");
            const bool saw_old = co_await eventually(
                [&] { return log.contains("node-w/" + std::to_string(old_term)); }, 10s);
            INFO(log.text());
            CHECK(saw_old);
            CHECK_FALSE(mine.done);  // the old leader renews its lease

            REQUIRE(old_leader.signal(SIGKILL));
            // Bounded by the lease TTL + the renewal interval + generous slack.
            const bool took_over = co_await eventually([&] { return mine.done; },
                                                       ttl + renew + 15s);
            REQUIRE(took_over);
            REQUIRE_FALSE(mine.ec);
            CHECK(mine.leadership.fencing_token() > old_term);
            const auto term = mine.leadership.fencing_token();
            auto info = co_await info_of(election, "scheduler");
            REQUIRE(info);
            CHECK(info->node == "node-t");
            CHECK(info->term == term);
            const bool saw_new = co_await eventually(
                [&] { return log.contains("node-t/" + std::to_string(term)); }, 10s);
            INFO(log.text());
            CHECK(saw_new);
            auto [rec] = co_await election.async_resign(mine.leadership, nothrow);
            CHECK_FALSE(rec);
        },
        60s);
}

TEST_CASE("leader: a leader paused (SIGSTOP) past its lease is replaced, and once resumed its "
          "work is cancelled, it learns it lost and its write fenced with the old term is rejected",
          "[leader]") {
    with_connection(
        [](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
            constexpr auto ttl = 1000ms, renew = 300ms;
            cluster_process old_leader(old_leader_args(srv, ttl, renew, "shared"));
            auto elected = co_await old_leader.line_starting_with("elected ", 20s);
            INFO(old_leader.transcript());
            REQUIRE(elected);
            const auto old_term = std::stoll(elected->substr(8));
            auto wrote = co_await old_leader.next_line(10s);
            REQUIRE(wrote);
            CHECK(*wrote == "fenced-write ok");

            session s(conn, as_node("node-t"));
            leader_election election(s, short_terms(ttl, renew));
            pending_campaign mine;
            mine.start(election, "scheduler");

            REQUIRE(old_leader.signal(SIGSTOP));
            const bool stopped = co_await old_leader.wait_stopped(10s);
            REQUIRE(stopped);
            const bool took_over = co_await eventually([&] { return mine.done; },
                                                       ttl + renew + 15s);
            REQUIRE(took_over);
            REQUIRE_FALSE(mine.ec);
            const auto term = mine.leadership.fencing_token();
            CHECK(term > old_term);
            auto [wec] = co_await redcoord::async_fenced_set(s, "shared", "node-t", term, nothrow);
            REQUIRE_FALSE(wec);

            REQUIRE(old_leader.signal(SIGCONT));
            auto cancelled = co_await old_leader.next_line(20s);
            INFO(old_leader.transcript());
            REQUIRE(cancelled);
            CHECK(*cancelled == "work cancelled");
            auto lost = co_await old_leader.next_line(10s);
            REQUIRE(lost);
            CHECK(lost->starts_with("lost "));
            auto late = co_await old_leader.next_line(10s);
            REQUIRE(late);
            CHECK(*late == "fenced-write rejected");
            auto done = co_await old_leader.next_line(10s);
            REQUIRE(done);
            CHECK(*done == "done");
            auto code = co_await old_leader.wait_exit(10s);
            REQUIRE(code);
            CHECK(*code == 0);

            const auto value = co_await command(conn, "GET", "shared");
            CHECK(value == "node-t");
            CHECK(mine.leadership.is_held());
            auto [rec] = co_await election.async_resign(mine.leadership, nothrow);
            CHECK_FALSE(rec);
        },
        60s);
}

TEST_CASE("leader: never two leaders: candidates in several processes campaign and resign "
          "over and over: terms strictly increase and never overlap",
          "[leader]") {
    with_connection(
        [](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
            constexpr int processes = 3, candidates = 2, rounds = 10;
            std::vector<std::unique_ptr<cluster_process>> workers;
            for (int p = 0; p < processes; ++p) {
                std::vector<std::string> args{port_of(srv),
                                              "elections",
                                              "p" + std::to_string(p + 1),
                                              "scheduler",
                                              std::to_string(candidates),
                                              std::to_string(rounds),
                                              "5000",
                                              "1000"};
                workers.push_back(std::make_unique<cluster_process>(std::move(args)));
            }
            for (auto& w : workers) {
                auto done = co_await w->line_starting_with("done ", 100s);
                INFO(w->transcript());
                REQUIRE(done);
                CHECK(*done == "done " + std::to_string(candidates * rounds));
                auto code = co_await w->wait_exit(10s);
                REQUIRE(code);
                CHECK(*code == 0);
            }

            // The list is in the order Redis saw the events: start and end of one term must
            // alternate, with the same term and node, terms strictly increasing, and the
            // server times of the intervals in order.
            redcoord::request req;
            req.push("LRANGE", "intervals", 0, -1);
            std::vector<std::string> events;
            redcoord::diagnostics diag;
            auto [ec, n] = co_await conn.async_exec(req, events, diag, nothrow);
            require_ok(ec, diag);
            constexpr int terms = processes * candidates * rounds;
            REQUIRE(events.size() == 2 * terms);
            std::int64_t last_term = 0, last_end = 0;
            for (std::size_t i = 0; i < events.size(); i += 2) {
                std::istringstream start(events[i]), end(events[i + 1]);
                std::string what1, what2, node1, node2;
                std::int64_t term1 = 0, term2 = 0, t1 = 0, t2 = 0;
                start >> what1 >> term1 >> node1 >> t1;
                end >> what2 >> term2 >> node2 >> t2;
                INFO("events " << i << ": '" << events[i] << "', '" << events[i + 1] << "'");
                REQUIRE(what1 == "start");
                REQUIRE(what2 == "end");
                REQUIRE(term1 == term2);
                REQUIRE(node1 == node2);
                REQUIRE(term1 > last_term);
                REQUIRE(t1 <= t2);
                REQUIRE(t1 >= last_end);
                last_term = term1;
                last_end = t2;
            }
            // No election after the last recorded term: the counter holds it.
            const auto fence = co_await command(conn, "GET", "redcoord:leader:{scheduler}:fence");
            CHECK(fence == std::to_string(last_term));
        },
        150s);
}

TEST_CASE("leader: a Redis restart while a leader leads: leadership is re-established cleanly "
          "and the watch comes back",
          "[leader][single_server]") {
    with_connection(
        [](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
            session s(conn, as_node("node-a"));
            leader_election election(s, short_terms(1500ms, 300ms));

            redcoord::connection conn_w(co_await asio::this_coro::executor);
            conn_w.async_run(config_for(srv), asio::detached);
            session sw(conn_w);
            leader_election ew(sw);
            watch_log log;
            auto w = ew.watch_leader("scheduler", log.recorder());

            // The leader loop: campaign, lead until the leadership is lost, campaign again.
            lease current;
            int terms = 0;
            int losses = 0;
            bool stop = false;
            bool loop_done = false;
            asio::co_spawn(
                co_await asio::this_coro::executor,
                [&]() -> asio::awaitable<void> {
                    while (!stop) {
                        auto [ec, l] = co_await election.async_campaign("scheduler", nothrow);
                        if (ec) break;
                        current = std::move(l);
                        ++terms;
                        auto [lec] = co_await current.async_wait_lost(nothrow);
                        if (lec) break;  // released: stop
                        ++losses;
                    }
                    loop_done = true;
                },
                asio::detached);
            const bool first = co_await eventually([&] { return terms == 1; }, 10s);
            REQUIRE(first);
            const std::string seen_first = "node-a/" + std::to_string(current.fencing_token());
            const bool seen = co_await eventually([&] { return log.contains(seen_first); }, 10s);
            CHECK(seen);

            srv.restart();

            // Either the leadership survived (it cannot here: the data is gone) or the leader
            // lost it, was told, and was elected again; then the leader key, the lease and the
            // watch agree.
            auto settled = [&]() -> asio::awaitable<bool> {
                if (!current.is_held()) co_return false;
                auto [ec, info] = co_await election.async_leader_info("scheduler", nothrow);
                if (ec || !info || info->owner != current.owner()) co_return false;
                co_return !log.seen.empty() &&
                    log.seen.back() == "node-a/" + std::to_string(info->term);
            };
            bool ok = false;
            const auto deadline = steady::now() + 30s;
            while (!(ok = co_await settled()) && steady::now() < deadline)
                co_await sleep_for(50ms);
            INFO(log.text() << " terms " << terms << " losses " << losses);
            CHECK(ok);
            CHECK(terms == losses + 1);
            CHECK(terms >= 2);  // the data was lost with the restart: re-elected

            stop = true;
            auto [rec] = co_await election.async_resign(current, nothrow);
            CHECK_FALSE(rec);
            const bool ended = co_await eventually([&] { return loop_done; }, 10s);
            CHECK(ended);
            conn_w.cancel();
        },
        60s);
}

TEST_CASE("leader: with require_quorum a campaign waits for minimum_nodes live nodes, and a "
          "leader steps down with quorum_lost when nodes leave",
          "[leader]") {
    with_connection([](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
        session s(conn, as_node("n1"));
        membership_options mo;
        mo.heartbeat_interval = 200ms;
        mo.heartbeat_grace = 300ms;
        membership members(s, mo);
        auto [jec] = co_await members.async_join("", nothrow);
        REQUIRE_FALSE(jec);

        leader_options lo = short_terms(1000ms, 200ms);
        lo.require_quorum = true;
        lo.minimum_nodes = 2;
        leader_election election(s, lo, &members);
        pending_campaign mine;
        mine.start(election, "scheduler");
        // Several quorum checks go by with one live node: no leader.
        co_await sleep_for(1500ms);
        CHECK_FALSE(mine.done);
        auto none = co_await info_of(election, "scheduler");
        CHECK_FALSE(none);

        // A second node joins (another process's membership): the campaign completes.
        redcoord::connection conn2(co_await asio::this_coro::executor);
        conn2.async_run(config_for(srv), asio::detached);
        session s2(conn2);
        membership m2(s2, mo);
        auto [j2] = co_await m2.async_join("n2", nothrow);
        REQUIRE_FALSE(j2);
        const bool elected = co_await eventually([&] { return mine.done; }, 20s);
        REQUIRE(elected);
        REQUIRE_FALSE(mine.ec);
        REQUIRE(mine.leadership.is_held());

        // The second node leaves: the leader steps down.
        auto [lec] = co_await m2.async_leave("n2", nothrow);
        REQUIRE_FALSE(lec);
        auto [wec] = co_await mine.leadership.async_wait_lost(nothrow);
        REQUIRE_FALSE(wec);
        CHECK(mine.leadership.lost_reason() == redcoord::error::quorum_lost);
        const bool released = co_await eventually(
            [&] { return !mine.leadership.is_held(); }, 1s);
        CHECK(released);
        bool gone = false;
        const auto deadline = steady::now() + 10s;
        while (!gone && steady::now() < deadline) {
            auto info = co_await info_of(election, "scheduler");
            gone = !info;
            if (!gone) co_await sleep_for(20ms);
        }
        CHECK(gone);
        conn2.cancel();
    });
}

TEST_CASE("leader: bad options throw error_with_diagnostics naming the field", "[leader]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        membership members(s);
        auto expect_bad = [&](leader_options o, membership* m, const std::string& field) {
            try {
                leader_election e(s, o, m);
                FAIL("no exception for " << field);
            } catch (const redcoord::error_with_diagnostics& e) {
                CHECK(e.code() == redcoord::error::bad_config);
                CHECK(std::string(e.what()).find(field) != std::string::npos);
            }
        };
        expect_bad(short_terms(0ms, 0ms), nullptr, "leadership_timeout");
        expect_bad(short_terms(1000ms, 1000ms), nullptr, "renewal_interval");
        expect_bad(short_terms(1000ms, 0ms), nullptr, "renewal_interval");
        leader_options q = short_terms(1000ms, 300ms);
        q.require_quorum = true;
        expect_bad(q, nullptr, "require_quorum");
        q.minimum_nodes = 0;
        expect_bad(q, &members, "minimum_nodes");
        co_return;
    });
}

}  // namespace

TEST_CASE(
    "leader: every new term is recorded, and async_term_history lists them newest first "
    "(a resignation and an expiry each hand over to a new term, renewals add none)",
    "[leader][terms]") {
    with_connection([](redcoord::connection& conn, redis_server&) -> asio::awaitable<void> {
        session sa(conn, as_node("node-a"));
        session sb(conn, as_node("node-b"));
        leader_election ea(sa, short_terms(1s, 100ms));
        leader_election eb(sb, short_terms(1s, 100ms));

        auto [ec0, none] = co_await ea.async_term_history("reports", nothrow);
        REQUIRE_FALSE(ec0);
        CHECK(none.empty());

        auto [ec1, la] = co_await ea.async_campaign("reports", nothrow);
        REQUIRE_FALSE(ec1);
        co_await sleep_for(400ms);  // a few renewals: the same term
        auto [rec] = co_await ea.async_resign(la, nothrow);
        REQUIRE_FALSE(rec);

        auto [ec2, lb] = co_await eb.async_campaign("reports", nothrow);
        REQUIRE_FALSE(ec2);
        // node-b's leadership ends without a resignation (its key gone, as when it expires),
        // and node-a takes office again: a third term.
        const auto key = sb.keys().leader("reports");
        co_await command(conn, "DEL", key);
        auto [ec3, la2] = co_await ea.async_campaign("reports", nothrow);
        REQUIRE_FALSE(ec3);

        auto [ec4, terms] = co_await ea.async_term_history("reports", nothrow);
        REQUIRE_FALSE(ec4);
        REQUIRE(terms.size() == 3);
        CHECK(terms[0].term == la2.fencing_token());
        CHECK(terms[0].node == "node-a");
        CHECK(terms[0].owner == la2.owner());
        CHECK(terms[1].term == lb.fencing_token());
        CHECK(terms[1].node == "node-b");
        CHECK(terms[1].owner == lb.owner());
        CHECK(terms[2].term == la.fencing_token());
        CHECK(terms[2].node == "node-a");
        CHECK(terms[2].owner == la.owner());
        CHECK(terms[0].term > terms[1].term);
        CHECK(terms[1].term > terms[2].term);
        CHECK(terms[0].at >= terms[1].at);
        CHECK(terms[1].at >= terms[2].at);
        CHECK(terms[2].at > std::chrono::system_clock::time_point{});

        // The list is the leadership's companion, with a TTL of at most 30 days.
        const auto list = redcoord::keyspace::companion(key, "terms");
        CHECK(list == key + ":terms");
        const auto list_ttl = co_await command(conn, "PTTL", list);
        const auto pttl = std::stoll(list_ttl);
        CHECK(pttl > 0);
        CHECK(pttl <= 30LL * 24 * 3600 * 1000);

        // A lock's grants record nothing.
        redcoord::lock_provider locks(sa);
        const redcoord::acquire_options ao;
        auto [lec, l] = co_await locks.async_acquire("reports", ao, nothrow);
        REQUIRE_FALSE(lec);
        const auto lock_terms =
            co_await command(conn, "EXISTS", sa.keys().lock("reports") + ":terms");
        CHECK(lock_terms == "0");
        auto [lrec] = co_await l.async_release(nothrow);
        CHECK_FALSE(lrec);

        auto [bad, nothing] = co_await ea.async_term_history("", nothrow);
        CHECK(bad == redcoord::error::invalid_argument);
        auto [rec2] = co_await ea.async_resign(la2, nothrow);
        CHECK_FALSE(rec2);
    });
}
