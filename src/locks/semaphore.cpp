#include "core/access.hpp"
#include "wait/wait_engine.hpp"
#include "core/replica_ack.hpp"
#include "core/session_impl.hpp"
#include "locks/lock_protocol.hpp"

#include <redcoord/error.hpp>
#include <redcoord/semaphore.hpp>

#include <boost/asio/co_spawn.hpp>

#include <tuple>

namespace redcoord {

namespace asio = boost::asio;
using boost::system::error_code;
using detail::clock;
using detail::session_impl;
using std::chrono::milliseconds;

namespace {

const detail::lease_spec& permit_spec() {
    static const detail::lease_spec spec{&script::embedded("semaphore_renew"),
                                         &script::embedded("semaphore_release"), nullptr,
                                         &detail::local_handoff};
    return spec;
}

struct semaphore_names {
    std::string key, fence, channel, holders;
    explicit semaphore_names(const keyspace& ks, std::string_view name)
        : key(ks.semaphore(name)), fence(keyspace::companion(key, "fence")),
          channel(keyspace::companion(key, "released")),
          holders(keyspace::companion(key, "holders")) {}
};

struct semaphore_call {
    std::shared_ptr<session_impl> s;
    semaphore_options so;
    std::string name;
    std::int64_t permits;
    std::string owner;
    milliseconds ttl;
    semaphore_names names;
    detail::diag_target diag_;
    diagnostics& diag() noexcept { return diag_.get(); }
    clock::time_point start = clock::now();
    std::string_view primitive = "permit";

    const std::string& queue_key() const { return names.key; }
    const std::string& channel() const { return names.channel; }
    std::string what() const { return "semaphore '" + name + "'"; }
    std::string stats_key() const { return names.key; }

    asio::awaitable<detail::grant_reply> attempt(bool, bool) {
        static const script& acquire = script::embedded("semaphore_acquire");
        const std::vector<std::string> keys{names.key, names.fence, names.holders};
        const std::vector<std::string> args{owner, std::to_string(ttl.count()),
                                            std::to_string(permits), s->node_id};
        std::vector<std::int64_t> reply;
        detail::grant_reply r;
        r.sent = clock::now();
        // Not cancellable: a grant must be known, or the permit would stay taken until its TTL.
        auto [ec, n] =
            co_await detail::eval(s->conn, acquire, keys, args, reply, diag(), {}, false);
        r.ec = ec;
        if (!ec && reply.size() != 4) {
            r.ec = error::unexpected_reply;
            diag().set_client_message("semaphore_acquire: expected 4 integers");
        }
        if (r.ec) co_return r;
        r.granted = reply[0] == 1;
        if (r.granted) {
            r.fence = reply[1];
            r.room = reply[2];
            r.hint = reply[3];
        } else {
            r.hint = reply[1];
        }
        co_return r;
    }

    lease make_lease(const detail::grant_reply& r) {
        auto st = std::make_shared<detail::lease_state>();
        st->session = s;
        st->spec = &permit_spec();
        st->primitive = primitive;
        st->resource = name;
        st->keys = {names.key, names.holders};
        st->extra_args = {names.channel};
        st->owner = owner;
        st->fence = r.fence;
        st->ttl = ttl;
        st->renew_interval = so.extension_interval;
        st->watchdog = so.enable_extension;
        // A local release wakes the next local waiter at once (then by its push, as for
        // remote ones).
        st->wait_key = names.key;
        s->hold(st, r.sent);
        return detail::access::make_lease(std::move(st));
    }

