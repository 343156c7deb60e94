// The lease contract (DESIGN.md) under network faults, against a real redis-server behind the
// fault proxy (test/support/tcp_proxy.hpp): slow links, a Redis that is stopped or unreachable
// for a while, and tiny TTLs. An operation never completes with a lease whose deadline has
// passed, a leadership is never handed out already lost, a slot taken from a lost lease fires
// at once, and renewals that take long still keep a lease held.
//
// The tests assert states and deadlines as seen at completion, never how long something took;
// the delays only decide what the library sees.
#include <redcoord/leader.hpp>
#include <redcoord/redcoord.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>

#include "connection_helpers.hpp"
#include "lease_helpers.hpp"
#include "proxy_helpers.hpp"
#include "redis_server.hpp"
#include "tcp_proxy.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::acquire_options;
using redcoord::leader_election;
using redcoord::leader_options;
using redcoord::lease;
using redcoord::lock_provider;
using redcoord::session;
using redcoord::test::as_node;
using redcoord::test::command;
using redcoord::test::eventually;
using redcoord::test::must_acquire;
using redcoord::test::nothrow;
using redcoord::test::patient_config;
using redcoord::test::redis_server;
using redcoord::test::sleep_for;
using redcoord::test::tcp_proxy;
using redcoord::test::with_connection;
using redcoord::test::with_proxy;
using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

// How an operation that gives a lease completed, seen from its completion handler itself: the
// earliest moment the caller can look at the lease.
struct lease_outcome {
    bool done = false;
    error_code ec;
    lease l;
    redcoord::diagnostics diag;
    steady::time_point completed_at;
    lease::status status = lease::status::released;
    steady::time_point valid_until;

    // The handler to pass to the operation.
    static auto recorder(const std::shared_ptr<lease_outcome>& out) {
        return [out](error_code ec, lease l) {
            out->completed_at = steady::now();
            out->status = l.get_status();
            out->valid_until = l.valid_until();
            out->ec = ec;
            out->l = std::move(l);
            out->done = true;
        };
    }

    std::string describe() const {
        std::ostringstream os;
        os << "completed with '" << ec.message() << "' (" << diag.message() << "); ";
        if (status == lease::status::held)
            os << "held, valid_until - completion = "
               << std::chrono::duration_cast<std::chrono::microseconds>(valid_until -
                                                                        completed_at)
                      .count()
               << " us";
        else
            os << (status == lease::status::lost ? "lost" : "released");
        return os.str();
    }

    // The contract: an error, or a lease held until a deadline still ahead.
    bool kept() const {
        return ec || (status == lease::status::held && valid_until > completed_at);
    }

    void check() const {
        INFO(describe());
        CHECK(kept());
    }
};

std::shared_ptr<lease_outcome> start_acquire(lock_provider& locks, std::string name,
                                             acquire_options opts) {
    auto out = std::make_shared<lease_outcome>();
    locks.async_acquire(std::move(name), opts, out->diag, lease_outcome::recorder(out));
    return out;
}

std::shared_ptr<lease_outcome> start_campaign(leader_election& e, std::string name) {
    auto out = std::make_shared<lease_outcome>();
    e.async_campaign(std::move(name), lease_outcome::recorder(out));
    return out;
}

asio::awaitable<void> wait_done(const std::shared_ptr<lease_outcome>& out) {
    co_await eventually([&] { return out->done; }, 20s, "the operation to complete");
}

// Releases what the outcome holds, over a healthy link.
asio::awaitable<void> release_if_held(lease_outcome& out) {
    if (out.l.is_held()) co_await redcoord::test::must_release(out.l);
}

leader_options one_second_terms() {
    leader_options o;
    o.leadership_timeout = 1000ms;
    o.renewal_interval = 300ms;
    return o;
}

// How Redis is out of reach for a while.
enum class outage { redis_stopped, proxy_blackholed };

void start_outage(outage how, redis_server& srv, tcp_proxy& proxy) {
    if (how == outage::redis_stopped)
        srv.stop();
    else
        proxy.blackhole();
}

void end_outage(outage how, redis_server& srv, tcp_proxy& proxy) {
    if (how == outage::redis_stopped)
        srv.start();
    else
        proxy.lift_blackhole();
}

// Starts an operation while Redis is out of reach for 1.5 s (a section per kind of outage), then
// checks the lease it gave: make(session) makes the primitive, start(primitive) the operation.
template <class Make, class Start>
void check_through_outage(Make make, Start start) {
    auto how = outage::redis_stopped;
    SECTION("redis-server stopped") { how = outage::redis_stopped; }
    SECTION("the link blackholed") { how = outage::proxy_blackholed; }
    with_proxy(
        [how, &make, &start](redcoord::connection& conn, redcoord::connection&, tcp_proxy& proxy,
                             redis_server& srv) -> asio::awaitable<void> {
            session s(conn, as_node("candidate"));
            auto primitive = make(s);
            start_outage(how, srv, proxy);
            auto out = start(primitive);
            co_await sleep_for(1500ms);
            end_outage(how, srv, proxy);
            co_await wait_done(out);
            out->check();
            co_await release_if_held(*out);
        },
        &patient_config);
}

