#include "wait/grant_wait.hpp"
#include "locks/lock_value.hpp"
#include "core/replica_ack.hpp"
#include "core/completion.hpp"
#include "core/session_impl.hpp"

#include <redcoord/error.hpp>
#include <redcoord/lock.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <optional>
#include <tuple>

namespace redcoord {

namespace asio = boost::asio;
using boost::system::error_code;
using detail::clock;
using detail::session_impl;
using std::chrono::milliseconds;

namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

const detail::lease_spec& lock_spec() {
    static const detail::lease_spec spec{&script::embedded("lock_renew"), nullptr};
    return spec;
}

// The keys and channel of one lock; the wait queue's keys only in fair mode.
struct lock_names {
    std::string key, fence, channel, queue, queue_deadlines;
    lock_names(std::string main_key, bool fair)
        : key(std::move(main_key)), fence(keyspace::companion(key, "fence")),
          channel(keyspace::companion(key, "released")) {
        if (fair) {
            queue = keyspace::companion(key, "queue");
            queue_deadlines = keyspace::companion(key, "queue:deadlines");
        }
    }
};

using detail::transient_error;

struct attempt_result {
    error_code ec;
    bool granted = false;
    std::int64_t fence_or_pttl = 0;
    clock::time_point sent;
};

// An attempt's element of lock_ops.lua's reply: the fence when granted, else {0, the holder's
// PTTL}.
using acquire_reply = detail::lock_op_reply;

// A local release hands the lock to the next local waiter: its attempt joins the release's
// script call, behind it; the release's own push is then skipped. A long run of handoffs
// yields to other nodes (handoff_bounds).
void lock_handoff(detail::lease_state& l) {
    auto& s = *l.session;
    if (s.closed) return;
    auto it = s.lock_queues.find(l.keys.front());
    if (it == s.lock_queues.end()) return;
    auto& q = *it->second;
    if (q.waiters.empty()) {
        q.streak = 0;
        return;
    }
    const auto now = clock::now();
    using bounds = detail::handoff_bounds;
    if (q.streak++ == 0) q.streak_start = now;
    if (!q.fair && (q.streak > bounds::max_handoffs || now - q.streak_start >= bounds::max_streak))
        q.waiters.front()->yield = true;
    q.own_releases.insert(l.owner);
    q.wake_head();
}

struct acquire_call {
    std::shared_ptr<session_impl> s;
    lock_options lo;
    std::string name;
    acquire_options ao;
    std::string owner;
    milliseconds ttl;
    lock_names names;
    detail::diag_target diag_;
    diagnostics& diag() noexcept { return diag_.get(); }
    clock::time_point start = clock::now();
    std::string value{}, ttl_arg{}, waiter_ttl_arg{};  // what an attempt sends
    bool always_publish = false;  // the release publishes even when nobody waits
    bool yield = false;  // the next attempt yields to other nodes (a long run of local handoffs)
    // The last attempt's outcome is unknown (its reply was lost): the next one sends the same
    // value with mode "k", so that a grant it may have made is recognized as this one's.
    bool maybe_granted = false;

    // Queues one attempt on the session's lock batch (lock_ops.lua's "a"); e's completion
    // gets its reply. This call must live until then.
    void submit(std::unique_ptr<detail::lock_batch_entry> e) {
        if (!maybe_granted) {
            const auto now_ms = std::chrono::duration_cast<milliseconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count();
            value.clear();
            detail::append_lock_value(value, owner, lo.enable_extension, now_ms, s->node_id);
        }
        ttl_arg = std::to_string(ttl.count());
        static constexpr std::string_view modes[] = {"-",  "r",  "f",   "rf",   "k",  "rk",
                                                     "fk", "rfk", "y",  "ry",   "fy", "rfy",
                                                     "ky", "rky", "fky", "rfky"};
        const std::string_view mode = modes[(ao.reentrant ? 1 : 0) + (lo.fair ? 2 : 0) +
                                            (maybe_granted ? 4 : 0) + (yield ? 8 : 0)];
        yield = false;
        e->diag = &diag();
        if (lo.fair) {
            waiter_ttl_arg = std::to_string(lo.fair_waiter_timeout.count());
            s->lock_ops.add(std::move(e),
                            {names.key, names.fence, names.queue, names.queue_deadlines},
                            {"a", value, ttl_arg, mode, waiter_ttl_arg});
        } else {
            s->lock_ops.add(std::move(e), {names.key, names.fence}, {"a", value, ttl_arg, mode});
        }
    }

