// The one wait engine's decisions, without I/O: attempt → granted | wait for a push or the
// fallback timer | give up at the deadline. The mutex, the read-write lock, the semaphore,
// leader campaigns (through the mutex) and the cache's fill lease all wait with it; the driver
// (wait_engine.hpp) does what it says: sends the attempt, sleeps on a timer that a release's
// push or a local handoff ends early, and leaves the local queue. Unit-tested without a server
// (test/unit/wait/).
#pragma once

#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>

namespace redcoord::detail {

// What an attempt's reply says about how long to wait, besides the blocker's remaining TTL in
// ms (> 0). The codes are those of lock_ops.lua and the grant scripts.
namespace wait_hint {
inline constexpr std::int64_t unknown = 0;     // the blocker is gone since: try again soon
inline constexpr std::int64_t no_ttl = -1;     // a blocker without TTL (written by hand)
inline constexpr std::int64_t fair_turn = -3;  // free, but earlier waiters in Redis go first
inline constexpr std::int64_t yielded = -4;    // refused to let another node's waiter in
}  // namespace wait_hint

// How long a process may keep a busy lock among its own waiters (local handoff: a release
// hands the lock to the next local waiter in the same script call) while another process
// waits for it: after max_handoffs handoffs in a row or max_streak, whichever ends first, the
// next handoff's attempt asks lock_ops.lua to yield ("y"): it is refused when another node
// waits, the release's push lets that node's waiters in, and the local head attempts again
// after yield_window.
struct handoff_bounds {
    static constexpr unsigned max_handoffs = 8;
    static constexpr std::chrono::milliseconds max_streak{2};
    static constexpr std::chrono::milliseconds yield_window{2};
};

// One attempt's outcome, as the driver read it.
struct attempt_outcome {
    boost::system::error_code ec;
    bool transient = false;  // ec is one after which waiting on makes sense (a reconnect)
    bool granted = false;
    bool expired = false;    // granted after its validity had passed: released, not granted
    // Not granted: the blocker's remaining ms (> 0) or a wait_hint code. Granted: ms until the
    // next one may get in by expiry (0: unknown; the lease's TTL is assumed).
    std::int64_t hint = 0;
    std::int64_t room = 0;   // granted: how many more may get in now (the next local waiter tries)
};

struct wait_policy {
    std::chrono::milliseconds retry_delay{100};  // the fallback timer's floor
    std::chrono::milliseconds wait{0};           // how long to wait in all
    // > 0: the fallback timer's ceiling (a waiting mark in Redis to refresh, a fair turn).
    std::chrono::milliseconds cap{0};
    std::chrono::milliseconds ttl{0};  // of the lease asked for: the next waiter's hint
    bool wake_all = false;  // every local waiter attempts on a release, not the head only
    bool once = false;      // one attempt and no wait (try-acquire)
};

class wait_fsm {
public:
    using clock = std::chrono::steady_clock;
    using time_point = clock::time_point;

    enum class step {
        attempt,    // send one attempt, then call attempted()
        sleep,      // sleep until `until` (or a wake), then call slept()
        join,       // after first(): join the local queue, then call joined()
        granted,    // done: ec is operation_aborted when cancelled meanwhile (release the grant)
        failed,     // done with ec (with once: an empty ec means "not granted")
        timed_out,  // the deadline passed
    };
    struct action {
        step what;
        time_point until{};
        boost::system::error_code ec{};
    };

    wait_fsm(wait_policy p, time_point start);

    const wait_policy& policy() const noexcept { return p_; }
    time_point deadline() const noexcept { return deadline_; }

    // Inputs from the local queue, at any time; the driver ends its sleep after each.
    void wake() noexcept { woken_ = true; }  // a release was heard or handed over: attempt
    void rearm(time_point hint) noexcept {   // the waiter ahead got it: wait about until hint
        rearm_ = true;
        hint_ = hint;
    }
    void yield_next() noexcept { yield_ = true; }  // the next attempt yields to other nodes
    bool woken() const noexcept { return woken_; }
    bool take_yield() noexcept {
        const bool y = yield_;
        yield_ = false;
        return y;
    }

    // The first attempt, made before joining the local queue.
    action first(const attempt_outcome& r, bool cancelled);
    // Joined the local queue (subscribed): head says whether this waiter may attempt.
    action joined(time_point now, bool head, bool closed);
    // The result of an attempt asked for by step::attempt.
    action attempted(const attempt_outcome& r, time_point now, bool cancelled, bool closed,
                     bool head);
    // The sleep ended (its time, a wake, a rearm, or a cancellation).
    action slept(time_point now, bool cancelled, bool closed, bool head);

    // The last transient error (for the timeout's message), and whether a grant came too late.
    boost::system::error_code last_error() const noexcept { return last_error_; }
    bool expired_grant() const noexcept { return expired_grant_; }

    // How long to wait after a failed attempt: bounded by the blocker's remaining TTL.
    std::chrono::milliseconds fallback(const attempt_outcome& r) const;

    // After this waiter left the local queue as its head: the next waiter attempts at once
    // (returns time_point::min()), or waits until about the returned time (the grant took the
    // last room).
    time_point next_waiter_hint(const attempt_outcome* got, time_point now) const;

private:
    action next(time_point now, bool head, bool closed);
    action done(boost::system::error_code ec) const { return {step::failed, {}, ec}; }

    wait_policy p_;
    time_point deadline_;
    bool woken_ = false;
    bool rearm_ = false;
    bool yield_ = false;
    time_point hint_{};
    boost::system::error_code last_error_;
    bool expired_grant_ = false;
};

}  // namespace redcoord::detail
