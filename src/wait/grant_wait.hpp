// Waiting for a grant without polling, shared by the read-write lock and the semaphore: the
// same scheme as the mutex (lock.cpp). A waiter subscribes to the resource's channel through
// the session's push hub and attempts again when a release publishes; a fallback timer bounded
// by the blocker's remaining TTL covers a lost message. Local waiters of one resource share a
// lock_queue: either only its head asks Redis (the semaphore: one release frees one permit)
// or all of them do (the read-write lock: a writer's release may let every reader in).
#pragma once

#include "core/session_impl.hpp"

#include <redcoord/error.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <tuple>

namespace redcoord::detail {

// The reply of one grant attempt.
struct grant_reply {
    error_code ec;
    bool granted = false;
    std::int64_t fence = 0;
    // Not granted: ms until the blocker's lease lapses (> 0); -1: the blocker has no TTL;
    // anything else: unknown. Granted with room == 0: ms until the next one may get in by expiry
    // (0: unknown).
    std::int64_t wait_ms = 0;
    // Granted: how many more may get in now (the next local waiter is woken to try at once).
    std::int64_t room = 0;
    clock::time_point sent;
};

// Errors after which waiting on makes sense: the connection may come back before the deadline.
inline bool transient_error(error_code ec) {
    return ec == error::not_connected || ec == error::connection_lost || ec == error::timeout ||
           ec == error::run_not_started;
}

struct wait_settings {
    milliseconds retry_delay{100};  // the fallback timer's floor
    milliseconds wait{0};           // how long to wait in all
    milliseconds refresh{0};        // > 0: attempt at least this often (a waiting mark to keep)
    bool wake_all = false;          // every local waiter attempts on a release, not the head only
    bool lock_stats = false;        // count in the session's lock statistics
};

// Call provides:
//   std::shared_ptr<session_impl> s;  diagnostics& diag();  milliseconds ttl;
//   const std::string& queue_key() const;  const std::string& channel() const;
//   asio::awaitable<grant_reply> attempt(bool waiting);   (not cancellable)
//   lease make_lease(const grant_reply&);
//   void give_up();   (left without a grant: undo what waiting registered in Redis)
//   std::string what() const;   ("read lock 'orders'", for messages)
//
// g++ 12 reports a false -Wmismatched-new-delete for this coroutine's frame (allocated and
// freed by awaitable_frame_base's own operators), hence the pragma.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
template <class Call>
asio::awaitable<std::tuple<error_code, lease>> wait_for_grant(Call c, wait_settings ws,
                                                              bool once) {
    co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
    // Cancellation is noticed by looking (cancelled() below), never by an exception thrown
    // from a co_await: the waiter must leave the local queue, and a writer its mark.
    co_await asio::this_coro::throw_if_cancelled(false);
    constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
    auto& s = *c.s;
    const auto start = clock::now();
    const auto deadline = sat_add(start, ws.wait);
    auto cancelled = [&]() -> asio::awaitable<bool> {
        auto cs = co_await asio::this_coro::cancellation_state;
        co_return cs.cancelled() != asio::cancellation_type::none;
    };
    // A grant whose validity had passed on arrival is released, and the attempt counts as
    // failed (r.granted is cleared).
    bool expired_grant = false;
    auto granted = [&](grant_reply& r, bool contended) {
        lease l = c.make_lease(r);
        if (!keep_if_valid(l, c.diag())) {
            r.granted = false;
            r.wait_ms = 0;
            expired_grant = true;
            return l;
        }
        if (ws.lock_stats)
            s.lock_stats.record(
                std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - start),
                contended);
        return l;
    };
    auto fallback = [&](const grant_reply& r) {
        milliseconds d;
        if (r.ec)
            d = ws.retry_delay;
        else if (r.wait_ms > 0)
            d = bounded_ms(r.wait_ms);  // whatever PX another client wrote
        else if (r.wait_ms == -1)  // a blocker without TTL (written by hand): look now and then
            d = std::chrono::seconds(1);
        else  // gone since: try again
            d = ws.retry_delay;
        if (ws.refresh.count() > 0) d = std::min(d, ws.refresh);
        return std::max(d, ws.retry_delay);
    };

    auto q = s.queue_for(c.queue_key(), c.channel(), ws.wake_all);
    error_code last_error;

    // Fast path: no local waiter ahead (or all local waiters ask Redis anyway).
    if (q->waiters.empty() || ws.wake_all || once) {
        auto r = co_await c.attempt(!once);
        lease l = r.granted ? granted(r, false) : lease();
        if (r.granted) {
            s.drop_queue_if_idle(q);
            if (co_await cancelled())
                co_return std::tuple{error_code(asio::error::operation_aborted), lease()};
            co_return std::tuple{error_code{}, std::move(l)};
        }
        const bool was_cancelled = co_await cancelled();
        if (once || (r.ec && !transient_error(r.ec)) || was_cancelled) {
            c.give_up();
            s.drop_queue_if_idle(q);
            if (was_cancelled && !once) r.ec = asio::error::operation_aborted;
            if (once && expired_grant && !r.ec) r.ec = error::lease_lost;
            co_return std::tuple{r.ec, lease()};
        }
        last_error = r.ec;
    }

