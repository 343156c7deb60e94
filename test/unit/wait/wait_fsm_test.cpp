// The wait engine's decisions with no server: the first attempt, joining the local queue, the
// fallback timer after a refused attempt (bounded by the blocker's TTL, floored, capped), wakes
// that arrive while an attempt is out, rearming after the waiter ahead got the grant, the
// deadline, cancellation and a closed session.
#include "wait/wait_fsm.hpp"

#include <redcoord/error.hpp>

#include <boost/asio/error.hpp>

#include <catch2/catch.hpp>

#include <chrono>

namespace {

using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::detail::attempt_outcome;
using redcoord::detail::wait_fsm;
using redcoord::detail::wait_policy;
namespace wait_hint = redcoord::detail::wait_hint;
using redcoord::error;
using step = wait_fsm::step;
using time_point = wait_fsm::time_point;

const time_point t0 = time_point() + std::chrono::hours(1);

wait_policy policy(std::chrono::milliseconds wait = 10s) {
    wait_policy p;
    p.retry_delay = 100ms;
    p.wait = wait;
    p.ttl = 30s;
    return p;
}

attempt_outcome refused(std::int64_t hint) {
    attempt_outcome r;
    r.hint = hint;
    return r;
}

attempt_outcome granted() {
    attempt_outcome r;
    r.granted = true;
    return r;
}

attempt_outcome failed(error_code ec, bool transient) {
    attempt_outcome r;
    r.ec = ec;
    r.transient = transient;
    return r;
}

// A machine that has made its first attempt, joined the queue as head and sent the attempt
// joining asks for.
wait_fsm waiting_head(wait_policy p = policy()) {
    wait_fsm m(p, t0);
    REQUIRE(m.first(refused(500), false).what == step::join);
    REQUIRE(m.joined(t0, true, false).what == step::attempt);
    return m;
}

}  // namespace

TEST_CASE("wait_fsm: the first attempt decides between done and joining the queue") {
    SECTION("granted") {
        wait_fsm m(policy(), t0);
        auto a = m.first(granted(), false);
        CHECK(a.what == step::granted);
        CHECK(!a.ec);
    }
    SECTION("granted, but cancelled meanwhile: the grant is to be released") {
        wait_fsm m(policy(), t0);
        auto a = m.first(granted(), true);
        CHECK(a.what == step::granted);
        CHECK(a.ec == boost::asio::error::operation_aborted);
    }
    SECTION("refused: join") {
        wait_fsm m(policy(), t0);
        CHECK(m.first(refused(500), false).what == step::join);
    }
    SECTION("refused and cancelled: done at once") {
        wait_fsm m(policy(), t0);
        auto a = m.first(refused(500), true);
        CHECK(a.what == step::failed);
        CHECK(a.ec == boost::asio::error::operation_aborted);
    }
    SECTION("an error that waiting cannot cure ends it") {
        wait_fsm m(policy(), t0);
        auto a = m.first(failed(error::unexpected_reply, false), false);
        CHECK(a.what == step::failed);
        CHECK(a.ec == error::unexpected_reply);
    }
    SECTION("a transient error joins, and is remembered for the timeout's message") {
        wait_fsm m(policy(), t0);
        CHECK(m.first(failed(error::connection_lost, true), false).what == step::join);
        CHECK(m.last_error() == error::connection_lost);
    }
}

TEST_CASE("wait_fsm: a single attempt (once) never waits") {
    auto p = policy();
    p.once = true;
    SECTION("refused: done with no error") {
        wait_fsm m(p, t0);
        auto a = m.first(refused(500), false);
        CHECK(a.what == step::failed);
        CHECK(!a.ec);
    }
    SECTION("a transient error is reported, not waited out") {
        wait_fsm m(p, t0);
        auto a = m.first(failed(error::connection_lost, true), false);
        CHECK(a.what == step::failed);
        CHECK(a.ec == error::connection_lost);
    }
    SECTION("a grant whose validity had passed is reported as lost") {
        wait_fsm m(p, t0);
        auto r = refused(0);
        r.expired = true;
        auto a = m.first(r, false);
        CHECK(a.what == step::failed);
        CHECK(a.ec == error::lease_lost);
        CHECK(m.expired_grant());
    }
}

TEST_CASE("wait_fsm: joining the queue") {
    SECTION("the head attempts once more (a release before the subscription is not lost)") {
        wait_fsm m(policy(), t0);
        m.first(refused(500), false);
        CHECK(m.joined(t0, true, false).what == step::attempt);
    }
    SECTION("a waiter behind the head sleeps until woken, at most until the deadline") {
        wait_fsm m(policy(2s), t0);
        m.first(refused(500), false);
        auto a = m.joined(t0, false, false);
        CHECK(a.what == step::sleep);
        CHECK(a.until == t0 + 2s);
    }
    SECTION("a closed session ends the wait") {
        wait_fsm m(policy(), t0);
        m.first(refused(500), false);
        auto a = m.joined(t0, true, true);
        CHECK(a.what == step::failed);
        CHECK(a.ec == error::session_closed);
    }
}

