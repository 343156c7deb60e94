#include "wait/wait_fsm.hpp"
#include "wire/time_math.hpp"

#include <redcoord/error.hpp>

#include <boost/asio/error.hpp>

#include <algorithm>

namespace redcoord::detail {

using std::chrono::milliseconds;

wait_fsm::wait_fsm(wait_policy p, time_point start) : p_(p), deadline_(sat_add(start, p.wait)) {}

milliseconds wait_fsm::fallback(const attempt_outcome& r) const {
    milliseconds d;
    if (r.ec)
        d = p_.retry_delay;
    else if (r.hint > 0)
        d = bounded_ms(r.hint);  // whatever PX another client wrote
    else if (r.hint == wait_hint::yielded)  // our turn comes after the other node's waiter
        return handoff_bounds::yield_window;
    else if (r.hint == wait_hint::fair_turn && p_.cap.count() > 0)
        d = p_.cap;
    else if (r.hint == wait_hint::no_ttl)  // look again now and then
        d = std::chrono::seconds(1);
    else  // gone since: try again
        d = p_.retry_delay;
    if (p_.cap.count() > 0) d = std::min(d, p_.cap);
    return std::max(d, p_.retry_delay);
}

wait_fsm::action wait_fsm::first(const attempt_outcome& r, bool cancelled) {
    if (r.expired) expired_grant_ = true;
    if (r.granted)
        return {step::granted, {},
                cancelled ? boost::system::error_code(boost::asio::error::operation_aborted)
                          : boost::system::error_code()};
    if (p_.once) {
        // A grant that came after its validity is reported, not hidden as "not granted".
        if (!r.ec && r.expired) return done(error::lease_lost);
        return done(r.ec);
    }
    if (r.ec && !r.transient) return done(r.ec);
    if (cancelled) return done(boost::asio::error::operation_aborted);
    last_error_ = r.ec;
    return {step::join};
}

wait_fsm::action wait_fsm::joined(time_point now, bool head, bool closed) {
    // Subscribed (the SUBSCRIBE is ahead in the pipeline): a release from now on is heard, so
    // one more attempt closes the gap since the first.
    if (head) woken_ = true;
    return next(now, head, closed);
}

wait_fsm::action wait_fsm::next(time_point now, bool head, bool closed) {
    if (closed) return done(error::session_closed);
    auto wake_at = deadline_;
    if (woken_) {
        woken_ = false;
        rearm_ = false;
        return {step::attempt};
    }
    if (rearm_) {
        rearm_ = false;
        wake_at = std::min(deadline_, std::max(hint_, now + p_.retry_delay));
    } else if (head) {
        wake_at = std::min(deadline_, now + p_.retry_delay);
    }
    if (now >= deadline_) return {step::timed_out};
    return {step::sleep, wake_at};
}

wait_fsm::action wait_fsm::attempted(const attempt_outcome& r, time_point now, bool cancelled,
                                     bool closed, bool head) {
    if (r.expired) expired_grant_ = true;
    if (r.granted)
        return {step::granted, {},
                cancelled ? boost::system::error_code(boost::asio::error::operation_aborted)
                          : boost::system::error_code()};
    if (r.ec && !r.transient) return done(r.ec);
    // A cancellation that arrived during the attempt must not wait for the fallback timer
    // (which may be the holder's whole TTL).
    if (cancelled) return done(boost::asio::error::operation_aborted);
    last_error_ = r.ec;
    // Woken while the attempt was out (a local handoff or a release's push): the timer's
    // cancel found no wait to end, so go again now rather than sleep through it.
    if (woken_ && !closed && now < deadline_) return next(now, head, closed);
    if (now >= deadline_) return {step::timed_out};
    return {step::sleep, std::min(deadline_, sat_add(now, fallback(r)))};
}

wait_fsm::action wait_fsm::slept(time_point now, bool cancelled, bool closed, bool head) {
    if (cancelled) return done(boost::asio::error::operation_aborted);
    if (!woken_ && !rearm_) {
        if (now >= deadline_) return {step::timed_out};
        woken_ = head;  // the fallback timer
    }
    return next(now, head, closed);
}

wait_fsm::time_point wait_fsm::next_waiter_hint(const attempt_outcome* got,
                                                time_point now) const {
    if (!got || got->room > 0) return time_point::min();
    return sat_add(now, got->hint > 0 ? bounded_ms(got->hint) : p_.ttl);
}

}  // namespace redcoord::detail
