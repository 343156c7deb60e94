#include <redcoord/error.hpp>
#include <redcoord/leader.hpp>
#include <redcoord/membership.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <charconv>
#include <map>

#include "core/access.hpp"
#include "core/replica_ack.hpp"
#include "core/session_impl.hpp"
#include "locks/lock_protocol.hpp"
#include "locks/lock_value.hpp"
#include "wait/push_wait.hpp"

namespace redcoord {

namespace asio = boost::asio;
namespace json = boost::json;
using boost::system::error_code;
using detail::session_impl;
using std::chrono::milliseconds;

namespace detail {

struct leader_watch_state {
    std::weak_ptr<session_impl> s;
    std::string name;
    std::string key;
    std::function<void(const std::optional<leader_info>&)> callback;
    channel_waiter* waiter = nullptr;  // the loop's, while it runs
    bool stopped = false;

    leader_watch_state(const std::shared_ptr<session_impl>& s, std::string name, std::string key,
                       std::function<void(const std::optional<leader_info>&)> cb)
        : s(s), name(std::move(name)), key(std::move(key)), callback(std::move(cb)) {}

    void stop() {
        if (stopped) return;
        stopped = true;
        if (waiter) waiter->wake();
    }
};

}  // namespace detail

namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

std::string changed_channel(const std::string& key) { return keyspace::companion(key, "changed"); }
std::string released_channel(const std::string& key) {
    return keyspace::companion(key, "released");
}

// The leader of the leadership key, read in one round trip (GET, GET of the fencing counter,
// PTTL).
asio::awaitable<std::pair<error_code, std::optional<leader_info>>> read_info(
    session_impl& s, const std::string& name, const std::string& key) {
    request req;
    req.push("GET", key);
    req.push("GET", keyspace::companion(key, "fence"));
    req.push("PTTL", key);
    response<std::optional<std::string>, std::optional<std::string>, std::int64_t> resp;
    auto [ec, n] = co_await s.conn.async_exec(req, resp, nothrow);
    if (ec) co_return std::pair{ec, std::optional<leader_info>{}};
    const auto& value = std::get<0>(resp);
    const auto pttl = std::get<2>(resp);
    if (!value || pttl == -2) co_return std::pair{ec, std::optional<leader_info>{}};
    auto v = detail::parse_lock_value(*value);
    std::int64_t term = 0;
    const auto& fence = std::get<1>(resp);
    // The counter outlives the leadership (its renewals keep it): missing only when deleted by
    // hand or evicted, and the term is then unknown, 0.
    if (!v || (fence && std::from_chars(fence->data(), fence->data() + fence->size(), term).ec !=
                            std::errc()))
        co_return std::pair{error_code(error::unexpected_reply), std::optional<leader_info>{}};
    leader_info info;
    info.name = name;
    info.owner = std::move(v->owner);
    info.node = std::move(v->node);
    info.term = term;
    info.since = std::chrono::system_clock::time_point(milliseconds(v->since_ms));
    // A leadership key without TTL (written by hand) has no end: "expires" is then the far
    // future, and a watch looks again now and then instead of spinning on it.
    info.expires = pttl < 0 ? std::chrono::system_clock::time_point::max()
                            : detail::sat_add(std::chrono::system_clock::now(), milliseconds(pttl));
    co_return std::pair{error_code{}, std::optional<leader_info>(std::move(info))};
}

asio::awaitable<void> watch_loop(std::shared_ptr<detail::leader_watch_state> st) {
    auto s = st->s.lock();
    if (!s || s->closed || st->stopped) co_return;
    // Listens before the first look, so a change after it is heard. (The session's close ends
    // the wait: the loop then lets the session go.)
    const std::vector<std::string> channels{changed_channel(st->key), released_channel(st->key)};
    detail::channel_waiter waiter(*s, channels);
    st->waiter = &waiter;
    struct detach {
        detail::leader_watch_state& st;
        ~detach() { st.waiter = nullptr; }
    } detach_on_exit{*st};
    bool first = true;
    std::string last_owner;
    while (!st->stopped && !waiter.closed() && !s->closed) {
        waiter.clear();
        auto [ec, info] = co_await read_info(*s, st->name, st->key);
        if (st->stopped) co_return;
        auto wake_at = std::chrono::steady_clock::time_point::max();
        if (ec) {
            wake_at = std::chrono::steady_clock::now() + milliseconds(100);
        } else {
            const std::string owner = info ? info->owner : std::string();
            if (first || owner != last_owner) {
                first = false;
                last_owner = owner;
                st->callback(info);
                if (st->stopped) co_return;
            }
            // A leader that dies without resigning publishes nothing: look when its lease ends.
            if (info && info->expires == std::chrono::system_clock::time_point::max())
                wake_at = std::chrono::steady_clock::now() + std::chrono::seconds(1);
            else if (info)  // (a PTTL as long as another client wrote: saturating)
                wake_at = detail::sat_add(
                    std::chrono::steady_clock::now(),
                    detail::sat_add(std::chrono::duration_cast<milliseconds>(
                                        info->expires - std::chrono::system_clock::now()),
                                    milliseconds(5)));
        }
        co_await waiter.wait_until(wake_at);
    }
}

// While leading with a quorum requirement: steps down when too few live nodes are seen.
asio::awaitable<void> quorum_guard(std::weak_ptr<detail::lease_state> weak, membership* members,
                                   leader_options o) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    for (;;) {
        timer.expires_after(o.renewal_interval);
        co_await timer.async_wait(nothrow);
        auto l = weak.lock();
        if (!l || l->status != lease::status::held || l->session->closed) co_return;
        auto [ec, health] = co_await members->async_health(nothrow);
        if (ec || l->status != lease::status::held) continue;
        if (static_cast<int>(health.healthy) >= o.minimum_nodes) continue;
        auto& s = *l->session;
        s.mark_lost(*l, error::quorum_lost);
        s.send_release(l, nullptr, {});
        co_return;
    }
}

