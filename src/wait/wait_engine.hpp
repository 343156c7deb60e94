// The driver of the one wait engine (wait_fsm.hpp): waiting for a grant without polling, for
// the mutex, the read-write lock and the semaphore (and leader campaigns, through the mutex).
// A waiter joins the resource's local queue (wait_queue.hpp), which listens on the resource's
// channel through the session's push hub; a release's push (or a local release, at once)
// wakes the head, or every waiter when the policy says wake_all; a fallback timer bounded by
// the blocker's remaining TTL covers a lost message. The machine decides; this coroutine only
// sends attempts, sleeps and leaves the queue.
#pragma once

#include "core/completion.hpp"
#include "core/session_impl.hpp"
#include "wait/wait_fsm.hpp"
#include "wait/wait_queue.hpp"

#include <redcoord/error.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <tuple>
#include <utility>

namespace redcoord::detail {

// One attempt's reply with what a lease is made from.
struct grant_reply : attempt_outcome {
    std::int64_t fence = 0;
    clock::time_point sent;
};

// Call provides:
//   std::shared_ptr<session_impl> s;  clock::time_point start;  diagnostics& diag();
//   const std::string& queue_key() const;  const std::string& channel() const;
//   asio::awaitable<grant_reply> attempt(bool waiting, bool yield);   (not cancellable)
//   lease make_lease(const grant_reply&);
//   void give_up();   (left without a grant: undo what waiting registered in Redis)
//   std::string what() const;   ("read lock 'orders'", for messages)
//   std::string stats_key() const;   (the main key, whose companion ":stats" keeps the
//                                     cluster-wide statistics of the resource)
//   std::string name;  std::string_view primitive;   (for tracing: "orders", "mutex")
struct grant_settings {
    wait_policy policy;
    bool lock_stats = false;  // count in the session's lock statistics
};

// The lease of a grant, or an empty one when its validity had passed when its reply came: it
// is then released, and the outcome says so (r.granted cleared, r.expired set).
template <class Call>
lease take_grant(Call& c, grant_reply& r, const grant_settings& gs, bool contended) {
    // (Before make_lease, which may move the call's names into the lease.)
    std::string stats_key;
    if (gs.lock_stats && c.s->shared.on(*c.s)) stats_key = c.stats_key();
    lease l = c.make_lease(r);
    if (!keep_if_valid(l, c.diag())) {
        r.granted = false;
        r.expired = true;
        r.hint = wait_hint::unknown;
        return l;
    }
    const auto wait = micros(clock::now() - c.start);
    if (gs.lock_stats) {
        c.s->lock_stats.record(wait, contended);
        if (!stats_key.empty()) c.s->shared.acquired(*c.s, stats_key, wait.count(), contended);
    }
    if (c.s->trace.on(lease_category(c.primitive)))
        trace_lease(*c.s, trace_kind::lock_acquired, *access::state(l), wait);
    return l;
}

// g++ 12 reports a false -Wmismatched-new-delete for this coroutine's frame (allocated and
// freed by awaitable_frame_base's own operators), hence the pragma.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
// Acquires, waiting as the settings allow. first: an attempt made already, and its lease
// (the mutex's fast path makes it without a coroutine).
template <class Call>
asio::awaitable<std::tuple<error_code, lease>> wait_for_grant(
    Call c, grant_settings gs, std::optional<grant_reply> first = std::nullopt) {
    co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
    // Cancellation is noticed by looking (cancelled() below), never by an exception thrown
    // from a co_await: the waiter must leave the local queue, and a writer its mark.
    co_await asio::this_coro::throw_if_cancelled(false);
    using step = wait_fsm::step;
    constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
    auto& s = *c.s;
    const wait_policy& p = gs.policy;
    wait_fsm m(p, c.start);
    auto cancelled = [&]() -> asio::awaitable<bool> {
        auto cs = co_await asio::this_coro::cancellation_state;
        co_return cs.cancelled() != asio::cancellation_type::none;
    };
    auto closed = [&] { return s.closed || s.closing; };
    auto& queues = wait_queues::of(s);
    auto q = queues.queue_for(c.queue_key(), c.channel(), p.wake_all);
    lease held;

    // Fast path: no local waiter ahead (or all local waiters ask Redis anyway).
    if (!first && (q->waiters.empty() || p.wake_all || p.once)) {
        auto r = co_await c.attempt(!p.once, false);
        r.transient = transient_error(r.ec);
        if (r.granted) held = take_grant(c, r, gs, false);
        first = std::move(r);
    }
    if (first) {
        const auto a = m.first(*first, co_await cancelled());
        if (a.what != step::join) {
            if (a.what == step::failed) c.give_up();
            queues.drop_if_idle(q);
            // Cancelled after a grant: the lease goes out of scope here, which releases it.
            if (a.what == step::granted && !a.ec) co_return std::tuple{a.ec, std::move(held)};
            co_return std::tuple{a.ec, lease()};
        }
    }

    // Slow path: wait in the local queue, woken by the release's push.
    trace_wait(s, trace_kind::lock_contended, c.primitive, c.name);
    asio::steady_timer timer(s.conn.get_executor());
    queued_waiter w{&timer, &m};
    q->waiters.push_back(&w);
    // Leaves the queue however the coroutine ends (leave() below does it on every normal path).
    struct membership {
        wait_queue& q;
        std::list<queued_waiter*>::iterator me;
        bool in = true;
        ~membership() {
            if (in) q.waiters.erase(me);
        }
    } member{*q, std::prev(q->waiters.end())};
    if (!q->listener) {
        q->listener = s.hub.add_wake_up(
            c.channel(), [wq = std::weak_ptr<wait_queue>(q)](const push_message& m) {
                auto q = wq.lock();
                if (!q) return;
                if (!m.is_gap() && !m.payload.empty()) {
                    if (auto it = q->own_releases.find(m.payload); it != q->own_releases.end()) {
                        q->own_releases.erase(it);  // handed over locally already
                        return;
                    }
                    if (clock::now() < q->yield_until) return;  // yielded (wait_hint::yielded)
                }
                q->wake_head();
            });
    }
    auto is_head = [&] { return p.wake_all || q->waiters.front() == &w; };

    // Leaves the queue; its next head attempts at once, or waits about as long as the grant
    // that took the last room lasts.
    auto leave = [&](const grant_reply* got) {
        if (!member.in) return;
        const bool was_head = q->waiters.front() == &w;
        q->waiters.erase(member.me);
        member.in = false;
        if (!p.wake_all && was_head && !q->waiters.empty()) {
            auto* next = q->waiters.front();
            const auto hint = m.next_waiter_hint(got, clock::now());
            if (hint == clock::time_point::min())
                next->wake();
            else
                next->rearm(hint);
        }
        if (!got) c.give_up();
        queues.drop_if_idle(q);
    };

    grant_reply got;
    auto a = m.joined(clock::now(), is_head(), closed());
    for (;;) {
        switch (a.what) {
        case step::attempt: {
            auto r = co_await c.attempt(true, m.take_yield());
            r.transient = transient_error(r.ec);
            if (r.granted) held = take_grant(c, r, gs, true);
            // The push of every release sent before this attempt has arrived by now (a push
            // precedes the replies of later commands), and a release publishes only when an
            // attempt found the lock held: forget the handoffs whose push did not come. A
            // handed-over release whose push has not arrived has not run yet either: this
            // attempt overtook it (the release went again as EVAL after NOSCRIPT), and its
            // push is then a wake-up.
            q->own_releases.clear();
            if (!r.ec && !r.granted && r.hint == wait_hint::yielded) {
                // Yielded (lock.cpp's handoff): the release's push wakes the other nodes'
                // waiters; ours attempts after the window, so that one of theirs goes first.
                q->streak = 0;
                q->yield_until = sat_add(clock::now(), handoff_bounds::yield_window);
            }
            const bool stop = co_await cancelled();
            a = m.attempted(r, clock::now(), stop, closed(), is_head());
            if (a.what == step::granted) got = std::move(r);
            break;
        }
        case step::sleep: {
            timer.expires_at(a.until);
            const auto slept = clock::now();
            co_await timer.async_wait(nothrow);
            if (std::exchange(w.woken, false))
                trace_wait(s, trace_kind::waiter_woken, c.primitive, c.name,
                           micros(clock::now() - slept));
            const bool stop = co_await cancelled();
            a = m.slept(clock::now(), stop, closed(), is_head());
            break;
        }
        case step::granted:
            leave(&got);
            // Cancelled after the grant: the lease goes out of scope here, which releases it.
            if (a.ec) co_return std::tuple{a.ec, lease()};
            co_return std::tuple{error_code{}, std::move(held)};
        case step::failed:
            leave(nullptr);
            co_return std::tuple{a.ec, lease()};
        case step::timed_out:
        case step::join:  // (only first() says join)
            leave(nullptr);
            if (gs.lock_stats) {
                ++s.lock_stats.timeouts;
                s.shared.timed_out(s, c.stats_key());
            }
            trace_wait(s, trace_kind::lock_timeout, c.primitive, c.name,
                       micros(clock::now() - c.start));
            c.diag().set_client_message(
                timeout_message(c.what(), p.wait, m.last_error(), m.expired_grant()));
            co_return std::tuple{error_code(error::acquire_timeout), lease()};
        }
    }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// A lease_spec::on_release (lease_state::wait_key: the key of the local wait queue): a local
// release wakes the local waiters at once (their attempt usually rides the same pipeline,
// behind the release). The release's own push still wakes them afterwards: the attempt may
// have reached Redis before the release did (the release's script had to be loaded again,
// say), and skipping the push would then leave the waiters asleep until their fallback timer.
// The price is one more attempt.
inline void local_handoff(lease_state& l) {
    auto& s = *l.session;
    if (s.closed || !s.waits) return;
    if (auto q = wait_queues::of(s).find(l.wait_key)) q->wake_head();
}

}  // namespace redcoord::detail