    attempt_result result(error_code ec, const acquire_reply& reply, clock::time_point sent) {
        attempt_result r;
        r.sent = sent;
        r.ec = ec;
        maybe_granted = transient_error(ec);
        if (!r.ec) {
            r.granted = !reply.array;
            r.fence_or_pttl = reply.array ? reply.values[1] : reply.values[0];
        }
        return r;
    }

    // One attempt from the waiting coroutine. Not cancellable: a grant must be known, or the
    // lock would stay taken until its TTL.
    template <class Token>
    auto async_attempt(Token&& token) {
        using handler_type = asio::any_completion_handler<void(attempt_result)>;
        struct entry : detail::lock_batch_entry {
            acquire_call& call;
            handler_type handler;
            clock::time_point sent = clock::now();
            entry(acquire_call& c, handler_type h) : call(c), handler(std::move(h)) {}
            void complete(error_code ec, const acquire_reply& reply) override {
                asio::dispatch(asio::append(std::move(handler), call.result(ec, reply, sent)));
            }
        };
        return asio::async_initiate<Token, void(attempt_result)>(
            [this](auto h) { submit(std::make_unique<entry>(*this, handler_type(std::move(h)))); },
            token);
    }

    asio::awaitable<attempt_result> attempt() { return async_attempt(asio::use_awaitable); }

    // Makes the lease of a grant and records the acquisition; an empty lease when the grant's
    // validity had passed when its reply came (it is released, and the attempt counts as
    // failed: r.granted is cleared). The names move into a valid lease: nothing uses them
    // after that.
    lease granted(attempt_result& r, bool contended) {
        const bool valid = s->lease_deadline(r.sent, ttl) > clock::now();
        auto take = [valid](std::string& v) { return valid ? std::move(v) : v; };
        auto st = std::make_shared<detail::lease_state>();
        st->session = s;
        st->spec = &lock_spec();
        st->resource = take(name);
        st->keys.push_back(take(names.key));
        st->extra_args.push_back(take(names.channel));
        // Who watches a leadership without campaigning for it learns of a resignation from
        // the release's push: it is always published.
        if (always_publish) st->extra_args.push_back("1");
        st->owner = take(owner);
        st->fence = r.fence_or_pttl;
        st->ttl = ttl;
        st->renew_interval = lo.extension_interval;
        st->watchdog = lo.enable_extension;
        st->on_release = &lock_handoff;
        s->hold(st, r.sent);
        lease l(std::move(st));
        if (!valid) {
            detail::drop_expired_grant(l, diag());
            r.granted = false;
            r.fence_or_pttl = 0;  // released: try again after the fallback's floor
            return l;
        }
        s->lock_stats.record(
            std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - start),
            contended);
        return l;
    }

    // The fallback timer after a failed attempt: bounded by the holder's remaining TTL.
    milliseconds fallback(std::int64_t pttl) const {
        milliseconds d;
        if (pttl > 0)
            d = detail::bounded_ms(pttl);  // whatever PX another client wrote
        else if (pttl == -4)  // yielded to another node's waiter: our turn comes after it
            return detail::handoff_bounds::yield_window;
        else if (pttl == -3)  // fair: free, but earlier waiters first
            d = lo.fair_waiter_timeout / 3;
        else if (pttl == -1)  // a lock without TTL (written by hand): look again now and then
            d = std::chrono::seconds(1);
        else  // gone since: try again
            d = lo.retry_delay;
        if (lo.fair) d = std::min(d, lo.fair_waiter_timeout / 3);
        return std::max(d, lo.retry_delay);
    }
};