TEST_CASE("lease fault: an acquisition over a link slower than the TTL never completes with a "
          "lease whose deadline has passed",
          "[lease-fault][single_server]") {
    with_proxy(
        [](redcoord::connection& conn, redcoord::connection&, tcp_proxy& proxy,
           redis_server&) -> asio::awaitable<void> {
            session s(conn);
            lock_provider locks(s);
            // A round trip takes 2.4 s, more than twice the TTL.
            proxy.set_delay(1200ms);
            acquire_options opts;
            opts.ttl = 1000ms;
            opts.wait = 4s;
            auto out = start_acquire(locks, "slow-link", opts);
            co_await wait_done(out);
            out->check();
            proxy.set_delay(0ms);
            co_await release_if_held(*out);
        },
        &patient_config);
}

TEST_CASE("lease fault: a lease with a TTL of 1 to 5 ms is never returned with its deadline "
          "passed",
          "[lease-fault]") {
    with_connection([](redcoord::connection& conn, redis_server&) -> asio::awaitable<void> {
        session s(conn);
        lock_provider locks(s);
        // Five acquisitions per TTL; the outcomes that break the contract are listed.
        for (int ttl = 1; ttl <= 5; ++ttl) {
            std::string broken;
            for (int round = 0; round < 5; ++round) {
                acquire_options opts;
                opts.ttl = milliseconds(ttl);
                opts.wait = 500ms;
                const std::string name =
                    "tiny-" + std::to_string(ttl) + "-" + std::to_string(round);
                auto out = start_acquire(locks, name, opts);
                co_await wait_done(out);
                if (!out->kept())
                    broken += "\n  round " + std::to_string(round) + ": " + out->describe();
            }
            INFO("TTL " << ttl << " ms:" << broken);
            CHECK(broken.empty());
        }
    });
}

TEST_CASE("lease fault: an acquisition while Redis is out of reach for 1.5 s never completes "
          "with a lease whose deadline has passed",
          "[lease-fault][single_server]") {
    check_through_outage([](session& s) { return lock_provider(s); },
                         [](lock_provider& locks) {
                             acquire_options opts;
                             opts.ttl = 1000ms;
                             opts.wait = 15s;
                             return start_acquire(locks, "outage", opts);
                         });
}

TEST_CASE("lease fault: a campaign while Redis is out of reach for 1.5 s never completes with "
          "a leadership already lost",
          "[lease-fault][single_server]") {
    check_through_outage([](session& s) { return leader_election(s, one_second_terms()); },
                         [](leader_election& e) { return start_campaign(e, "outage"); });
}

TEST_CASE("lease fault: a cancellation slot taken from a leadership already lost fires at once",
          "[lease-fault]") {
    with_connection([](redcoord::connection& conn, redis_server&) -> asio::awaitable<void> {
        session s(conn, as_node("leader"));
        leader_election election(s, one_second_terms());
        auto [ec, l] = co_await election.async_campaign("taken", nothrow);
        REQUIRE_FALSE(ec);
        REQUIRE(l.is_held());
        // Another hand deletes the leadership key: the next renewal finds it gone.
        co_await command(conn, "DEL", l.key());
        auto [wec] = co_await l.async_wait_lost(nothrow);
        REQUIRE_FALSE(wec);
        REQUIRE(l.get_status() == lease::status::lost);

        // Work bound to the lost lease after the loss: it must be cancelled, not left to run.
        auto work_ended = std::make_shared<std::optional<error_code>>();
        asio::steady_timer work(co_await asio::this_coro::executor);
        work.expires_after(60s);
        work.async_wait(asio::bind_cancellation_slot(
            l.cancellation_slot(), [work_ended](error_code wait_ec) { *work_ended = wait_ec; }));
        const bool ended = co_await eventually([&] { return work_ended->has_value(); }, 5s);
        work.cancel();
        INFO("the work bound to the lost lease's slot was "
             << (ended ? "ended: " + work_ended->value().message() : std::string("left running")));
        CHECK(ended);
        if (ended) CHECK(*work_ended == asio::error::operation_aborted);
    });
}

