// Coordination tracing (session_options::trace): what each switch emits for locks, leases,
// elections, nodes, the connection and jobs, with the resource, owner, fencing token or term.
#include <redcoord/redcoord.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "connection_helpers.hpp"
#include "lease_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
const redcoord::acquire_options defaults{};
using namespace std::chrono_literals;
using redcoord::lock_provider;
using redcoord::session;
using redcoord::trace_event;
using redcoord::trace_kind;
using redcoord::test::command;
using redcoord::test::must_acquire;
using redcoord::test::must_release;
using redcoord::test::nothrow;
using redcoord::test::wait_for;
using redcoord::test::with_connection;

// A copy of an event (its views live only during the sink's call).
struct seen_event {
    trace_kind kind;
    std::string primitive, resource, node, owner, detail;
    std::int64_t token = 0;
    std::chrono::microseconds duration{0};
};

struct recorder {
    std::vector<seen_event> events;

    redcoord::trace_sink sink() {
        return [this](const trace_event& e) {
            CHECK(e.time > std::chrono::system_clock::time_point{});
            events.push_back({e.kind, std::string(e.primitive), std::string(e.resource),
                              std::string(e.node), std::string(e.owner), std::string(e.detail),
                              e.token, e.duration});
        };
    }
    std::vector<seen_event> of(trace_kind k, const std::string& resource = {}) const {
        std::vector<seen_event> out;
        for (const auto& e : events)
            if (e.kind == k && (resource.empty() || e.resource == resource)) out.push_back(e);
        return out;
    }
    std::vector<trace_kind> kinds_of(const std::string& resource) const {
        std::vector<trace_kind> out;
        for (const auto& e : events)
            if (e.resource == resource) out.push_back(e.kind);
        return out;
    }
};

redcoord::session_options traced(std::string node, recorder& r, bool locks, bool elections,
                                 bool coordination) {
    redcoord::session_options o;
    o.node_id = std::move(node);
    o.trace.lock_tracing = locks;
    o.trace.leader_election_logging = elections;
    o.trace.coordination_events = coordination;
    o.trace.sink = r.sink();
    return o;
}

TEST_CASE(
    "trace: a lock's acquisition, contention, wake-up and release, with owner and "
    "fencing token",
    "[trace]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        recorder ra, rb;
        session a(conn, traced("node-a", ra, true, false, false));
        session b(conn, traced("node-b", rb, true, false, false));
        lock_provider la(a), lb(b);
        auto first = co_await must_acquire(la, "orders", defaults);
        REQUIRE(ra.of(trace_kind::lock_acquired, "orders").size() == 1);
        const auto acquired = ra.of(trace_kind::lock_acquired, "orders").front();
        CHECK(acquired.primitive == "mutex");
        CHECK(acquired.node == "node-a");
        CHECK(acquired.owner == first.owner());
        CHECK(acquired.token == first.fencing_token());

        // b waits for it; a's release wakes b.
        bool b_done = false;
        redcoord::lease second;
        asio::co_spawn(
            conn.get_executor(),
            [&]() -> asio::awaitable<void> {
                redcoord::acquire_options ao;
                ao.wait = 10s;
                redcoord::diagnostics d;
                auto [ec, l] = co_await lb.async_acquire("orders", ao, d, nothrow);
                CHECK_FALSE(ec);
                second = std::move(l);
                b_done = true;
            },
            asio::detached);
        REQUIRE(co_await wait_for(
            [&] { return !rb.of(trace_kind::lock_contended, "orders").empty(); }));
        co_await must_release(first);
        REQUIRE(co_await wait_for([&] { return b_done; }));
        REQUIRE(second);

        const auto released = ra.of(trace_kind::lock_released, "orders");
        REQUIRE(released.size() == 1);
        CHECK(released.front().token == acquired.token);
        CHECK(released.front().duration > 0us);
        // Contended, woken (once or more: a wake-up may come before the release), acquired.
        const auto kinds = rb.kinds_of("orders");
        REQUIRE(kinds.size() >= 3);
        CHECK(kinds.front() == trace_kind::lock_contended);
        CHECK(kinds.back() == trace_kind::lock_acquired);
        CHECK(std::count(kinds.begin(), kinds.end(), trace_kind::waiter_woken) >= 1);
        const auto b_acquired = rb.of(trace_kind::lock_acquired, "orders").front();
        CHECK(b_acquired.token == second.fencing_token());
        CHECK(b_acquired.token > acquired.token);
        CHECK(b_acquired.duration > 0us);  // it waited

        // A try that gives up at its deadline.
        redcoord::acquire_options quick;
        quick.wait = 50ms;
        redcoord::diagnostics d;
        auto [ec, none] = co_await la.async_acquire("orders", quick, d, nothrow);
        CHECK(ec == redcoord::error::acquire_timeout);
        const auto timeouts = ra.of(trace_kind::lock_timeout, "orders");
        REQUIRE(timeouts.size() == 1);
        CHECK(timeouts.front().duration >= 50ms);
        co_await must_release(second);
    });
}