// g++ 12 reports a false -Wmismatched-new-delete for this coroutine's frame (allocated and
// freed by awaitable_frame_base's own operators), hence the pragma.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
// Acquires, waiting as long as the options allow. first: the attempt the fast path made
// already (the coroutine then goes straight to waiting).
asio::awaitable<std::tuple<error_code, lease>> acquire_coro(acquire_call c,
                                                            std::optional<attempt_result> first) {
    co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
    // Cancellation is checked by hand (cancelled()): a co_await that threw instead would skip
    // leave(), leaving a dangling waiter in the queue that the next release's push wakes.
    co_await asio::this_coro::throw_if_cancelled(false);
    auto& s = *c.s;
    const milliseconds wait =
        c.ao.wait ? *c.ao.wait : detail::default_wait(c.lo.retry_delay, c.lo.max_retries);
    const auto deadline = detail::sat_add(c.start, wait);
    auto cancelled = [&]() -> asio::awaitable<bool> {
        auto cs = co_await asio::this_coro::cancellation_state;
        co_return cs.cancelled() != asio::cancellation_type::none;
    };
    // A grant whose validity had passed on arrival was released: the attempt failed.
    bool expired_grant = false;
    auto granted = [&](attempt_result& r, bool contended) {
        lease l = c.granted(r, contended);
        if (!r.granted) expired_grant = true;
        return l;
    };

    auto q = s.queue_for(c.names.key, c.names.channel, c.lo.fair);
    error_code last_error;
    if (first) last_error = first->ec;

    // Queued behind local waiters that have all left meanwhile: one attempt first.
    if (!first && q->waiters.empty()) {
        auto r = co_await c.attempt();
        lease l = r.granted ? granted(r, false) : lease();
        if (r.granted) {
            if (co_await cancelled()) co_return std::tuple{error_code(asio::error::operation_aborted), lease()};
            s.drop_queue_if_idle(q);
            co_return std::tuple{error_code{}, std::move(l)};
        }
        if (r.ec && !transient_error(r.ec)) {
            s.drop_queue_if_idle(q);
            co_return std::tuple{r.ec, lease()};
        }
        last_error = r.ec;
    }

    // Slow path: wait in the local queue, woken by the release's push.
    asio::steady_timer timer(s.conn.get_executor());
    detail::lock_waiter w;
    w.timer = &timer;
    q->waiters.push_back(&w);
    const auto me = std::prev(q->waiters.end());
    if (!q->listener) {
        q->listener = s.hub.add(
            c.names.channel, false, [wq = std::weak_ptr<detail::lock_queue>(q)](
                                        const push_message& m) {
                auto q = wq.lock();
                if (!q) return;
                if (!m.is_gap() && !m.payload.empty()) {
                    if (auto it = q->own_releases.find(m.payload); it != q->own_releases.end()) {
                        q->own_releases.erase(it);  // handed over locally already
                        return;
                    }
                    if (clock::now() < q->yield_until) return;  // yielded: see acquire_coro
                }
                q->wake_head();
            });
    }
    auto is_head = [&] { return c.lo.fair || q->waiters.front() == &w; };
    // Subscribed (the SUBSCRIBE is ahead in the pipeline): a release from now on is heard, so
    // one more attempt closes the gap since the first.
    w.attempt = is_head();

    auto leave = [&](bool got, milliseconds holder_ttl) {
        const bool was_head = q->waiters.front() == &w;
        q->waiters.erase(me);
        if (!c.lo.fair && was_head && !q->waiters.empty()) {
            auto* next = q->waiters.front();
            if (got) {
                next->rearm = true;
                next->hint = detail::sat_add(clock::now(), holder_ttl);
                next->timer->cancel();
            } else {
                next->wake_to_attempt();
            }
        }
        if (c.lo.fair && !got) {
            // Give our place in the Redis queue up at once, so those behind need not wait for
            // it to lapse.
            auto leave_script = [](std::shared_ptr<session_impl> s, lock_names names,
                                   std::string owner) -> asio::awaitable<void> {
                static const script& sc = script::embedded("lock_leave_queue");
                diagnostics d;
                std::int64_t removed = 0;
                const std::vector<std::string> keys{names.queue, names.queue_deadlines};
                const std::vector<std::string> args{owner, names.channel};
                co_await detail::eval(s->conn, sc, keys, args, removed, d);
            };
            detail::spawn_detached(s, leave_script(c.s, c.names, c.owner));
        }
        s.drop_queue_if_idle(q);
    };

    for (;;) {
        if (s.closed || s.closing) {
            leave(false, {});
            co_return std::tuple{error_code(error::session_closed), lease()};
        }
        auto wake_at = deadline;
        if (w.attempt) {
            w.attempt = false;
            w.rearm = false;
            c.yield = std::exchange(w.yield, false);
            auto r = co_await c.attempt();
            lease l = r.granted ? granted(r, true) : lease();
            if (r.granted) {
                // The push of every release sent before this attempt has arrived by now (a
                // push precedes the replies of later commands), and a release publishes only
                // when an attempt found the lock held: forget the handoffs whose push did
                // not come.
                q->own_releases.clear();
                leave(true, c.ttl);
                if (co_await cancelled())
                    co_return std::tuple{error_code(asio::error::operation_aborted), lease()};
                co_return std::tuple{error_code{}, std::move(l)};
            }
            if (r.ec && !transient_error(r.ec)) {
                leave(false, {});
                co_return std::tuple{r.ec, lease()};
            }
            // A cancellation that arrived during the attempt must not wait for the fallback
            // timer (which may be the holder's whole TTL).
            if (co_await cancelled()) {
                leave(false, {});
                co_return std::tuple{error_code(asio::error::operation_aborted), lease()};
            }
            last_error = r.ec;
            // A handed-over release whose push has not arrived has not run yet either (its
            // push precedes the replies of later commands): this attempt overtook it (the
            // release went again as EVAL after NOSCRIPT). Let that push wake us, then.
            q->own_releases.clear();
            if (!r.ec && r.fence_or_pttl == -4) {
                // Yielded (lock_handoff): the release's push wakes the other nodes' waiters;
                // ours attempts after the window, so that one of theirs goes first.
                q->streak = 0;
                q->yield_until = detail::sat_add(clock::now(), detail::handoff_bounds::yield_window);
            }
            const auto pause = r.ec ? c.lo.retry_delay : c.fallback(r.fence_or_pttl);
            wake_at = std::min(deadline, detail::sat_add(clock::now(), pause));
            // Woken while the attempt was out (a local handoff or a release's push): the
            // timer's cancel found no wait to end, so go again now rather than sleep through it.
            if (w.attempt && !s.closed && clock::now() < deadline) continue;
        } else if (w.rearm) {
            w.rearm = false;
            wake_at = std::min(deadline, std::max(w.hint, clock::now() + c.lo.retry_delay));
        } else if (is_head()) {
            wake_at = std::min(deadline, clock::now() + c.lo.retry_delay);
        }
        if (clock::now() >= deadline) break;
        timer.expires_at(wake_at);
        co_await timer.async_wait(nothrow);
        if (co_await cancelled()) {
            leave(false, {});
            co_return std::tuple{error_code(asio::error::operation_aborted), lease()};
        }
        if (!w.attempt && !w.rearm) {
            if (clock::now() >= deadline) break;
            w.attempt = is_head();  // the fallback timer
        }
    }
    leave(false, {});
    ++s.lock_stats.timeouts;
    c.diag().set_client_message(detail::timeout_message("'" + c.name + "' (" + c.names.key + ")", wait,
                                              last_error, expired_grant));
    co_return std::tuple{error_code(error::acquire_timeout), lease()};
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

using acquire_handler = asio::any_completion_handler<void(error_code, lease)>;

// Waits for the lock in acquire_coro (through the wait loops' spawn_acquire).
void wait_for_lock(acquire_call call, std::optional<attempt_result> first,
                   acquire_handler handler) {
    auto& s = *call.s;
    detail::spawn_acquire(s, acquire_coro(std::move(call), first), std::move(handler));
}

// An acquisition's first attempt, made without a coroutine (the uncontended case is the common
// one, and a coroutine frame per acquisition costs more than the rest of it). When the lock is
// held by another, the acquisition goes on waiting in acquire_coro.
struct fast_acquire : detail::lock_batch_entry {
    acquire_call call;
    bool once;
    acquire_handler handler;
    bool cancelled = false;  // the caller's cancellation slot fired during the attempt
    clock::time_point sent = clock::now();

    fast_acquire(acquire_call c, bool once, acquire_handler h)
        : call(std::move(c)), once(once), handler(std::move(h)) {}

    void complete(error_code ec, const acquire_reply& reply) override {
        auto slot = asio::get_associated_cancellation_slot(handler);
        if (slot.is_connected()) slot.clear();
        auto r = call.result(ec, reply, sent);
        auto finish = [&](error_code e, lease l) {
            asio::dispatch(asio::append(std::move(handler), e, std::move(l)));
        };
        const bool grant = r.granted;
        lease l = grant ? call.granted(r, false) : lease();
        // Granted, but after its validity: released; a try-acquire reports the lease lost.
        if (grant && !r.granted && once) return finish(error::lease_lost, lease());
        if (r.granted) {
            // Cancelled meanwhile: the lease goes out of scope here, which releases it.
            if (cancelled) return finish(asio::error::operation_aborted, lease());
            return finish(error_code{}, std::move(l));
        }
        if (once || (r.ec && !transient_error(r.ec))) return finish(r.ec, lease());
        if (cancelled) return finish(asio::error::operation_aborted, lease());
        wait_for_lock(std::move(call), r, std::move(handler));
    }
};

}  // namespace

