#include "core/replica_ack.hpp"
#include "core/random.hpp"
#include "core/session_impl.hpp"

#include <redcoord/error.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <random>

namespace redcoord {
namespace detail {
namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

// The default node id: the host name and the process id, so that every process on a host is a
// node of its own to membership (one heartbeat each; the reaper frees only a dead one's locks).
std::string default_node_id() {
    char buf[256] = {};
    std::string host = ::gethostname(buf, sizeof buf - 1) == 0 && buf[0] != '\0' ? buf : "node";
    return host + "-" + std::to_string(::getpid());
}

}  // namespace

void spawn_detached(session_impl& s, asio::awaitable<void> f) {
    asio::co_spawn(s.conn.get_executor(), std::move(f), asio::detached);
}

// ---- push_router ----------------------------------------------------------------------------

std::shared_ptr<push_router> push_router::of(connection& conn) {
    auto& shared = shared_by_sessions(conn);
    // A router whose last session left may live on until its receive loop has ended: a new
    // session starts afresh.
    if (auto existing = std::static_pointer_cast<push_router>(shared.lock());
        existing && existing->running_)
        return existing;
    auto made = std::make_shared<push_router>(conn);
    shared = made;
    made->start();
    return made;
}

void push_router::start() {
    running_ = true;
    asio::co_spawn(conn_.get_executor(), receive_loop(shared_from_this()),
                   asio::bind_cancellation_slot(stop_.slot(), asio::detached));
}

std::uint64_t push_router::join(std::function<void()> on_reconnect) {
    const auto owner = next_owner_++;
    owners_.emplace(owner, std::move(on_reconnect));
    return owner;
}

void push_router::leave(std::uint64_t owner) {
    if (owners_.erase(owner) == 0) return;
    push_message closed;
    closed.event = push_event::closed;
    const auto limit = next_id_;
    {
        dispatch_scope scope(*this);
        std::vector<std::uint64_t> mine;
        for (auto& [k, e] : channels_)
            for (auto it = e.listeners.begin(); it != e.listeners.end() && it->first < limit; ++it)
                if (it->second.owner == owner && !it->second.removed) {
                    if (it->second.notify_close) it->second.fn(closed);
                    mine.push_back(it->first);
                }
        for (auto id : mine) remove(id);
    }
    if (owners_.empty() && running_) {
        // The last session has gone: so does the receive loop (and with it, this router).
        running_ = false;
        stop_.emit(asio::cancellation_type::terminal);
    }
}

std::uint64_t push_router::add(std::uint64_t owner, const std::string& channel, bool pattern,
                               listener fn, bool notify_close, bool wake_up) {
    const bool sharded = wake_up && !pattern && access::is_cluster(conn_);
    const std::string k = (pattern ? "p:" : sharded ? "s:" : "c:") + channel;
    auto [it, inserted] = channels_.try_emplace(k);
    if (inserted) {
        it->second.channel = channel;
        it->second.pattern = pattern;
        it->second.sharded = sharded;
        if (sharded)
            subscribe_shard(k, 0, false);
        else
            send(pattern ? "PSUBSCRIBE" : "SUBSCRIBE", channel);
    }
    const auto id = next_id_++;
    it->second.listeners.emplace(id, slot{std::move(fn), owner, false, notify_close});
    by_id_.emplace(id, k);
    return id;
}

void push_router::remove(std::uint64_t id) {
    if (dispatching_ == 0) return erase(id);
    auto b = by_id_.find(id);
    if (b == by_id_.end()) return;
    auto it = channels_.find(b->second);
    if (it == channels_.end()) return;
    auto l = it->second.listeners.find(id);
    if (l == it->second.listeners.end() || l->second.removed) return;
    // A listener may be running (it may be the one removing itself): erased after dispatch.
    l->second.removed = true;
    removed_.push_back(id);
}

void push_router::erase(std::uint64_t id) {
    auto b = by_id_.find(id);
    if (b == by_id_.end()) return;
    auto it = channels_.find(b->second);
    by_id_.erase(b);
    if (it == channels_.end()) return;
    it->second.listeners.erase(id);
    if (it->second.listeners.empty()) {
        if (running_)
            send(it->second.pattern   ? "PUNSUBSCRIBE"
                 : it->second.sharded ? "SUNSUBSCRIBE"
                                      : "UNSUBSCRIBE",
                 it->second.channel);
        channels_.erase(it);
    }
}

void push_router::end_dispatch() {
    if (--dispatching_ > 0) return;
    memo_.clear();
    while (!removed_.empty()) {
        const auto id = removed_.back();
        removed_.pop_back();
        erase(id);
    }
}

std::shared_ptr<void>& push_router::memo(const void* tag, std::uint64_t owner) {
    for (auto& m : memo_)
        if (m.tag == tag && m.owner == owner) return m.value;
    return memo_.push_back({tag, owner, nullptr}), memo_.back().value;
}

void push_router::send(std::string_view command, const std::string& channel) {
    auto req = std::make_shared<request>();
    req->push(command, channel);
    // The connection restores subscriptions after a reconnect, so a failure here (not
    // connected) is repaired by the restore. A refusal (an ACL without the channel) is the
    // server's answer: nothing to retry.
    conn_.async_exec(*req, [req](error_code, std::size_t) {});
}

void push_router::subscribe_shard(const std::string& key, int attempt, bool gap_when_done) {
    auto it = channels_.find(key);
    if (it == channels_.end() || !running_) return;
    auto req = std::make_shared<request>();
    req->push("SSUBSCRIBE", it->second.channel);
    conn_.async_exec(*req, [req, key, attempt, gap_when_done,
                            w = weak_from_this()](error_code ec, std::size_t) {
        auto self = w.lock();
        if (!self || !self->running_) return;
        auto it = self->channels_.find(key);
        if (it == self->channels_.end()) return;  // nobody listens any more
        if (!ec) {
            if (gap_when_done) self->deliver_gap(it->second);
            return;
        }
        if (ec == asio::error::operation_aborted || ec == error::run_not_started) return;
        // Refused (MOVED, CLUSTERDOWN while the map is corrected) or not sent (the node's link
        // is down): the cluster's map is read again, and the subscription tried again.
        access::refresh_cluster(self->conn_);
        auto timer = std::make_shared<asio::steady_timer>(self->conn_.get_executor());
        timer->expires_after(std::chrono::milliseconds(50) * (1 << std::min(attempt, 5)));
        timer->async_wait([timer, key, attempt, w](error_code) {
            if (auto self = w.lock())
                self->subscribe_shard(key, attempt + 1, true);
        });
    });
}

void push_router::deliver_gap(entry& e) {
    push_message gap;
    gap.event = push_event::reconnected;
    const auto limit = next_id_;
    dispatch_scope scope(*this);
    for (auto it = e.listeners.begin(); it != e.listeners.end() && it->first < limit; ++it)
        if (!it->second.removed) it->second.fn(gap);
}

void push_router::resubscribe_shards(const std::string* only_channel) {
    std::vector<std::string> keys;
    for (auto& [k, e] : channels_)
        if (e.sharded && (!only_channel || e.channel == *only_channel)) keys.push_back(k);
    for (const auto& k : keys) {
        // Messages published before the new SSUBSCRIBE holds are not heard: the listeners look
        // again now and once it holds.
        if (only_channel) {
            auto it = channels_.find(k);
            if (it != channels_.end()) deliver_gap(it->second);
        }
        subscribe_shard(k, 0, true);
    }
}

void push_router::dispatch(const push_message& m) {
    entry* target = nullptr;
    if (!m.is_gap()) {
        if (m.kind == "sunsubscribe") {
            // Unrequested (the connection consumes the confirmations it awaits): the channel's
            // slot has moved to another master.
            resubscribe_shards(&m.channel);
            return;
        }
        const bool pattern = m.kind == "pmessage";
        const bool sharded = m.kind == "smessage";
        if (!pattern && !sharded && m.kind != "message") return;
        key_.assign(pattern ? "p:" : sharded ? "s:" : "c:").append(pattern ? m.pattern : m.channel);
        auto it = channels_.find(key_);
        if (it == channels_.end()) return;
        target = &it->second;
    } else if (m.event == push_event::reconnected && access::is_cluster(conn_)) {
        // A master's link came back or the masters changed (a failover): each sharded channel
        // listens again on its slot's master now.
        resubscribe_shards(nullptr);
    }
    // Listeners added from here on wait for the next message. Entries are not erased while
    // dispatching, and std::map insertions keep iterators valid.
    const auto limit = next_id_;
    dispatch_scope scope(*this);
    auto deliver = [&](entry& e) {
        for (auto it = e.listeners.begin(); it != e.listeners.end() && it->first < limit; ++it)
            if (!it->second.removed) it->second.fn(m);
    };
    if (target) {
        deliver(*target);
    } else {
        for (auto& [k, e] : channels_) deliver(e);
    }
}

asio::awaitable<void> push_router::receive_loop(std::shared_ptr<push_router> self) {
    // Everything the connection has queued is taken in one resume.
    std::vector<push_message> batch;
    asio::steady_timer pause(self->conn_.get_executor());
    for (;;) {
        batch.clear();
        auto [ec] = co_await self->conn_.async_receive_all(batch, nothrow);
        if (!self->running_) co_return;
        if (ec == asio::error::operation_aborted) {
            auto cs = co_await asio::this_coro::cancellation_state;
            if (cs.cancelled() != asio::cancellation_type::none) co_return;
        }
        if (ec) {
            // The connection is not running (yet, or any more), or an earlier router's loop
            // has not let go of the receive yet: look again shortly.
            pause.expires_after(std::chrono::milliseconds(50));
            auto [ec2] = co_await pause.async_wait(nothrow);
            if (ec2 || !self->running_) co_return;
            continue;
        }
        for (const auto& m : batch) {
            if (m.event == push_event::reconnected) {
                std::vector<std::function<void()>> hooks;
                for (const auto& [owner, hook] : self->owners_) hooks.push_back(hook);
                for (const auto& hook : hooks) hook();
            }
            self->dispatch(m);
            if (!self->running_) co_return;
        }
    }
}

// ---- push_hub -------------------------------------------------------------------------------

void push_hub::start(const std::shared_ptr<session_impl>& owner) {
    owner_ = router_->join([w = std::weak_ptr<session_impl>(owner)] {
        auto s = w.lock();
        if (!s || s->closed) return;
        s->dog.renew_all_now(s);
        s->read_policy();  // perhaps another server now (a failover)
    });
}

void push_hub::stop() { router_->leave(owner_); }

// ---- watchdog -------------------------------------------------------------------------------

void watchdog::schedule(const std::shared_ptr<lease_state>& l, clock::time_point when) {
    remove(*l);
    l->dog_entry = items_.insert(item{when, seq_++, l}).first;
    l->scheduled = true;
}

void watchdog::add(const std::shared_ptr<lease_state>& l) {
    const auto when = l->watchdog ? std::min(l->next_renewal, l->deadline) : l->deadline;
    const bool earliest = items_.empty() || when < items_.begin()->when;
    schedule(l, when);
    if (earliest && timer_) timer_->cancel();
}

void watchdog::clear() noexcept {
    for (const auto& it : items_)
        if (auto l = it.lease.lock()) l->scheduled = false;
    items_.clear();
}

void watchdog::start(const std::shared_ptr<session_impl>& owner) {
    timer_ = std::make_unique<asio::steady_timer>(owner->conn.get_executor());
    asio::co_spawn(owner->conn.get_executor(), loop(owner), asio::detached);
}

void watchdog::stop() {
    stopped_ = true;
    if (timer_) timer_->cancel();
}

void watchdog::renew_all_now(const std::shared_ptr<session_impl>& owner) {
    std::vector<std::shared_ptr<lease_state>> held;
    for (const auto& it : items_) {
        auto l = it.lease.lock();
        if (l && l->status == lease::status::held && l->watchdog) held.push_back(std::move(l));
    }
    for (auto& l : held) send_renewal(owner, l);
}

void watchdog::send_renewal(const std::shared_ptr<session_impl>& owner,
                            const std::shared_ptr<lease_state>& l) {
    const auto now = clock::now();
    const auto planned = std::min(l->next_renewal, now);
    l->next_renewal = now + owner->renew_interval(*l);
    asio::co_spawn(owner->conn.get_executor(), renew(owner, l, planned), asio::detached);
}

asio::awaitable<void> watchdog::loop(std::shared_ptr<session_impl> owner) {
    auto& self = owner->dog;
    while (!self.stopped_) {
        if (self.items_.empty())
            self.timer_->expires_at(clock::time_point::max());
        else
            self.timer_->expires_at(self.items_.begin()->when);
        co_await self.timer_->async_wait(nothrow);
        if (self.stopped_) break;
        const auto now = clock::now();
        while (!self.items_.empty() && self.items_.begin()->when <= now) {
            auto l = self.items_.begin()->lease.lock();
            if (!l) {
                self.items_.erase(self.items_.begin());
                continue;
            }
            self.remove(*l);
            if (l->status != lease::status::held) continue;
            if (now >= l->deadline) {
                owner->mark_lost(*l, error::lease_lost);
                continue;
            }
            // Renewals leave on schedule even while earlier ones are unanswered (a slow
            // network): each one answers for its own send time.
            if (l->watchdog && now >= l->next_renewal) self.send_renewal(owner, l);
            self.add(l);
        }
    }
    self.clear();
}

asio::awaitable<void> watchdog::renew(std::shared_ptr<session_impl> owner,
                                      std::shared_ptr<lease_state> l,
                                      clock::time_point planned) {
    const auto sent = clock::now();
    const auto ttl = l->ttl;
    request::config cfg;
    // A reply later than the validity this renewal buys is of no use. (Not the current
    // deadline: renewals still in flight may move it.)
    cfg.timeout = std::max(milliseconds(1), std::chrono::ceil<milliseconds>(
                                                owner->lease_deadline(sent, ttl) - sent));
    cfg.fail_fast = true;
    std::vector<std::string> args{l->owner, std::to_string(ttl.count())};
    args.insert(args.end(), l->extra_args.begin(), l->extra_args.end());
    args.emplace_back(owner->publish_command());  // a renewal may free room (a lapsed holder)
    std::int64_t reply = -1;
    auto [ec, n] = co_await eval(owner->conn, *l->spec->renew, l->keys, args, reply, l->scratch,
                                 cfg);
    // session_options::replica_ack: a renewal the replicas did not acknowledge in time counts
    // as unanswered (tried again; the deadline still rules).
    if (!ec && reply == 1 && replica_ack_on(*owner) && l->status == lease::status::held)
        std::tie(ec) =
            co_await async_confirm_replicas(*owner, &l->scratch, l->keys.front(), nothrow);
    if (owner->closed || l->status != lease::status::held) co_return;
    if (!ec && reply == 1) {
        ++l->renewals;
        ++owner->lock_stats.renewals;
        owner->shared.renewed(*owner);
        // Only a renewal sent later than the one that set the deadline moves it.
        l->deadline = std::max(l->deadline, owner->lease_deadline(sent, ttl));
        owner->dog.add(l);
        if (owner->trace.on(lease_category(l->primitive))) {
            const auto late = micros(clock::now() - planned);
            trace_lease(*owner, trace_kind::lease_renewed, *l, late);
            if (late * 4 > owner->renew_interval(*l))
                trace_lease(*owner, trace_kind::renewal_late, *l, late);
        }
        co_return;
    }
    if (!ec) {  // gone or taken: told by Redis itself
        owner->mark_lost(*l, error::lease_lost);
        co_return;
    }
    // No answer (connection down, timeout): try again soon, until the deadline.
    l->next_renewal = std::min(l->next_renewal, clock::now() + owner->opts.renew_retry_delay);
    owner->dog.add(l);
}

// ---- statistics -----------------------------------------------------------------------------

void lock_stats_window::record(std::chrono::microseconds wait, bool was_contended) {
    ++acquisitions;
    if (was_contended) ++contended;
    const auto us = wait.count();
    sum_ += static_cast<double>(us);
    max_ = std::max(max_, us);
    if (samples_.size() < window)
        samples_.push_back(us);
    else
        samples_[next_++ % window] = us;
}

void lock_stats_window::fill(lock_statistics& out) const {
    out.acquisitions = acquisitions;
    out.contended_acquisitions = contended;
    out.timeouts = timeouts;
    out.leases_lost = lost;
    out.renewals = renewals;
    if (acquisitions == 0) return;
    out.wait_mean = std::chrono::microseconds(
        static_cast<std::int64_t>(sum_ / static_cast<double>(acquisitions)));
    out.wait_max = std::chrono::microseconds(max_);
    auto sorted = samples_;
    auto pick = [&](double q) {
        const auto i = static_cast<std::size_t>(q * static_cast<double>(sorted.size() - 1));
        std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(i),
                         sorted.end());
        return std::chrono::microseconds(sorted[i]);
    };
    out.wait_p50 = pick(0.50);
    out.wait_p99 = pick(0.99);
}

