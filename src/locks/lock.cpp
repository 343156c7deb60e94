#include "core/access.hpp"
#include "locks/lock_protocol.hpp"
#include "locks/lock_value.hpp"
#include "wait/wait_engine.hpp"
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

void lock_handoff(detail::lease_state& l);

const detail::lease_spec& lock_spec() {
    static const detail::lease_spec spec{&script::embedded("lock_renew"), nullptr,
                                         &detail::lock_batch_release, &lock_handoff};
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

// An attempt's element of lock_ops.lua's reply: the fence when granted, else {0, the holder's
// PTTL}.
using acquire_reply = detail::batch_reply;

// A local release hands the lock to the next local waiter: its attempt joins the release's
// script call, behind it; the release's own push is then skipped. A long run of handoffs
// yields to other nodes (handoff_bounds).
void lock_handoff(detail::lease_state& l) {
    auto& s = *l.session;
    if (s.closed || !s.waits) return;
    auto q = detail::wait_queues::of(s).find(l.keys.front());
    if (!q) return;
    if (q->waiters.empty()) {
        q->streak = 0;
        return;
    }
    const auto now = clock::now();
    using bounds = detail::handoff_bounds;
    if (q->streak++ == 0) q->streak_start = now;
    if (!q->wake_all &&
        (q->streak > bounds::max_handoffs || now - q->streak_start >= bounds::max_streak))
        q->waiters.front()->fsm->yield_next();
    q->own_releases.insert(l.owner);
    q->wake_head();
}

// One acquisition of a mutex (or a leadership): the Call of the wait engine (wait_engine.hpp).
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
    std::string_view primitive = "mutex";  // or "leadership" (tracing)
    // The last attempt's outcome is unknown (its reply was lost): the next one sends the same
    // value with mode "k", so that a grant it may have made is recognized as this one's.
    bool maybe_granted = false;

    const std::string& queue_key() const { return names.key; }
    const std::string& channel() const { return names.channel; }
    std::string what() const { return "'" + name + "' (" + names.key + ")"; }
    std::string stats_key() const { return names.key; }

    // Queues one attempt on the session's lock batch (lock_ops.lua's "a"); e's completion
    // gets its reply. yield: refused when another node waits (handoff_bounds). This call must
    // live until then.
    void submit(std::unique_ptr<detail::batch_entry> e, bool yield) {
        if (!maybe_granted) {
            const auto now_ms = std::chrono::duration_cast<milliseconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count();
            value.clear();
            detail::append_lock_value(value, owner, lo.enable_extension, now_ms, s->instance,
                                      s->node_id);
        }
        ttl_arg = std::to_string(ttl.count());
        const auto mode = detail::lock_attempt_mode(ao.reentrant, lo.fair, maybe_granted, yield);
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

    // An attempt's reply: the fence when granted, else the holder's PTTL or a wait_hint code.
    detail::grant_reply result(error_code ec, const acquire_reply& reply, clock::time_point sent) {
        detail::grant_reply r;
        r.sent = sent;
        r.ec = ec;
        r.transient = detail::transient_error(ec);
        maybe_granted = r.transient;
        if (!r.ec) {
            r.granted = !reply.array;
            if (r.granted)
                r.fence = reply.values[0];
            else
                r.hint = reply.values[1];
        }
        return r;
    }

    // One attempt from the waiting coroutine. Not cancellable: a grant must be known, or the
    // lock would stay taken until its TTL.
    template <class Token>
    auto async_attempt(bool yield, Token&& token) {
        using handler_type = asio::any_completion_handler<void(detail::grant_reply)>;
        struct entry : detail::batch_entry {
            acquire_call& call;
            handler_type handler;
            clock::time_point sent = clock::now();
            entry(acquire_call& c, handler_type h) : call(c), handler(std::move(h)) {}
            void complete(error_code ec, const acquire_reply& reply) override {
                asio::dispatch(asio::append(std::move(handler), call.result(ec, reply, sent)));
            }
        };
        return asio::async_initiate<Token, void(detail::grant_reply)>(
            [this, yield](auto h) {
                submit(std::make_unique<entry>(*this, handler_type(std::move(h))), yield);
            },
            token);
    }

    asio::awaitable<detail::grant_reply> attempt(bool, bool yield) {
        return async_attempt(yield, asio::use_awaitable);
    }

    // The lease of a grant. The names move into a lease that is still valid: nothing uses
    // them after that (an expired one is released, and the wait goes on with them).
    lease make_lease(const detail::grant_reply& r) {
        const bool valid = s->lease_deadline(r.sent, ttl) > clock::now();
        auto take = [valid](std::string& v) { return valid ? std::move(v) : v; };
        auto st = std::make_shared<detail::lease_state>();
        st->session = s;
        st->spec = &lock_spec();
        st->primitive = primitive;
        st->resource = take(name);
        st->keys.push_back(take(names.key));
        st->keys.push_back(take(names.fence));  // renewals keep the counter (lock_renew.lua)
        st->extra_args.push_back(take(names.channel));
        // Who watches a leadership without campaigning for it learns of a resignation from
        // the release's push: it is always published.
        if (always_publish) st->extra_args.push_back("1");
        st->owner = take(owner);
        st->fence = r.fence;
        st->ttl = ttl;
        st->renew_interval = lo.extension_interval;
        st->watchdog = lo.enable_extension;
        s->hold(st, r.sent);
        return detail::access::make_lease(std::move(st));
    }

    // Left without a grant: a fair waiter gives its place in the Redis queue up at once, so
    // those behind need not wait for it to lapse.
    void give_up() {
        if (!lo.fair || s->closed) return;
        auto leave_script = [](std::shared_ptr<session_impl> s, lock_names names,
                               std::string owner) -> asio::awaitable<void> {
            static const script& sc = script::embedded("lock_leave_queue");
            diagnostics d;
            std::int64_t removed = 0;
            const std::vector<std::string> keys{names.queue, names.queue_deadlines};
            const std::vector<std::string> args{owner, names.channel,
                                                std::string(s->publish_command())};
            co_await detail::eval(s->conn, sc, keys, args, removed, d);
        };
        detail::spawn_detached(*s, leave_script(s, names, owner));
    }
};

detail::grant_settings lock_settings(const lock_options& lo, const acquire_options& ao,
                                     milliseconds ttl, bool once) {
    detail::grant_settings gs;
    auto& p = gs.policy;
    p.retry_delay = lo.retry_delay;
    p.wait = ao.wait ? *ao.wait : detail::default_wait(lo.retry_delay, lo.max_retries);
    // A fair waiter keeps its place in the Redis queue fresh, and looks when its turn may be.
    if (lo.fair) p.cap = std::max(lo.fair_waiter_timeout / 3, milliseconds(1));
    p.ttl = ttl;
    p.wake_all = lo.fair;
    p.once = once;
    gs.lock_stats = true;
    return gs;
}

using acquire_handler = asio::any_completion_handler<void(error_code, lease)>;

// An acquisition's first attempt, made without a coroutine (the uncontended case is the common
// one, and a coroutine frame per acquisition costs more than the rest of it). The wait
// engine's machine decides on its reply; when the lock is held by another, the acquisition
// goes on waiting in the engine's coroutine.
struct fast_acquire : detail::batch_entry {
    acquire_call call;
    detail::grant_settings gs;
    acquire_handler handler;
    bool cancelled = false;  // the caller's cancellation slot fired during the attempt
    clock::time_point sent = clock::now();

    fast_acquire(acquire_call c, detail::grant_settings gs, acquire_handler h)
        : call(std::move(c)), gs(gs), handler(std::move(h)) {}

    void complete(error_code ec, const acquire_reply& reply) override {
        auto slot = asio::get_associated_cancellation_slot(handler);
        if (slot.is_connected()) slot.clear();
        auto r = call.result(ec, reply, sent);
        lease l = r.granted ? detail::take_grant(call, r, gs, false) : lease();
        detail::wait_fsm m(gs.policy, call.start);
        const auto a = m.first(r, cancelled);
        using step = detail::wait_fsm::step;
        if (a.what == step::join) {
            // (The executor first: the call moves into the coroutine.)
            const auto ex = call.s->conn.get_executor();
            detail::launch(ex, detail::wait_for_grant(std::move(call), gs, std::move(r)),
                           std::move(handler));
            return;
        }
        if (a.what == step::failed) call.give_up();
        // Cancelled after the grant: the lease goes out of scope here, which releases it.
        if (a.what != step::granted || a.ec) l = lease();
        asio::dispatch(asio::append(std::move(handler), a.ec, std::move(l)));
    }
};
}  // namespace

