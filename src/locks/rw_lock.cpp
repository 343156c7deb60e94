#include "core/access.hpp"
#include "wait/wait_engine.hpp"
#include "core/replica_ack.hpp"
#include "core/session_impl.hpp"
#include "locks/lock_protocol.hpp"

#include <redcoord/error.hpp>
#include <redcoord/rw_lock.hpp>

#include <boost/asio/co_spawn.hpp>

#include <tuple>

namespace redcoord {

namespace asio = boost::asio;
using boost::system::error_code;
using detail::clock;
using detail::session_impl;
using std::chrono::milliseconds;

namespace {

const detail::lease_spec& read_spec() {
    static const detail::lease_spec spec{&script::embedded("rw_renew_read"),
                                         &script::embedded("rw_release_read")};
    return spec;
}

const detail::lease_spec& write_spec() {
    static const detail::lease_spec spec{&script::embedded("rw_renew_write"),
                                         &script::embedded("rw_release_write"), nullptr,
                                         &detail::local_handoff};
    return spec;
}

struct rw_names {
    std::string writer, readers, waiting, fence, channel, holders;
    explicit rw_names(const keyspace& ks, std::string_view name) {
        const auto key = ks.lock(name);
        writer = keyspace::companion(key, "rw:writer");
        readers = keyspace::companion(key, "rw:readers");
        waiting = keyspace::companion(key, "rw:writers_waiting");
        fence = keyspace::companion(key, "rw:fence");
        channel = keyspace::companion(key, "rw:released");
        holders = keyspace::companion(key, "rw:holders");
    }
};

struct rw_call {
    std::shared_ptr<session_impl> s;
    lock_options lo;
    bool write;
    std::string name;
    std::string owner;
    milliseconds ttl;
    rw_names names;
    detail::diag_target diag_;
    diagnostics& diag() noexcept { return diag_.get(); }
    clock::time_point start = clock::now();
    bool marked = false;  // an attempt may have left a waiting mark (writers)
    std::string_view primitive = write ? "write" : "read";

    // One local queue for readers and writers of the lock, keyed by its channel (the mutex
    // keys its queues by its main key, so the two never share one).
    const std::string& queue_key() const { return names.channel; }
    const std::string& channel() const { return names.channel; }
    std::string what() const { return (write ? "write lock '" : "read lock '") + name + "'"; }
    std::string stats_key() const { return s->keys.lock(name); }

    asio::awaitable<detail::grant_reply> attempt(bool waiting, bool) {
        static const script& acquire_read = script::embedded("rw_acquire_read");
        static const script& acquire_write = script::embedded("rw_acquire_write");
        const std::vector<std::string> keys{names.writer, names.readers, names.waiting,
                                            names.fence, names.holders};
        std::vector<std::string> args{owner, std::to_string(ttl.count())};
        if (write) {
            args.push_back(waiting ? "1" : "0");
            args.push_back(std::to_string(lo.fair_waiter_timeout.count()));
            args.push_back(s->node_id);
            if (waiting) marked = true;
        } else {
            args.push_back(s->node_id);
        }
        std::vector<std::int64_t> reply;
        detail::grant_reply r;
        r.sent = clock::now();
        // Not cancellable: a grant must be known, or the hold would stay until its TTL.
        auto [ec, n] = co_await detail::eval(s->conn, write ? acquire_write : acquire_read, keys,
                                             args, reply, diag(), {}, false);
        r.ec = ec;
        if (!ec && reply.size() != 3) {
            r.ec = error::unexpected_reply;
            diag().set_client_message(std::string(write ? "rw_acquire_write" : "rw_acquire_read") +
                                    ": expected 3 integers");
        }
        if (r.ec) co_return r;
        r.granted = reply[0] == 1;
        if (r.granted) {
            r.fence = reply[1];
            // A reader let in: other readers may come too.
            r.room = write ? 0 : 1;
            if (write) marked = false;  // the grant removed the mark
        } else {
            r.hint = reply[1];
        }
        co_return r;
    }