// ---- session_impl ---------------------------------------------------------------------------

session_impl::session_impl(connection& c, session_options o)
    : conn(access::alias(c)), opts(std::move(o)), keys(opts.prefix),
      node_id(opts.node_id.empty() ? default_node_id() : opts.node_id), hub(conn),
      lock_ops(conn, script::embedded("lock_ops"), [this] {
          asio::post(conn.get_executor(), [s = shared_from_this()] { s->lock_ops.flush(); });
      }) {
    append_random_hex(instance, 1);
    trace.configure(opts.trace);
}

void session_impl::watch_link() {
    link_watch = access::watch_link(
        conn, [w = weak_from_this()](link_change what, error_code ec, std::string_view peer) {
            auto s = w.lock();
            if (!s) return;
            const auto now = clock::now();
            if (what == link_change::down) s->link_down = now;
            if (!s->trace.on(trace_coordination)) return;
            trace_event e;
            e.kind = what == link_change::up     ? trace_kind::connection_up
                     : what == link_change::down ? trace_kind::connection_down
                                                 : trace_kind::connection_reconnecting;
            e.primitive = "connection";
            e.resource = peer;
            e.node = s->node_id;
            std::string why;
            if (what != link_change::up) why = ec.message();
            e.detail = why;
            // Up: how long it was down; reconnecting: how long it has been down so far.
            if (what != link_change::down && s->link_down != clock::time_point{})
                e.duration = micros(now - s->link_down);
            s->trace.emit(trace_coordination, e);
        });
}