TEST_CASE("trace: a lease deleted behind its holder's back is reported lost, with its reason",
          "[trace]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        recorder r;
        session s(conn, traced("node-a", r, true, false, false));
        lock_provider locks(s);
        redcoord::acquire_options ao;
        ao.ttl = 600ms;
        redcoord::diagnostics d;
        auto [ec, l] = co_await locks.async_acquire("billing", ao, d, nothrow);
        REQUIRE_FALSE(ec);
        // Renewals go out every 200 ms and are reported.
        REQUIRE(
            co_await wait_for([&] { return !r.of(trace_kind::lease_renewed, "billing").empty(); }));
        co_await command(conn, "DEL", s.keys().lock("billing"));
        auto [lec] = co_await l.async_wait_lost(nothrow);
        CHECK_FALSE(lec);
        const auto lost = r.of(trace_kind::lease_lost, "billing");
        REQUIRE(lost.size() == 1);
        CHECK(lost.front().token == l.fencing_token());
        CHECK(lost.front().owner == l.owner());
        CHECK_FALSE(lost.front().detail.empty());
        CHECK(r.of(trace_kind::lock_released, "billing").empty());
    });
}

TEST_CASE("trace: switches choose what is emitted: locks, elections, coordination", "[trace]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        recorder elections_only;
        session s(conn, traced("node-a", elections_only, false, true, false));
        lock_provider locks(s);
        auto l = co_await must_acquire(locks, "quiet", defaults);
        co_await must_release(l);
        CHECK(elections_only.events.empty());

        redcoord::leader_options lo;
        lo.leadership_timeout = 2s;
        lo.renewal_interval = 500ms;
        redcoord::leader_election election(s, lo);
        redcoord::diagnostics d;
        auto [ec, term] = co_await election.async_campaign("scheduler", nothrow);
        REQUIRE_FALSE(ec);
        const auto won = elections_only.of(trace_kind::election_won, "scheduler");
        REQUIRE(won.size() == 1);
        CHECK(won.front().primitive == "leadership");
        CHECK(won.front().token == term.fencing_token());
        auto [rec] = co_await election.async_resign(term, nothrow);
        CHECK_FALSE(rec);
        const auto resigned = elections_only.of(trace_kind::election_resigned, "scheduler");
        REQUIRE(resigned.size() == 1);
        CHECK(resigned.front().token == won.front().token);
        // No lock events for the leadership's lease, and none for the lock.
        CHECK(elections_only.of(trace_kind::lock_acquired).empty());
        CHECK(elections_only.of(trace_kind::lock_released).empty());
    });
}

TEST_CASE("trace: a leadership taken away is an election lost", "[trace]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        recorder r;
        session s(conn, traced("node-a", r, false, true, false));
        redcoord::leader_options lo;
        lo.leadership_timeout = 600ms;
        lo.renewal_interval = 200ms;
        redcoord::leader_election election(s, lo);
        auto [ec, term] = co_await election.async_campaign("primary", nothrow);
        REQUIRE_FALSE(ec);
        co_await command(conn, "DEL", s.keys().leader("primary"));
        auto [lec] = co_await term.async_wait_lost(nothrow);
        CHECK_FALSE(lec);
        const auto lost = r.of(trace_kind::election_lost, "primary");
        REQUIRE(lost.size() == 1);
        CHECK(lost.front().token == term.fencing_token());
        CHECK(r.of(trace_kind::lease_lost).empty());
    });
}