TEST_CASE("lease fault: renewals over a link with 300 ms each way keep a 1 s lease held",
          "[lease-fault][single_server]") {
    with_proxy(
        [](redcoord::connection& conn, redcoord::connection& direct, tcp_proxy& proxy,
           redis_server&) -> asio::awaitable<void> {
            session s(conn);
            lock_provider locks(s);
            acquire_options opts;
            opts.ttl = 1000ms;
            opts.wait = 10s;
            auto l = co_await must_acquire(locks, "slow-renewals", opts);
            const std::string key = l.key();
            // One renewal over the fast link first: Redis then has the renewal script, so a
            // renewal over the slow link is one round trip (no NOSCRIPT, then EVAL).
            co_await eventually([&] { return l.renewals() > 0; }, 10s, "a first renewal");
            // Default watchdog: a renewal every third of the TTL, each now taking 600 ms or
            // more, so the next one is due before the last one's reply is back.
            proxy.set_delay(300ms);

            // About four TTLs, looking every 100 ms from both sides.
            const auto until = steady::now() + 4s;
            bool held = true;
            bool stored = true;
            int looks = 0;
            while (held && stored && steady::now() < until) {
                co_await sleep_for(100ms);
                ++looks;
                held = l.is_held();
                const auto pttl = std::stoll(co_await command(direct, "PTTL", key));
                stored = pttl > 0;
            }
            INFO("after " << looks << " looks: status "
                          << (l.get_status() == lease::status::lost ? "lost" : "not lost") << " ("
                          << l.lost_reason().message() << "), " << l.renewals() << " renewals, key "
                          << (stored ? "present" : "gone"));
            CHECK(held);
            CHECK(stored);
            if (stored) {
                const auto value = co_await command(direct, "GET", key);
                CHECK(value.find(l.owner()) != std::string::npos);
            }

            proxy.set_delay(0ms);
            if (l.is_held()) co_await redcoord::test::must_release(l);
        },
        &patient_config);
}

// A session whose trace sink holds its thread up for `hold` on the first grant it reports
// (lock_acquired, or election_won for a leadership: emitted once the grant's reply was found
// in time), so that the grant's validity ends before its handler can run. first_token: the
// fencing token of that grant.
struct held_up_after_grant {
    std::chrono::milliseconds hold;
    bool fired = false;
    std::int64_t first_token = 0;

    redcoord::session_options options() {
        redcoord::session_options o;
        o.trace.lock_tracing = true;
        o.trace.leader_election_logging = true;
        o.trace.sink = [this](const redcoord::trace_event& e) {
            const bool grant = e.kind == redcoord::trace_kind::lock_acquired ||
                               e.kind == redcoord::trace_kind::election_won;
            if (!grant || fired) return;
            fired = true;
            first_token = e.token;
            std::this_thread::sleep_for(hold);
        };
        return o;
    }
};

// The outcome of a grant dropped just before its handler: lease_lost, saying so.
void check_dropped_at_hand_over(const lease_outcome& out, const held_up_after_grant& h) {
    INFO(out.describe());
    CHECK(h.fired);
    CHECK(out.ec == redcoord::error::lease_lost);
    CHECK_FALSE(out.l);
    CHECK(out.diag.message().find("its completion was reached") != std::string::npos);
}

TEST_CASE("lease fault: a grant whose validity ends between its reply and its handler completes "
          "with lease_lost, never with a passed deadline",
          "[lease-fault]") {
    with_connection([](redcoord::connection& conn, redis_server&) -> asio::awaitable<void> {
        held_up_after_grant h{300ms};
        session s(conn, h.options());
        acquire_options opts;
        opts.ttl = 100ms;
        opts.wait = 2s;
        SECTION("a lock, uncontended (the path without a coroutine)") {
            lock_provider locks(s);
            auto out = start_acquire(locks, "held-up", opts);
            co_await wait_done(out);
            check_dropped_at_hand_over(*out, h);
        }
        SECTION("a semaphore permit (the path through the wait coroutine)") {
            redcoord::semaphore_provider sems(s);
            auto out = std::make_shared<lease_outcome>();
            sems.async_acquire("held-up", 2, opts, out->diag, lease_outcome::recorder(out));
            co_await wait_done(out);
            check_dropped_at_hand_over(*out, h);
        }
        SECTION("a read hold") {
            redcoord::rw_lock_provider rw(s);
            auto out = std::make_shared<lease_outcome>();
            rw.async_acquire_read("held-up", opts, out->diag, lease_outcome::recorder(out));
            co_await wait_done(out);
            check_dropped_at_hand_over(*out, h);
        }
        SECTION("a campaign campaigns on, and is elected with a later term") {
            leader_options lo;
            lo.leadership_timeout = 100ms;
            lo.renewal_interval = 30ms;
            leader_election e(s, lo);
            auto out = start_campaign(e, "held-up");
            co_await wait_done(out);
            out->check();
            CHECK(h.fired);
            CHECK_FALSE(out->ec);
            CHECK(out->l.fencing_token() > h.first_token);
            co_await release_if_held(*out);
        }
    });
}

}  // namespace