TEST_CASE("wait_fsm: the fallback timer after a refused attempt") {
    const auto now = t0 + 10ms;
    SECTION("the holder's remaining TTL") {
        auto m = waiting_head();
        auto a = m.attempted(refused(700), now, false, false, true);
        CHECK(a.what == step::sleep);
        CHECK(a.until == now + 700ms);
    }
    SECTION("no sooner than retry_delay") {
        auto m = waiting_head();
        auto a = m.attempted(refused(3), now, false, false, true);
        CHECK(a.until == now + 100ms);
    }
    SECTION("a holder without TTL is looked at every second") {
        auto m = waiting_head();
        auto a = m.attempted(refused(wait_hint::no_ttl), now, false, false, true);
        CHECK(a.until == now + 1s);
    }
    SECTION("after yielding to another node, only the yield window") {
        auto m = waiting_head();
        auto a = m.attempted(refused(wait_hint::yielded), now, false, false, true);
        CHECK(a.until ==
              now + redcoord::detail::handoff_bounds::yield_window);
    }
    SECTION("a cap (a waiting mark to refresh, a fair turn) bounds it") {
        auto p = policy();
        p.cap = 250ms;
        auto m = waiting_head(p);
        CHECK(m.attempted(refused(5000), now, false, false, true).until == now + 250ms);
        m.wake();
        REQUIRE(m.slept(now, false, false, true).what == step::attempt);
        CHECK(m.attempted(refused(wait_hint::fair_turn), now, false, false, true).until ==
              now + 250ms);
    }
    SECTION("never past the deadline") {
        auto m = waiting_head(policy(300ms));
        auto a = m.attempted(refused(5000), now, false, false, true);
        CHECK(a.until == t0 + 300ms);
    }
    SECTION("after a transient error, retry_delay") {
        auto m = waiting_head();
        auto a = m.attempted(failed(error::not_connected, true), now, false, false, true);
        CHECK(a.what == step::sleep);
        CHECK(a.until == now + 100ms);
        CHECK(m.last_error() == error::not_connected);
    }
}

TEST_CASE("wait_fsm: wakes, rearms and the timer") {
    const auto now = t0 + 10ms;
    SECTION("a wake that came while the attempt was out is not slept through") {
        auto m = waiting_head();
        m.wake();
        CHECK(m.attempted(refused(700), now, false, false, true).what == step::attempt);
    }
    SECTION("woken while asleep: attempt") {
        auto m = waiting_head();
        REQUIRE(m.attempted(refused(700), now, false, false, true).what == step::sleep);
        m.wake();
        CHECK(m.slept(now + 1ms, false, false, true).what == step::attempt);
    }
    SECTION("the head's fallback timer: attempt") {
        auto m = waiting_head();
        REQUIRE(m.attempted(refused(700), now, false, false, true).what == step::sleep);
        CHECK(m.slept(now + 700ms, false, false, true).what == step::attempt);
    }
    SECTION("a waiter behind the head does not attempt on its timer") {
        wait_fsm m(policy(2s), t0);
        m.first(refused(500), false);
        REQUIRE(m.joined(t0, false, false).what == step::sleep);
        auto a = m.slept(t0 + 1s, false, false, false);
        CHECK(a.what == step::sleep);
        CHECK(a.until == t0 + 2s);
    }
    SECTION("rearmed: sleep until about when the grant ahead ends, at least retry_delay") {
        auto m = waiting_head();
        REQUIRE(m.attempted(refused(700), now, false, false, true).what == step::sleep);
        m.rearm(now + 5s);
        auto a = m.slept(now, false, false, true);
        CHECK(a.what == step::sleep);
        CHECK(a.until == now + 5s);
        m.rearm(now + 1ms);
        CHECK(m.slept(now, false, false, true).until == now + 100ms);
    }
    SECTION("a yield is taken once") {
        auto m = waiting_head();
        m.yield_next();
        CHECK(m.take_yield());
        CHECK(!m.take_yield());
    }
}

TEST_CASE("wait_fsm: the end of a wait") {
    SECTION("the deadline") {
        auto m = waiting_head(policy(300ms));
        REQUIRE(m.attempted(failed(error::timeout, true), t0 + 10ms, false, false, true).what ==
                step::sleep);
        CHECK(m.slept(t0 + 300ms, false, false, true).what == step::timed_out);
        CHECK(m.last_error() == error::timeout);
    }
    SECTION("an attempt that returns after the deadline") {
        auto m = waiting_head(policy(300ms));
        CHECK(m.attempted(refused(50), t0 + 301ms, false, false, true).what == step::timed_out);
    }
    SECTION("a grant after waiting") {
        auto m = waiting_head();
        CHECK(m.attempted(granted(), t0 + 10ms, false, false, true).what == step::granted);
    }
    SECTION("cancelled during the sleep") {
        auto m = waiting_head();
        REQUIRE(m.attempted(refused(700), t0, false, false, true).what == step::sleep);
        auto a = m.slept(t0 + 1ms, true, false, true);
        CHECK(a.what == step::failed);
        CHECK(a.ec == boost::asio::error::operation_aborted);
    }
    SECTION("cancelled during the attempt") {
        auto m = waiting_head();
        auto a = m.attempted(refused(700), t0, true, false, true);
        CHECK(a.what == step::failed);
        CHECK(a.ec == boost::asio::error::operation_aborted);
    }
    SECTION("the session closed while asleep (its close wakes every waiter)") {
        auto m = waiting_head();
        REQUIRE(m.attempted(refused(700), t0, false, false, true).what == step::sleep);
        m.wake();
        auto a = m.slept(t0 + 1ms, false, true, true);
        CHECK(a.what == step::failed);
        CHECK(a.ec == error::session_closed);
    }
}

TEST_CASE("wait_fsm: who goes next after a waiter leaves the queue") {
    wait_fsm m(policy(), t0);
    const auto now = t0 + 10ms;
    SECTION("left without a grant, or with room left: the next one attempts at once") {
        CHECK(m.next_waiter_hint(nullptr, now) == time_point::min());
        auto g = granted();
        g.room = 2;
        CHECK(m.next_waiter_hint(&g, now) == time_point::min());
    }
    SECTION("took the last room: the next one waits about as long as the grant lasts") {
        auto g = granted();
        CHECK(m.next_waiter_hint(&g, now) == now + 30s);
        g.hint = 1500;
        CHECK(m.next_waiter_hint(&g, now) == now + 1500ms);
    }
}