lock_provider::lock_provider(session& s, lock_options opts) : session_(&s), opts_(opts) {
    detail::check_lock_options(opts_);
}

void lock_provider::acquire_impl(std::string name, acquire_options opts, diagnostics* diag,
                                 bool once, acquire_handler handler) {
    auto s = session_->impl();
    auto key = s->keys.lock(name);
    detail::acquire_lock_lease(std::move(s), std::move(key), "lock", std::move(name), opts_, opts,
                               diag, once, std::move(handler));
}

namespace detail {

void check_lock_options(const lock_options& o) {
    check_duration_option("default_lock_timeout", o.default_lock_timeout);
    check_retry_options(o.retry_delay, o.max_retries);
    check_interval_option("extension_interval", o.extension_interval, "default_lock_timeout",
                          o.default_lock_timeout, o.enable_extension);
    check_duration_option("fair_waiter_timeout", o.fair_waiter_timeout);
}

void acquire_lock_lease(std::shared_ptr<session_impl> s, std::string main_key,
                        std::string_view kind, std::string name, const lock_options& lo,
                        acquire_options opts, diagnostics* diag, bool once,
                        asio::any_completion_handler<void(error_code, lease)> handler) {
    diag_target target(diag);
    diagnostics& d = target.get();
    d.clear();
    error_code ec = detail::check_name(std::string(kind) + " name", name, d);
    auto what = [&] { return std::string(kind) + " '" + name + "'"; };
    if (!ec)
        ec = check_acquire_durations(d, what(), opts, lo.extension_interval, lo.enable_extension);
    if (!ec && opts.reentrant && opts.owner.empty())
        ec = detail::invalid(d, what() + ": reentrant acquisition needs the owner of the held lease");
    if (!ec) ec = s->check_open(d);
    if (ec) {
        complete_later(s->conn.get_executor(), std::move(handler), ec, lease());
        return;
    }
    if (s->opts.refuse_evicting_server &&
        policy_gate(*s, target, what(), handler,
                    [s, main_key, kind, name, lo, opts, owner = std::string(opts.owner), diag,
                     once](lease_handler h) mutable {
                        opts.owner = owner;
                        acquire_lock_lease(s, main_key, kind, name, lo, opts, diag, once,
                                           std::move(h));
                    }))
        return;
    // With session_options::replica_ack, a grant completes once the replicas have it.
    // (A new variable: any_completion_handler's move assignment recurses in Boost 1.81.)
    auto confirmed = detail::confirming_grants(*s, diag, std::move(handler));
    const auto ttl = opts.ttl.count() > 0 ? opts.ttl : lo.default_lock_timeout;
    std::string owner = opts.owner.empty() ? s->new_owner_token() : std::string(opts.owner);
    opts.owner = {};
    const bool queued = [&] {
        auto it = s->lock_queues.find(main_key);
        return it != s->lock_queues.end() && !it->second->waiters.empty();
    }();
    lock_names names(std::move(main_key), lo.fair);
    acquire_call call{s, lo, std::move(name), opts, std::move(owner),
                      ttl, std::move(names), std::move(target)};
    call.always_publish = kind != "lock";
    if (queued && !opts.reentrant && !once) {
        // Local waiters are ahead: queue behind them.
        wait_for_lock(std::move(call), std::nullopt, std::move(confirmed));
        return;
    }
    // The fast path, without a coroutine: one attempt, which usually succeeds.
    auto op = std::make_unique<fast_acquire>(std::move(call), once, std::move(confirmed));
    auto slot = asio::get_associated_cancellation_slot(op->handler);
    if (slot.is_connected())
        slot.assign([op = op.get()](asio::cancellation_type) { op->cancelled = true; });
    auto& c = op->call;
    c.submit(std::move(op));
}

}  // namespace detail