TEST_CASE("trace: nodes joining and leaving with heartbeats, and jobs moving through their states",
          "[trace]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        recorder r;
        session s(conn, traced("node-a", r, false, false, true));
        {
            redcoord::membership_options mo;
            mo.heartbeat_interval = 100ms;
            redcoord::membership members(s, mo);
            auto [ec] = co_await members.async_join("worker-1", nothrow);
            REQUIRE_FALSE(ec);
            REQUIRE(r.of(trace_kind::node_joined, "worker-1").size() == 1);
            REQUIRE(co_await wait_for(
                [&] { return !r.of(trace_kind::heartbeat, "worker-1").empty(); }));
            auto [lec] = co_await members.async_leave("worker-1", nothrow);
            REQUIRE_FALSE(lec);
            CHECK(r.of(trace_kind::node_left, "worker-1").size() == 1);
        }

        redcoord::scheduler_options so;
        so.poll_interval = 100ms;
        so.lease = 2s;
        redcoord::scheduler sched(s, so);
        sched.add_function("noop",
                           [](redcoord::job_context&) -> asio::awaitable<void> { co_return; });
        asio::co_spawn(conn.get_executor(), sched.async_run(asio::use_awaitable), asio::detached);
        redcoord::job_request req{.function = "noop"};
        auto [ec, enqueued] = co_await sched.async_enqueue(req, nothrow);
        REQUIRE_FALSE(ec);
        const std::string id = enqueued;  // (clang 14: a lambda cannot capture a binding)
        auto [wec, rec] = co_await sched.async_wait(id, 20s, nothrow);
        REQUIRE(rec);
        REQUIRE(
            co_await wait_for([&] { return r.of(trace_kind::job_transition, id).size() >= 2; }));
        const auto steps = r.of(trace_kind::job_transition, id);
        CHECK(steps[0].detail == "running noop");
        CHECK(steps[1].detail == "succeeded noop");
        CHECK(steps[1].token == 1);  // the attempt
        sched.stop();
    });
}

TEST_CASE("trace: the connection going down, retrying and coming back", "[trace][single_server]") {
    with_connection([](redcoord::connection& conn, auto& srv) -> asio::awaitable<void> {
        recorder r;
        session s(conn, traced("node-a", r, false, false, true));
        co_await command(conn, "PING");
        // (The session may have seen the connection's first connect.)
        const auto ups = r.of(trace_kind::connection_up).size();
        srv.stop();
        REQUIRE(co_await wait_for(
            [&] { return !r.of(trace_kind::connection_reconnecting).empty(); }));
        const auto retrying = r.of(trace_kind::connection_reconnecting).front();
        CHECK_FALSE(retrying.detail.empty());
        CHECK(retrying.duration > 0us);
        srv.start();
        REQUIRE(co_await wait_for([&] { return r.of(trace_kind::connection_up).size() > ups; }));
        const auto down = r.of(trace_kind::connection_down);
        REQUIRE(down.size() == 1);
        CHECK_FALSE(down.front().detail.empty());
        const auto up = r.of(trace_kind::connection_up).back();
        CHECK(up.primitive == "connection");
        CHECK(up.resource == "127.0.0.1:" + std::to_string(srv.port()));
        CHECK(up.duration > 0us);  // how long it was down
    });
}

TEST_CASE("trace: the stream sink writes one line or one JSON object per event", "[trace]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        std::ostringstream lines, json;
        redcoord::session_options o;
        o.node_id = "node-a";
        o.trace.lock_tracing = true;
        auto text_sink = redcoord::stream_sink(lines);
        auto json_sink = redcoord::stream_sink(json, true);
        o.trace.sink = [&](const trace_event& e) {
            text_sink(e);
            json_sink(e);
        };
        session s(conn, o);
        lock_provider locks(s);
        auto l = co_await must_acquire(locks, "a\nb", defaults);
        co_await must_release(l);
        // Two events, two lines each; the name's newline does not break a line.
        const std::string text = lines.str();
        CHECK(std::count(text.begin(), text.end(), '\n') == 2);
        CHECK(text.find("lock.acquired mutex 'a b' node=node-a owner=" + l.owner() +
                        " token=" + std::to_string(l.fencing_token())) != std::string::npos);
        std::istringstream in(json.str());
        std::string line;
        std::vector<boost::json::object> objects;
        while (std::getline(in, line)) objects.push_back(boost::json::parse(line).as_object());
        REQUIRE(objects.size() == 2);
        CHECK(objects[0].at("event").as_string() == "lock.acquired");
        CHECK(objects[0].at("resource").as_string() == "a\nb");
        CHECK(objects[0].at("token").as_int64() == l.fencing_token());
        CHECK(objects[1].at("event").as_string() == "lock.released");
        CHECK(objects[1].at("duration_us").as_int64() > 0);
    });
}

}  // namespace