    void give_up() {}  // a waiter leaves nothing behind in Redis
};

error_code check_permits(const std::string& name, std::int64_t permits, diagnostics& d) {
    if (permits > 0) return {};
    return detail::invalid(d, "semaphore '" + name + "': permits_total " +
                                  std::to_string(permits) + " is not positive");
}

}  // namespace

semaphore_provider::semaphore_provider(session& s, semaphore_options opts)
    : session_(&s), opts_(opts) {
    detail::check_duration_option("default_ttl", opts_.default_ttl);
    detail::check_retry_options(opts_.retry_delay, opts_.max_retries);
    detail::check_interval_option("extension_interval", opts_.extension_interval, "default_ttl",
                                  opts_.default_ttl, opts_.enable_extension);
}

void semaphore_provider::acquire_impl(std::string name, std::int64_t permits,
                                      acquire_options opts, diagnostics* diag, bool once,
                                      acquire_handler handler) {
    auto s = detail::access::impl(*session_);
    detail::diag_target target(diag);
    diagnostics& d = target.get();
    d.clear();
    error_code ec = detail::check_name("semaphore name", name, d);
    if (!ec) ec = check_permits(name, permits, d);
    if (!ec)
        ec = detail::check_acquire_durations(d, "semaphore '" + name + "'", opts,
                                             opts_.extension_interval, opts_.enable_extension);
    if (!ec && opts.reentrant)
        ec = detail::invalid(d, "semaphore '" + name +
                                    "': reentrant acquisition is not supported by semaphores");
    if (!ec) ec = s->check_open(d);
    if (ec) {
        detail::complete_later(s->conn.get_executor(), std::move(handler), ec, lease());
        return;
    }
    if (s->opts.refuse_evicting_server &&
        detail::policy_gate(*s, target, "semaphore '" + name + "'", handler,
                            [p = *this, name, permits, opts, owner = std::string(opts.owner),
                             diag, once](acquire_handler h) mutable {
                                opts.owner = owner;
                                p.acquire_impl(name, permits, opts, diag, once, std::move(h));
                            }))
        return;
    const auto ttl = opts.ttl.count() > 0 ? opts.ttl : opts_.default_ttl;
    std::string owner = opts.owner.empty() ? s->new_owner_token() : std::string(opts.owner);
    detail::grant_settings gs;
    auto& ws = gs.policy;
    ws.retry_delay = opts_.retry_delay;
    ws.wait = opts.wait ? *opts.wait : detail::default_wait(opts_.retry_delay, opts_.max_retries);
    ws.wake_all = false;
    gs.lock_stats = false;
    semaphore_names names(s->keys, name);
    semaphore_call call{s,   opts_, std::move(name), permits, std::move(owner),
                        ttl, std::move(names), std::move(target)};
    ws.ttl = ttl;
    ws.once = once;
    detail::launch(s->conn.get_executor(), detail::wait_for_grant(std::move(call), gs),
                          detail::delivering_grants(*s, diag, std::move(handler)));
}

void semaphore_provider::available_impl(std::string name, std::int64_t permits,
                                        diagnostics* diag, count_handler handler) {
    auto s = detail::access::impl(*session_);
    detail::diag_target target(diag);
    diagnostics& d = target.get();
    d.clear();
    error_code ec = detail::check_name("semaphore name", name, d);
    if (!ec) ec = check_permits(name, permits, d);
    if (!ec && s->closed) ec = error::session_closed;
    if (ec) {
        detail::complete_later(s->conn.get_executor(), std::move(handler), ec, std::int64_t{0});
        return;
    }
    auto run = [](std::shared_ptr<session_impl> s, std::string key, std::int64_t permits,
                  detail::diag_target target)
        -> asio::awaitable<std::tuple<error_code, std::int64_t>> {
        static const script& available = script::embedded("semaphore_available");
        std::int64_t reply = 0;
        const std::vector<std::string> keys{key};
        const std::vector<std::string> args{std::to_string(permits)};
        auto [ec, n] = co_await detail::eval(s->conn, available, keys, args, reply, target.get());
        co_return std::tuple{ec, ec ? std::int64_t{0} : reply};
    };
    auto key = s->keys.semaphore(name);
    detail::launch(s->conn.get_executor(), run(s, std::move(key), permits, std::move(target)),
                   std::move(handler));
}

}  // namespace redcoord