lock_provider::lock_provider(session& s, lock_options opts) : session_(&s), opts_(opts) {
    detail::check_lock_options(opts_);
}

void lock_provider::acquire_impl(std::string name, acquire_options opts, diagnostics* diag,
                                 bool once, acquire_handler handler) {
    auto s = detail::access::impl(*session_);
    auto key = s->keys.lock(name);
    detail::acquire_lock_lease(std::move(s), std::move(key), "lock", std::move(name), opts_, opts,
                               diag, once, std::move(handler));
}

namespace detail {

std::string_view lock_attempt_mode(bool reentrant, bool fair, bool maybe_granted, bool yield) {
    static constexpr std::string_view modes[] = {"-",  "r",  "f",   "rf",   "k",  "rk",
                                                 "fk", "rfk", "y",  "ry",   "fy", "rfy",
                                                 "ky", "rky", "fky", "rfky"};
    return modes[(reentrant ? 1 : 0) + (fair ? 2 : 0) + (maybe_granted ? 4 : 0) +
                 (yield ? 8 : 0)];
}

void lock_batch_release(script_batch& batch, const lease_state& l,
                        std::unique_ptr<batch_entry> op) {
    const auto& extra = l.extra_args;  // the channel, and "1" to publish always
    batch.add(std::move(op), {l.keys.front()},
              {"r", l.owner, extra.at(0),
               extra.size() > 1 ? std::string_view(extra[1]) : std::string_view("0")});
}

void check_lock_options(const lock_options& o) {
    check_duration_option("default_ttl", o.default_ttl);
    check_retry_options(o.retry_delay, o.max_retries);
    check_interval_option("extension_interval", o.extension_interval, "default_ttl",
                          o.default_ttl, o.enable_extension);
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
    // A grant reaches the handler only while valid (and, with session_options::replica_ack,
    // once the replicas have it). (A new variable: any_completion_handler's move assignment
    // recurses in Boost 1.81.)
    auto delivered = detail::delivering_grants(*s, diag, std::move(handler));
    const auto ttl = opts.ttl.count() > 0 ? opts.ttl : lo.default_ttl;
    std::string owner = opts.owner.empty() ? s->new_owner_token() : std::string(opts.owner);
    opts.owner = {};
    const bool queued = [&] {
        if (!s->waits) return false;
        auto q = wait_queues::of(*s).find(main_key);
        return q && !q->waiters.empty();
    }();
    lock_names names(std::move(main_key), lo.fair);
    auto gs = lock_settings(lo, opts, ttl, once);
    acquire_call call{s, lo, std::move(name), opts, std::move(owner),
                      ttl, std::move(names), std::move(target)};
    call.always_publish = kind != "lock";
    if (call.always_publish) call.primitive = "leadership";
    if (queued && !opts.reentrant && !once) {
        // Local waiters are ahead: queue behind them.
        launch(s->conn.get_executor(), wait_for_grant(std::move(call), gs), std::move(delivered));
        return;
    }
    // The fast path, without a coroutine: one attempt, which usually succeeds.
    auto op = std::make_unique<fast_acquire>(std::move(call), gs, std::move(delivered));
    auto slot = asio::get_associated_cancellation_slot(op->handler);
    if (slot.is_connected())
        slot.assign([op = op.get()](asio::cancellation_type) { op->cancelled = true; });
    auto& c = op->call;
    c.submit(std::move(op), false);
}

}  // namespace detail

void lock_provider::extend_by_name_impl(std::string name, std::string owner, milliseconds ttl,
                                        diagnostics* diag, bool_handler handler) {
    auto s = detail::access::impl(*session_);
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
        const std::vector<std::string> keys{key, keyspace::companion(key, "fence")};
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

lock_context lock_provider::new_context() { return {*this, session_->new_owner_token()}; }

lock_context::lock_context(lock_provider& locks, std::string owner)
    : locks_(&locks), owner_(std::make_shared<const std::string>(std::move(owner))) {
    if (owner_->empty()) {
        diagnostics d;
        d.set_client_message("lock_context: the owner must not be empty");
        throw error_with_diagnostics(error::invalid_argument, d);
    }
}

void lock_provider::force_release_impl(std::string name, bool_handler handler) {
    auto s = detail::access::impl(*session_);
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
        const std::vector<std::string> args{names.channel, std::string(s->publish_command())};
        auto [ec, n] = co_await detail::eval(s->conn, force, keys, args, reply, d);
        co_return std::tuple{ec, !ec && reply == 1};
    };
    detail::launch(s->conn.get_executor(), run(s, lock_names(s->keys.lock(name), false)),
                   std::move(handler));
}

}  // namespace redcoord