std::string session_impl::new_owner_token() {
    std::string out = node_id;
    out.push_back(':');
    append_random_hex(out, 2);
    return out;
}

milliseconds session_impl::drift(milliseconds ttl) const {
    // TTLs from the API are at most max_duration; so is what is converted here, whatever comes.
    const auto d = static_cast<std::int64_t>(std::ceil(
        static_cast<double>(std::min(ttl, max_duration).count()) * opts.clock_drift_factor));
    return sat_add(milliseconds(d), opts.clock_drift_floor);
}

clock::time_point session_impl::lease_deadline(clock::time_point sent, milliseconds ttl) const {
    return sat_add(sent, sat_add(ttl, -drift(ttl)));
}

milliseconds session_impl::renew_interval(const lease_state& l) const {
    const auto interval =
        l.renew_interval.count() > 0
            ? l.renew_interval
            : std::chrono::duration_cast<milliseconds>(l.ttl * opts.renew_fraction);
    return std::max(interval, milliseconds(1));
}

void session_impl::hold(const std::shared_ptr<lease_state>& l, clock::time_point sent) {
    if (l->granted == clock::time_point{}) l->granted = sent;
    l->deadline = lease_deadline(sent, l->ttl);
    l->next_renewal = sat_add(sent, renew_interval(*l));
    dog.add(l);
}