struct campaign_args {
    std::shared_ptr<session_impl> s;
    leader_options o;
    membership* members;
    std::string name;
};

// leader_options::on_acquired now, and on_lost when the lease is lost (a lost-waiter on the
// lease: a release or a close completes it with operation_aborted, which calls nothing).
void notify_office(session_impl& s, const campaign_args& a, lease& l) {
    leader_info info;
    info.name = a.name;
    info.node = s.node_id;
    info.owner = l.owner();
    info.term = l.fencing_token();
    info.since = std::chrono::system_clock::now();
    info.expires = detail::sat_add(info.since, a.o.leadership_timeout);
    if (a.o.on_lost) {
        auto st = detail::access::state(l);
        std::weak_ptr<detail::lease_state> weak = st;
        st->lost_waiters.emplace_back(
            [weak, info, cb = a.o.on_lost](error_code ec) {
                auto held = weak.lock();
                if (!ec && held) cb(info, held->lost_reason);
            });
    }
    if (a.o.on_acquired) a.o.on_acquired(info);
}

asio::awaitable<std::tuple<error_code, lease>> campaign(campaign_args a) {
    co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
    auto& s = *a.s;
    const std::string key = s.keys.leader(a.name);
    lock_options lo;
    lo.default_ttl = a.o.leadership_timeout;
    lo.extension_interval = a.o.renewal_interval;
    // The floor of the fallback timer: a candidate that looks just before a dead leader's
    // lease lapses tries again this soon, so a failover overshoots the TTL by little.
    lo.retry_delay = std::min(a.o.renewal_interval, milliseconds(25));
    asio::steady_timer pause(s.conn.get_executor());
    for (;;) {
        if (s.closed || s.closing) co_return std::tuple{error_code(error::session_closed), lease()};
        if (a.o.require_quorum) {
            auto [ec, health] = co_await a.members->async_health(nothrow);
            if (ec == asio::error::operation_aborted) co_return std::tuple{ec, lease()};
            if (ec || static_cast<int>(health.healthy) < a.o.minimum_nodes) {
                pause.expires_after(a.o.renewal_interval);
                auto [pec] = co_await pause.async_wait(nothrow);
                if (pec) co_return std::tuple{error_code(asio::error::operation_aborted), lease()};
                continue;
            }
        }
        acquire_options ao;
        // Without a quorum to re-check, wait as long as it takes (cancellation ends it).
        ao.wait = a.o.require_quorum ? a.o.renewal_interval : milliseconds(std::chrono::hours(24));
        auto [ec, l] = co_await asio::async_initiate<decltype(nothrow), void(error_code, lease)>(
            [&](auto h) {
                detail::acquire_lock_lease(a.s, key, "leadership", a.name, lo, ao, nullptr, false,
                                           std::move(h));
            },
            nothrow);
        // Not replicated in time (session_options::replica_ack), or granted but past its
        // validity before it could be handed over: released; campaign on.
        if (ec == error::acquire_timeout || ec == error::replicas_not_acknowledged ||
            ec == error::lease_lost)
            continue;
        if (ec) co_return std::tuple{ec, lease()};
        // Observers learn of the new term at once. Not awaited: the leadership is the
        // caller's now, and a lease must not age in a wait for Redis (it may be unreachable).
        json::object o;
        o["node"] = s.node_id;
        o["term"] = l.fencing_token();
        auto req = std::make_shared<request>();
        req->push(s.publish_command(), changed_channel(key), json::serialize(o));
        s.conn.async_exec(*req, [req](error_code, std::size_t) {});
        if (a.o.require_quorum)
            asio::co_spawn(s.conn.get_executor(),
                           quorum_guard(detail::access::state(l), a.members, a.o), asio::detached);
        if (a.o.on_acquired || a.o.on_lost) notify_office(s, a, l);
        co_return std::tuple{error_code{}, std::move(l)};
    }
}

}  // namespace