void lock_provider::extend_by_name_impl(std::string name, std::string owner, milliseconds ttl,
                                        diagnostics* diag, bool_handler handler) {
    auto s = session_->impl();
    detail::diag_target target(diag);
    diagnostics& d = target.get();
    d.clear();
    error_code ec = detail::check_name("lock name", name, d);
    if (!ec) ec = detail::check_name("owner", owner, d);
    if (!ec) ec = detail::check_duration_arg(d, "extend of lock '" + name + "'", "ttl", ttl);
    if (ec) {
        detail::complete_later(s->conn.get_executor(), std::move(handler), ec, false);
        return;
    }
    auto run = [](std::shared_ptr<session_impl> s, std::string key, std::string owner,
                  milliseconds ttl,
                  detail::diag_target target) -> asio::awaitable<std::tuple<error_code, bool>> {
        std::int64_t reply = 0;
        const std::vector<std::string> keys{key};
        const std::vector<std::string> args{owner, std::to_string(ttl.count())};
        auto [ec, n] =
            co_await detail::eval(s->conn, *lock_spec().renew, keys, args, reply, target.get());
        co_return std::tuple{ec, !ec && reply == 1};
    };
    auto key = s->keys.lock(name);
    detail::launch(s->conn.get_executor(),
                   run(s, std::move(key), std::move(owner), ttl, std::move(target)),
                   std::move(handler));
}

void lock_provider::force_release_impl(std::string name, bool_handler handler) {
    auto s = session_->impl();
    diagnostics d;
    if (auto ec = detail::check_name("lock name", name, d)) {
        detail::complete_later(s->conn.get_executor(), std::move(handler), ec, false);
        return;
    }
    auto run = [](std::shared_ptr<session_impl> s,
                  lock_names names) -> asio::awaitable<std::tuple<error_code, bool>> {
        static const script& force = script::embedded("lock_force_release");
        std::int64_t reply = 0;
        diagnostics d;
        const std::vector<std::string> keys{names.key};
        const std::vector<std::string> args{names.channel};
        auto [ec, n] = co_await detail::eval(s->conn, force, keys, args, reply, d);
        co_return std::tuple{ec, !ec && reply == 1};
    };
    detail::launch(s->conn.get_executor(), run(s, lock_names(s->keys.lock(name), false)),
                   std::move(handler));
}

}  // namespace redcoord