void session_impl::mark_lost(lease_state& l, error_code why) {
    if (l.status != lease::status::held) return;
    l.status = lease::status::lost;
    l.lost_reason = why;
    ++lock_stats.lost;
    shared.lost(*this);
    dog.remove(l);
    if (trace.on(lease_category(l.primitive)))
        trace_lease(*this, trace_kind::lease_lost, l, micros(clock::now() - l.granted),
                    why.message());
    // Keep the lease alive while its waiters and the work bound to it run their handlers.
    auto waiters = std::move(l.lost_waiters);
    l.lost_waiters.clear();
    for (auto& h : waiters) asio::post(conn.get_executor(), asio::append(std::move(h), error_code{}));
    for (auto& sig : l.signals) sig.emit(asio::cancellation_type::terminal);
}

void session_impl::mark_released(lease_state& l) {
    if (l.status != lease::status::held) return;
    l.status = lease::status::released;
    dog.remove(l);
    if (trace.on(lease_category(l.primitive)))
        trace_lease(*this, trace_kind::lock_released, l, micros(clock::now() - l.granted));
    auto waiters = std::move(l.lost_waiters);
    l.lost_waiters.clear();
    for (auto& h : waiters)
        asio::post(conn.get_executor(),
                   asio::append(std::move(h), error_code(asio::error::operation_aborted)));
    // What the hook wakes runs in a later turn (a timer's completion), after the caller has
    // queued the release: the next local waiter's attempt rides the same pipeline behind it,
    // for a lock in the same script call.
    if (l.spec->on_release) l.spec->on_release(l);  // once: the status is no longer held
}