    // Slow path: wait in the local queue, woken by the release's push.
    asio::steady_timer timer(s.conn.get_executor());
    lock_waiter w;
    w.timer = &timer;
    q->waiters.push_back(&w);
    // Leaves the queue however the coroutine ends (leave() below does it on every normal path).
    struct membership {
        lock_queue& q;
        std::list<lock_waiter*>::iterator me;
        bool in = true;
        ~membership() {
            if (in) q.waiters.erase(me);
        }
    } member{*q, std::prev(q->waiters.end())};
    const auto me = member.me;
    if (!q->listener) {
        q->listener = s.hub.add(
            c.channel(), false, [wq = std::weak_ptr<lock_queue>(q)](const push_message&) {
                // Every release's push wakes, a local one's too (see local_handoff).
                if (auto q = wq.lock()) q->wake_head();
            });
    }
    auto is_head = [&] { return ws.wake_all || q->waiters.front() == &w; };
    // Subscribed (the SUBSCRIBE is ahead in the pipeline): a release from now on is heard, so
    // one more attempt closes the gap since the first.
    w.attempt = is_head();

    auto leave = [&](const grant_reply* got) {
        if (!member.in) return;
        const bool was_head = q->waiters.front() == &w;
        q->waiters.erase(me);
        member.in = false;
        if (!ws.wake_all && was_head && !q->waiters.empty()) {
            auto* next = q->waiters.front();
            if (got && got->room <= 0) {
                next->rearm = true;
                next->hint = sat_add(clock::now(),
                                     got->wait_ms > 0 ? bounded_ms(got->wait_ms) : c.ttl);
                next->timer->cancel();
            } else {
                next->wake_to_attempt();
            }
        }
        if (!got) c.give_up();
        s.drop_queue_if_idle(q);
    };

    for (;;) {
        if (s.closed || s.closing) {
            leave(nullptr);
            co_return std::tuple{error_code(error::session_closed), lease()};
        }
        auto wake_at = deadline;
        if (w.attempt) {
            w.attempt = false;
            w.rearm = false;
            auto r = co_await c.attempt(true);
            lease l = r.granted ? granted(r, true) : lease();
            if (r.granted) {
                leave(&r);
                if (co_await cancelled())
                    co_return std::tuple{error_code(asio::error::operation_aborted), lease()};
                co_return std::tuple{error_code{}, std::move(l)};
            }
            if (r.ec && !transient_error(r.ec)) {
                leave(nullptr);
                co_return std::tuple{r.ec, lease()};
            }
            if (co_await cancelled()) {
                leave(nullptr);
                co_return std::tuple{error_code(asio::error::operation_aborted), lease()};
            }
            last_error = r.ec;
            wake_at = std::min(deadline, sat_add(clock::now(), fallback(r)));
            // Woken while the attempt was out (a release published meanwhile): go again.
            if (w.attempt && !s.closed && clock::now() < deadline) continue;
        } else if (w.rearm) {
            w.rearm = false;
            wake_at = std::min(deadline, std::max(w.hint, clock::now() + ws.retry_delay));
        } else if (is_head()) {
            wake_at = std::min(deadline, clock::now() + ws.retry_delay);
        }
        if (clock::now() >= deadline) break;
        timer.expires_at(wake_at);
        co_await timer.async_wait(nothrow);
        if (co_await cancelled()) {
                leave(nullptr);
                co_return std::tuple{error_code(asio::error::operation_aborted), lease()};
            }
        if (!w.attempt && !w.rearm) {
            if (clock::now() >= deadline) break;
            w.attempt = is_head();  // the fallback timer
        }
    }
    leave(nullptr);
    if (ws.lock_stats) ++s.lock_stats.timeouts;
    c.diag().set_client_message(timeout_message(c.what(), ws.wait, last_error, expired_grant));
    co_return std::tuple{error_code(error::acquire_timeout), lease()};
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// A hook for lease_state::on_release (hook_arg: the key of the local wait queue): a local
// release wakes the local waiters at once (their attempt usually rides the same pipeline,
// behind the release). The release's own push still wakes them afterwards: the attempt may
// have reached Redis before the release did (the release's script had to be loaded again,
// say), and skipping the push would then leave the waiters asleep until their fallback timer.
// The price is one more attempt.
inline void local_handoff(lease_state& l) {
    auto& s = *l.session;
    if (s.closed) return;
    auto it = s.lock_queues.find(l.hook_arg);
    if (it == s.lock_queues.end()) return;
    it->second->wake_head();
}

// Runs an acquisition (wait_for_grant) through the one completion path (launch): the handler's
// cancellation slot reaches the wait, and it completes through its associated executor.
inline void spawn_acquire(session_impl& s, asio::awaitable<std::tuple<error_code, lease>> op,
                          asio::any_completion_handler<void(error_code, lease)> handler) {
    launch(s.conn.get_executor(), std::move(op), std::move(handler));
}

}  // namespace redcoord::detail