    lease make_lease(const detail::grant_reply& r) {
        auto st = std::make_shared<detail::lease_state>();
        st->session = s;
        st->spec = write ? &write_spec() : &read_spec();
        st->primitive = primitive;
        st->resource = name;
        if (write)
            st->keys = {names.writer};
        else
            st->keys = {names.readers, names.holders};
        st->extra_args = {names.channel};
        st->owner = owner;
        st->fence = r.fence;
        st->ttl = ttl;
        st->renew_interval = lo.extension_interval;
        st->watchdog = lo.enable_extension;
        // A writer's release wakes the local waiters at once (then by its push, as for remote
        // ones). A reader's release frees the lock only when it was the last reader, which its
        // push tells (it publishes only then).
        if (write) st->wait_key = names.channel;
        s->hold(st, r.sent);
        return detail::access::make_lease(std::move(st));
    }

    // A writer that waited and gives up removes its mark at once, so the readers it kept out
    // need not wait for the mark to lapse.
    void give_up() {
        if (!write || !marked || s->closed) return;
        marked = false;
        auto leave = [](std::shared_ptr<session_impl> s, std::string waiting, std::string channel,
                        std::string owner) -> asio::awaitable<void> {
            static const script& sc = script::embedded("rw_leave");
            diagnostics d;
            std::int64_t removed = 0;
            const std::vector<std::string> keys{waiting};
            const std::vector<std::string> args{owner, channel,
                                                std::string(s->publish_command())};
            co_await detail::eval(s->conn, sc, keys, args, removed, d);
        };
        detail::spawn_detached(*s, leave(s, names.waiting, names.channel, owner));
    }
};

}  // namespace

rw_lock_provider::rw_lock_provider(session& s, lock_options opts) : session_(&s), opts_(opts) {
    detail::check_lock_options(opts_);
    if (opts_.fair)
        detail::throw_bad_config(
            "fair: not supported by the read-write lock (writers are preferred instead)");
}

void rw_lock_provider::acquire_impl(std::string name, acquire_options opts, diagnostics* diag,
                                    bool write, bool once, acquire_handler handler) {
    auto s = detail::access::impl(*session_);
    detail::diag_target target(diag);
    diagnostics& d = target.get();
    d.clear();
    const char* kind = write ? "write lock '" : "read lock '";
    error_code ec = detail::check_name("lock name", name, d);
    if (!ec)
        ec = detail::check_acquire_durations(d, kind + name + "'", opts, opts_.extension_interval,
                                             opts_.enable_extension);
    if (!ec && opts.reentrant)
        ec = detail::invalid(d, kind + name +
                                    "': reentrant acquisition is not supported by the "
                                    "read-write lock");
    if (!ec) ec = s->check_open(d);
    if (ec) {
        detail::complete_later(s->conn.get_executor(), std::move(handler), ec, lease());
        return;
    }
    if (s->opts.refuse_evicting_server &&
        detail::policy_gate(*s, target, kind + name + "'", handler,
                            [p = *this, name, opts, owner = std::string(opts.owner), diag, write,
                             once](acquire_handler h) mutable {
                                opts.owner = owner;
                                p.acquire_impl(name, opts, diag, write, once, std::move(h));
                            }))
        return;
    const auto ttl = opts.ttl.count() > 0 ? opts.ttl : opts_.default_ttl;
    std::string owner = opts.owner.empty() ? s->new_owner_token() : std::string(opts.owner);
    detail::grant_settings gs;
    auto& ws = gs.policy;
    ws.retry_delay = opts_.retry_delay;
    ws.wait = opts.wait ? *opts.wait : detail::default_wait(opts_.retry_delay, opts_.max_retries);
    // A waiting writer refreshes its mark well before it lapses.
    if (write) ws.cap = std::max(opts_.fair_waiter_timeout / 3, milliseconds(1));
    ws.wake_all = true;
    gs.lock_stats = true;
    rw_names names(s->keys, name);
    rw_call call{s,   opts_,           write,           std::move(name), std::move(owner),
                 ttl, std::move(names), std::move(target)};
    ws.ttl = ttl;
    ws.once = once;
    detail::launch(s->conn.get_executor(), detail::wait_for_grant(std::move(call), gs),
                          detail::delivering_grants(*s, diag, std::move(handler)));
}

}  // namespace redcoord