error_code session_impl::check_open(diagnostics& diag) const {
    if (!closed && !closing) return {};
    diag.set_client_message(closed ? "the session is closed" : "the session is closing");
    return error::session_closed;
}

namespace {

std::vector<std::shared_ptr<lease_state>> held_leases(const watchdog& dog) {
    std::vector<std::shared_ptr<lease_state>> held;
    for (const auto& it : dog.items()) {
        if (auto l = it.lease.lock(); l && l->status == lease::status::held) held.push_back(l);
    }
    return held;
}

}  // namespace

void session_impl::close() {
    if (closed) return;
    // Leases still held: their holders must hear of it, and Redis should be told.
    for (auto& l : held_leases(dog)) {
        mark_lost(*l, error::session_closed);
        send_release(l, nullptr, {});
    }
    shared.stop(*this);
    closed = true;
    // Sent now: a flush posted for later may never run (the io_context may be stopping), and
    // its queued operations would keep this session alive.
    lock_ops.flush();
    close_steps.clear();
    if (waits) waits->on_close();  // every local waiter wakes, sees the session closed
    dog.stop();
    hub.stop();
    access::unwatch_link(conn, link_watch);
}

asio::awaitable<error_code> session_impl::close_gracefully(std::shared_ptr<session_impl> s) {
    s->closing = true;
    // Every step starts at once; the close then waits for them all.
    struct pending {
        std::size_t left = 1;
        error_code first;  // the first error of a step
        asio::steady_timer done;
        explicit pending(const asio::any_io_executor& ex) : done(ex, clock::time_point::max()) {}
    };
    auto p = std::make_shared<pending>(s->conn.get_executor());
    auto step_done = [p](error_code ec) {
        // A release that found the lease gone (it expired meanwhile) has nothing left to do.
        if (ec && ec != error::not_held && !p->first) p->first = ec;
        if (--p->left == 0) p->done.cancel();
    };
    auto steps = std::move(s->close_steps);
    s->close_steps.clear();
    auto held = held_leases(s->dog);
    p->left += steps.size() + held.size();
    for (auto& [id, step] : steps) step(step_done);
    for (auto& l : held) {
        s->mark_released(*l);
        s->send_release(l, nullptr, step_done);
    }
    s->lock_ops.flush();
    // Answered last: everything sent before it has been answered by then.
    auto drain = std::make_shared<request>();
    drain->push("PING");
    s->conn.async_exec(*drain, [drain, step_done](error_code ec, std::size_t) { step_done(ec); });
    co_await p->done.async_wait(nothrow);
    s->close();
    co_return p->first;
}

}  // namespace detail