leader_election::leader_election(session& s, leader_options opts, membership* members)
    : session_(&s), opts_(opts), members_(members) {
    detail::check_duration_option("leadership_timeout", opts_.leadership_timeout);
    detail::check_duration_option("renewal_interval", opts_.renewal_interval);
    detail::check_interval_option("renewal_interval", opts_.renewal_interval, "leadership_timeout",
                                  opts_.leadership_timeout, true);
    if (opts_.require_quorum && !members_)
        detail::throw_bad_config("require_quorum: needs the membership passed to leader_election");
    if (opts_.minimum_nodes < 1)
        detail::throw_bad_config("minimum_nodes: " + std::to_string(opts_.minimum_nodes) +
                                 " is less than 1");
}

void leader_election::campaign_impl(std::string name, campaign_options opts, diagnostics* diag,
                                    lease_handler h) {
    if (diag) diag->clear();
    campaign_args a{detail::access::impl(*session_), opts_, members_, std::move(name)};
    if (opts.leadership_timeout.count() != 0) a.o.leadership_timeout = opts.leadership_timeout;
    if (opts.renewal_interval.count() != 0) a.o.renewal_interval = opts.renewal_interval;
    if (opts.leadership_timeout.count() != 0 || opts.renewal_interval.count() != 0) {
        const auto what = "campaign for '" + a.name + "'";
        diagnostics unused;
        diagnostics& d = diag ? *diag : unused;
        error_code ec = detail::check_duration_arg(d, what, "leadership_timeout",
                                                   a.o.leadership_timeout);
        if (!ec)
            ec = detail::check_duration_arg(d, what, "renewal_interval", a.o.renewal_interval);
        if (!ec && a.o.renewal_interval >= a.o.leadership_timeout)
            ec = detail::invalid(d, what + ": renewal_interval " +
                                        std::to_string(a.o.renewal_interval.count()) +
                                        " ms is not shorter than leadership_timeout " +
                                        std::to_string(a.o.leadership_timeout.count()) + " ms");
        if (ec) return detail::complete_later(session_->get_executor(), std::move(h), ec, lease());
    }
    // The campaign's completion waits its turn on the executor after the grant: the handler
    // gets the leadership only if it is still valid then.
    auto s = a.s;
    detail::launch(session_->get_executor(), campaign(std::move(a)),
                   detail::delivering_grants(*s, diag, std::move(h), false));
}