// ---- session --------------------------------------------------------------------------------

namespace {

// text as a C string literal: "evil\nnode".
std::string quoted(std::string_view text) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out = "\"";
    for (const char ch : text) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c == '"' || c == '\\') {
            out.push_back('\\');
            out.push_back(ch);
        } else if (c < 0x20 || c == 0x7f) {
            out.append("\\x").push_back(hex[c >> 4]);
            out.push_back(hex[c & 0xf]);
        } else {
            out.push_back(ch);
        }
    }
    return out + "\"";
}

// Node ids and the prefix end up in key names (the heartbeat's is `{prefix}hb:{registry}:node`), in owner
// tokens, and in what operators and logs read one line at a time (redis-cli --scan, a lock's
// holder): a control character there would garble a line or forge another. None, then.
void check_printable(std::string_view field, std::string_view value) {
    for (const char ch : value) {
        const auto c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c == 0x7f)
            detail::throw_bad_config(std::string(field) + ": " + quoted(value) +
                                     " contains a control character");
    }
}

void check_options(const session_options& o) {
    if (!(o.renew_fraction > 0.0 && o.renew_fraction < 1.0))
        detail::throw_bad_config("renew_fraction: " + std::to_string(o.renew_fraction) +
                                 " is not in (0, 1)");
    if (!(o.clock_drift_factor >= 0.0 && o.clock_drift_factor < 0.5))
        detail::throw_bad_config("clock_drift_factor: " + std::to_string(o.clock_drift_factor) +
                                 " is not in [0, 0.5)");
    detail::check_duration_option("clock_drift_floor", o.clock_drift_floor, true);
    detail::check_duration_option("renew_retry_delay", o.renew_retry_delay);
    detail::check_duration_option("statistics_interval", o.statistics_interval, true);
    check_printable("node_id", o.node_id);
    check_printable("prefix", o.prefix);
    detail::check_replica_ack(o.replica_ack);
}

}  // namespace