void leader_election::info_impl(std::string name, info_handler h) {
    auto s = detail::access::impl(*session_);
    diagnostics d;
    if (auto ec = detail::check_name("leadership name", name, d)) {
        detail::complete_later(s->conn.get_executor(), std::move(h), ec,
                               std::optional<leader_info>{});
        return;
    }
    auto run = [](std::shared_ptr<session_impl> s, std::string name)
        -> asio::awaitable<std::tuple<error_code, std::optional<leader_info>>> {
        const auto key = s->keys.leader(name);
        auto [ec, info] = co_await read_info(*s, name, key);
        co_return std::tuple{ec, std::move(info)};
    };
    detail::launch(s->conn.get_executor(), run(s, std::move(name)), std::move(h));
}

leader_election::watch& leader_election::watch::operator=(watch&& o) noexcept {
    if (this != &o) {
        if (state_) state_->stop();
        state_ = std::move(o.state_);
    }
    return *this;
}

leader_election::watch::~watch() {
    if (state_) state_->stop();
}

leader_election::watch leader_election::watch_leader(
    std::string name, std::function<void(const std::optional<leader_info>&)> callback) {
    auto s = detail::access::impl(*session_);
    auto key = s->keys.leader(name);
    auto st =
        std::make_shared<detail::leader_watch_state>(s, std::move(name), key, std::move(callback));
    asio::co_spawn(s->conn.get_executor(), watch_loop(st), asio::detached);
    watch w;
    w.state_ = std::move(st);
    return w;
}

namespace {

// One record of a leadership's terms list, as lock_ops.lua writes it:
// "<term> <Unix ms> <#owner>:<owner> <node>"; nullopt when it is not one.
std::optional<leader_term> parse_term_record(std::string_view r) {
    const char* p = r.data();
    const char* end = r.data() + r.size();
    auto number = [&](auto& n, char sep) {
        auto [q, ec] = std::from_chars(p, end, n);
        if (ec != std::errc() || q == end || *q != sep) return false;
        p = q + 1;
        return true;
    };
    leader_term t;
    std::int64_t at_ms = 0;
    std::size_t owner_size = 0;
    if (!number(t.term, ' ') || !number(at_ms, ' ') || !number(owner_size, ':') ||
        owner_size >= static_cast<std::size_t>(end - p) || p[owner_size] != ' ')
        return std::nullopt;
    t.owner.assign(p, owner_size);
    t.node.assign(p + owner_size + 1, end);
    t.at = std::chrono::system_clock::time_point(milliseconds(at_ms));
    return t;
}

asio::awaitable<std::tuple<error_code, std::vector<leader_term>>> read_terms(
    std::shared_ptr<session_impl> s, std::string name) {
    request req;
    req.push("LRANGE", keyspace::companion(s->keys.leader(name), "terms"), 0, -1);
    std::vector<std::string> records;
    auto [ec, n] = co_await s->conn.async_exec(req, records, nothrow);
    std::vector<leader_term> out;
    if (ec) co_return std::tuple{ec, std::move(out)};
    out.reserve(records.size());
    for (const auto& r : records)
        if (auto t = parse_term_record(r)) out.push_back(std::move(*t));
    co_return std::tuple{error_code{}, std::move(out)};
}

}  // namespace

void leader_election::history_impl(
    std::string name, asio::any_completion_handler<void(error_code, std::vector<leader_term>)> h) {
    auto s = detail::access::impl(*session_);
    diagnostics d;
    if (auto ec = detail::check_name("leadership name", name, d))
        return detail::complete_later(s->conn.get_executor(), std::move(h), ec,
                                      std::vector<leader_term>{});
    auto& sr = *s;
    detail::launch(sr.conn.get_executor(), read_terms(std::move(s), std::move(name)), std::move(h));
}

}  // namespace redcoord