session::session(connection& conn, session_options opts) {
    check_options(opts);
    impl_ = std::make_shared<detail::session_impl>(conn, std::move(opts));
    impl_->hub.start(impl_);
    impl_->dog.start(impl_);
    impl_->watch_link();
    impl_->read_policy();
}

session::~session() { impl_->close(); }

void session::close_impl(
    boost::asio::any_completion_handler<void(boost::system::error_code)> h) {
    namespace asio = boost::asio;
    using boost::system::error_code;
    if (impl_->closed || impl_->closing) {
        detail::complete_later(impl_->conn.get_executor(), std::move(h), error_code{});
        return;
    }
    detail::launch(impl_->conn.get_executor(), detail::session_impl::close_gracefully(impl_),
                   std::move(h));
}

connection& session::get_connection() const noexcept { return impl_->conn; }
session::executor_type session::get_executor() const noexcept {
    return impl_->conn.get_executor();
}
const keyspace& session::keys() const noexcept { return impl_->keys; }
const std::string& session::node_id() const noexcept { return impl_->node_id; }
const session_options& session::options() const noexcept { return impl_->opts; }
std::string session::new_owner_token() const { return impl_->new_owner_token(); }
std::size_t session::held_leases() const noexcept { return impl_->dog.size(); }

lock_statistics session::get_lock_statistics() const {
    lock_statistics out;
    impl_->lock_stats.fill(out);
    return out;
}

}  // namespace redcoord
