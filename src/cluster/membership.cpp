#include <redcoord/error.hpp>
#include <redcoord/membership.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <map>
#include <set>

#include "core/access.hpp"
#include "core/session_impl.hpp"
#include "locks/lock_value.hpp"
#include <unistd.h>

namespace redcoord {

namespace asio = boost::asio;
namespace json = boost::json;
using boost::system::error_code;
using std::chrono::milliseconds;

namespace detail {
namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

// The channel a release of `key` wakes: a lock's or leadership's `…:released`, or for a
// read-write lock's writer (`<prefix>lock:{<name>}:rw:writer`) the lock's `…:rw:released`.
std::string released_channel(std::string_view key, std::string_view type) {
    constexpr std::string_view writer = "writer";
    if (type == "hash" && key.ends_with(writer))
        return std::string(key.substr(0, key.size() - writer.size())) + "released";
    return keyspace::companion(key, "released");
}

std::int64_t unix_ms(std::chrono::system_clock::time_point t) {
    return std::chrono::duration_cast<milliseconds>(t.time_since_epoch()).count();
}

std::string this_host() {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0) return {};
    return buf;
}

node_info parse_node(const std::string& id, const std::optional<std::string>& payload) {
    node_info n;
    n.id = id;
    n.alive = payload.has_value();
    if (!payload) return n;
    error_code ec;
    auto v = json::parse(*payload, ec);
    if (ec || !v.is_object()) return n;
    const auto& o = v.as_object();
    auto time_of = [&](const char* k) -> std::optional<std::chrono::system_clock::time_point> {
        if (auto* p = o.if_contains(k); p && p->is_int64())
            return std::chrono::system_clock::time_point(milliseconds(p->as_int64()));
        return std::nullopt;
    };
    n.last_heartbeat = time_of("timestamp");
    n.started_at = time_of("started_at");
    if (auto* p = o.if_contains("pid"); p && p->is_int64()) n.pid = p->as_int64();
    if (auto* p = o.if_contains("host"); p && p->is_string()) n.host = p->as_string().c_str();
    if (auto* p = o.if_contains("version"); p && p->is_string()) n.version = p->as_string().c_str();
    return n;
}

}  // namespace

class membership_impl : public std::enable_shared_from_this<membership_impl> {
public:
    membership_impl(std::shared_ptr<session_impl> s, membership_options o)
        : s(std::move(s)),
          opts(std::move(o)),
          started(std::chrono::system_clock::now()),
          host(this_host()),
          timer(this->s->conn.get_executor()) {}

    std::shared_ptr<session_impl> s;
    membership_options opts;
    std::chrono::system_clock::time_point started;
    std::string host;
    std::set<std::string> hosted;
    // Bumped by each leave of a node: a join still in flight then does not start hosting it.
    std::map<std::string, std::uint64_t> leaves;
    asio::steady_timer timer;
    bool running = false;
    bool stopped = false;

    std::string events_channel() const { return keyspace::companion(s->keys.registry(), "events"); }
    std::string dead_hash() const { return keyspace::companion(s->keys.registry(), "dead"); }
    milliseconds hb_ttl() const { return opts.heartbeat_interval + opts.heartbeat_grace; }
    milliseconds dead_every() const {
        return opts.dead_check_interval.count() > 0 ? opts.dead_check_interval
                                                    : opts.heartbeat_interval;
    }

    std::string payload(const std::string& node) const {
        json::object o;
        o["node"] = node;
        o["timestamp"] = unix_ms(std::chrono::system_clock::now());
        o["started_at"] = unix_ms(started);
        o["pid"] = static_cast<std::int64_t>(::getpid());
        o["host"] = host;
        o["version"] = opts.version;
        // With the key's PTTL, the server's clock when it was written (health.hpp's clocks).
        o["ttl_ms"] = hb_ttl().count();
        return json::serialize(o);
    }

    static std::string event_json(std::string_view what, const std::string& node) {
        json::object o;
        o["event"] = what;
        o["node"] = node;
        return json::serialize(o);
    }

    // A node event this process saw or made (trace_options::coordination_events).
    void trace_node(trace_kind kind, std::string_view node,
                    std::chrono::microseconds late = {}) const {
        if (!s->trace.on(detail::trace_coordination)) return;
        trace_event e;
        e.kind = kind;
        e.primitive = "node";
        e.resource = node;
        e.node = s->node_id;
        e.duration = late;
        s->trace.emit(detail::trace_coordination, e);
    }

    // A graceful leave of node: out of the registry before the heartbeat goes, so a dead-node
    // check running meanwhile skips it (membership_mark_dead.lua checks the registry).
    void push_leave(request& req, const std::string& node) const {
        req.push("SREM", s->keys.registry(), node);
        req.push("DEL", s->keys.heartbeat(node));
        req.push("HDEL", dead_hash(), node);
        req.push("PUBLISH", events_channel(), event_json("left", node));
    }

    // Stops heartbeating and makes every hosted node leave; h (may be empty) gets the reply.
    void leave_all(asio::any_completion_handler<void(error_code)> h) {
        stopped = true;
        timer.cancel();
        if (s->closed || hosted.empty()) {
            if (h) asio::post(s->conn.get_executor(), asio::append(std::move(h), error_code{}));
            return;
        }
        auto req = std::make_shared<request>();
        for (const auto& n : hosted) {
            push_leave(*req, n);
            trace_node(trace_kind::node_left, n);
        }
        hosted.clear();
        s->conn.async_exec(*req, [req, h = std::move(h)](error_code ec, std::size_t) mutable {
            if (h) std::move(h)(ec);
        });
    }

    std::uint64_t close_step = 0;  // its step in the session's graceful close


    // The heartbeats of the given nodes, with the registry's sliding TTL, in one request. A
    // beat also clears the nodes' "dead" marks: a node that was paused past its TTL and came
    // back is reported dead again when it dies again.
    void push_heartbeats(request& req, const std::vector<std::string>& nodes) const {
        for (const auto& n : nodes)
            req.push("SET", s->keys.heartbeat(n), payload(n), "PX", hb_ttl().count());
        if (!nodes.empty()) {
            req.push_range("SADD", s->keys.registry(), nodes);
            req.push("PEXPIRE", s->keys.registry(), opts.registry_ttl.count());
            req.push_range("HDEL", dead_hash(), nodes);
        }
    }

    asio::awaitable<error_code> beat(std::vector<std::string> nodes) {
        if (nodes.empty()) co_return error_code{};
        request req;
        push_heartbeats(req, nodes);
        auto [ec, n] = co_await s->conn.async_exec(req, ignore, nothrow);
        co_return ec;
    }

    // After a failed heartbeat (connection down, timeout) the next try comes this soon, well
    // before the key's TTL runs out.
    milliseconds beat_retry_delay() const {
        return std::clamp(opts.heartbeat_interval / 10, milliseconds(10), milliseconds(1000));
    }

    // Heartbeats on a fixed schedule (not drifting by the round trip), dead-node checks on
    // their own schedule.
    static asio::awaitable<void> loop(std::shared_ptr<membership_impl> self) {
        using steady = std::chrono::steady_clock;
        const auto interval = self->opts.heartbeat_interval;
        auto next_beat = steady::now() + interval;
        auto next_dead_check = steady::now() + self->dead_every();
        while (!self->stopped && !self->s->closed && !self->hosted.empty()) {
            self->timer.expires_at(std::min(next_beat, next_dead_check));
            co_await self->timer.async_wait(nothrow);
            if (self->stopped || self->s->closed) break;
            if (steady::now() >= next_beat) {
                const std::vector<std::string> nodes(self->hosted.begin(), self->hosted.end());
                const auto late = detail::micros(steady::now() - next_beat);
                const auto bec = co_await self->beat(nodes);
                if (self->stopped || self->s->closed) break;
                if (!bec)
                    for (const auto& n : nodes) self->trace_node(trace_kind::heartbeat, n, late);
                if (bec) {
                    next_beat = steady::now() + self->beat_retry_delay();
                } else {
                    next_beat += interval;
                    if (next_beat <= steady::now()) next_beat = steady::now() + interval;
                }
            }
            if (steady::now() >= next_dead_check) {
                co_await self->check_dead();
                next_dead_check = steady::now() + self->dead_every();
            }
        }
        self->running = false;
    }

    void ensure_running() {
        if (running || hosted.empty()) return;
        running = true;
        asio::co_spawn(s->conn.get_executor(), loop(shared_from_this()), asio::detached);
    }

    asio::awaitable<std::pair<error_code, std::vector<node_info>>> nodes(bool dead_only) {
        std::vector<std::string> ids;
        {
            request req;
            req.push("SMEMBERS", s->keys.registry());
            auto [ec, n] = co_await s->conn.async_exec(req, ids, nothrow);
            if (ec) co_return std::pair{ec, std::vector<node_info>{}};
        }
        std::sort(ids.begin(), ids.end());
        std::vector<node_info> out;
        if (ids.empty()) co_return std::pair{error_code{}, std::move(out)};
        std::vector<std::string> keys;
        keys.reserve(ids.size());
        for (const auto& id : ids) keys.push_back(s->keys.heartbeat(id));
        std::vector<std::optional<std::string>> beats;
        request req;
        req.push_range("MGET", keys);
        auto [ec, n] = co_await s->conn.async_exec(req, beats, nothrow);
        if (ec) co_return std::pair{ec, std::vector<node_info>{}};
        for (std::size_t i = 0; i < ids.size() && i < beats.size(); ++i) {
            auto info = parse_node(ids[i], beats[i]);
            if (!dead_only || !info.alive) out.push_back(std::move(info));
        }
        co_return std::pair{error_code{}, std::move(out)};
    }

    asio::awaitable<std::pair<error_code, std::vector<std::string>>> check_dead() {
        auto [ec, dead] = co_await nodes(true);
        std::vector<std::string> newly;
        if (ec || dead.empty()) co_return std::pair{ec, newly};
        static const script& mark = script::embedded("membership_mark_dead");
        std::vector<std::string> keys{dead_hash(), s->keys.registry()};
        std::vector<std::string> args{events_channel(),
                                      std::to_string(unix_ms(std::chrono::system_clock::now()))};
        for (const auto& d : dead) args.push_back(d.id);
        diagnostics diag;
        auto [ec2, n] = co_await eval(s->conn, mark, keys, args, newly, diag);
        if (ec2) co_return std::pair{ec2, newly};
        for (const auto& d : newly) trace_node(trace_kind::node_dead, d);
        if (opts.reaper) {
            std::set<std::string> ids;
            for (const auto& d : dead) ids.insert(d.id);
            if (auto rec = co_await reap(ids)) co_return std::pair{rec, newly};
        }
        co_return std::pair{error_code{}, newly};
    }

    // Releases the locks and leaderships of `kind` ("lock:", "leader:") held by dead nodes: one
    // SCAN over those keys of one Redis type, the holders of each page read in one request, and
    // each match released by a script that checks the holder again. Type "string": locks and
    // leaderships (lock_ops.lua's value); "hash": read-write locks' writers (field node).
    asio::awaitable<error_code> release_held(const std::set<std::string>& dead,
                                             std::string_view kind, std::string_view type) {
        static const script& release = script::embedded("membership_reap");
        std::string cursor = "0";
        // Main keys (`<prefix>lock:{<name>}`), or a read-write lock's writer companion.
        const std::string match = type == "hash" ? s->keys.main_key_pattern(kind) + ":rw:writer"
                                                 : s->keys.main_key_pattern(kind);
        do {
            request req;
            req.push("SCAN", cursor, "MATCH", match, "COUNT", 500, "TYPE", type);
            // One reply, [cursor, keys] (a bare std::tuple would be read as two replies).
            response<std::tuple<std::string, std::vector<std::string>>> page;
            auto [ec, n] = co_await s->conn.async_exec(req, page, nothrow);
            if (ec) co_return ec;
            cursor = std::get<0>(std::get<0>(page));
            const auto& keys = std::get<1>(std::get<0>(page));
            if (keys.empty()) continue;
            request get;
            for (const auto& key : keys) {
                if (type == "hash")
                    get.push("HGET", key, "node");
                else
                    get.push("GET", key);
            }
            generic_response holders;
            auto [ec2, n2] = co_await s->conn.async_exec(get, holders, nothrow);
            if (ec2) co_return ec2;
            std::vector<std::optional<std::string>> nodes;
            for (std::size_t i = 0; i < keys.size(); ++i) nodes.emplace_back();
            {
                // One reply per HGET: a blob string (the holder's node) or a null.
                std::size_t reply = 0;
                for (const auto& nd : holders) {
                    if (nd.depth != 0) continue;
                    if (reply < nodes.size() && nd.data_type == resp3::type::blob_string) {
                        if (type == "hash") {
                            nodes[reply] = nd.value;
                        } else if (auto v = parse_lock_value(nd.value)) {
                            nodes[reply] = std::move(v->node);
                        }
                    }
                    ++reply;
                }
            }
            for (std::size_t i = 0; i < keys.size(); ++i) {
                if (!nodes[i] || !dead.contains(*nodes[i])) continue;
                std::vector<std::string> kv{keys[i]};
                std::vector<std::string> args{released_channel(keys[i], type), *nodes[i],
                                              std::string(s->publish_command())};
                std::int64_t released = 0;
                diagnostics diag;
                auto [ec3, n3] = co_await eval(s->conn, release, kv, args, released, diag);
                if (ec3) co_return ec3;
            }
        } while (cursor != "0");
        co_return error_code{};
    }

    // Removes dead nodes from the registry and releases the locks and leaderships they held.
    asio::awaitable<error_code> reap(const std::set<std::string>& dead) {
        if (dead.empty()) co_return error_code{};
        if (auto ec = co_await release_held(dead, "lock:", "string")) co_return ec;
        if (auto ec = co_await release_held(dead, "lock:", "hash")) co_return ec;
        if (auto ec = co_await release_held(dead, "leader:", "string")) co_return ec;
        const std::vector<std::string> ids(dead.begin(), dead.end());
        request req;
        req.push_range("SREM", s->keys.registry(), ids);
        req.push_range("HDEL", dead_hash(), ids);
        auto [ec, n] = co_await s->conn.async_exec(req, ignore, nothrow);
        co_return ec;
    }
};

}  // namespace detail

namespace {

void check_options(const membership_options& o) {
    detail::check_duration_option("heartbeat_interval", o.heartbeat_interval);
    detail::check_duration_option("heartbeat_grace", o.heartbeat_grace, true);
    detail::check_duration_option("registry_ttl", o.registry_ttl);
    detail::check_duration_option("dead_check_interval", o.dead_check_interval, true);
}

}  // namespace

membership::membership(session& s, membership_options opts) {
    check_options(opts);
    impl_ = std::make_shared<detail::membership_impl>(detail::access::impl(s), std::move(opts));
    auto& si = *impl_->s;
    impl_->close_step = si.next_close_step++;
    si.close_steps.emplace(impl_->close_step,
                           [w = std::weak_ptr<detail::membership_impl>(impl_)](
                               asio::any_completion_handler<void(error_code)> h) {
                               if (auto m = w.lock())
                                   m->leave_all(std::move(h));
                               else
                                   std::move(h)(error_code{});
                           });
}

membership::~membership() {
    impl_->s->close_steps.erase(impl_->close_step);
    // A graceful leave for every hosted node, not awaited: a destructor cannot wait.
    impl_->leave_all({});
}

void membership::join_impl(std::string node, ec_handler h) {
    auto& m = *impl_;
    if (node.empty()) node = m.s->node_id;
    if (m.s->closed) {
        detail::complete_later(m.s->conn.get_executor(), std::move(h),
                               error_code(error::session_closed));
        return;
    }
    auto run = [](std::shared_ptr<detail::membership_impl> m, std::string node,
                  std::uint64_t leaves) -> asio::awaitable<error_code> {
        request req;
        const std::vector<std::string> nodes{node};
        m->push_heartbeats(req, nodes);
        req.push("PUBLISH", m->events_channel(),
                 detail::membership_impl::event_json("joined", node));
        auto [ec, n] =
            co_await m->s->conn.async_exec(req, ignore, asio::as_tuple(asio::use_awaitable));
        if (!ec && !m->stopped && m->leaves[node] == leaves) {
            m->hosted.insert(node);
            m->ensure_running();
            m->trace_node(trace_kind::node_joined, node);
        }
        co_return ec;
    };
    const auto leaves = m.leaves[node];
    detail::launch(m.s->conn.get_executor(), run(impl_, std::move(node), leaves), std::move(h));
}

void membership::leave_impl(std::string node, ec_handler h) {
    auto& m = *impl_;
    if (node.empty()) node = m.s->node_id;
    m.hosted.erase(node);
    ++m.leaves[node];
    auto run = [](std::shared_ptr<detail::membership_impl> m,
                  std::string node) -> asio::awaitable<error_code> {
        request req;
        m->push_leave(req, node);
        auto [ec, n] =
            co_await m->s->conn.async_exec(req, ignore, asio::as_tuple(asio::use_awaitable));
        if (!ec) m->trace_node(trace_kind::node_left, node);
        co_return ec;
    };
    detail::launch(m.s->conn.get_executor(), run(impl_, std::move(node)), std::move(h));
}

void membership::nodes_impl(bool dead_only, nodes_handler h) {
    detail::launch(impl_->s->conn.get_executor(), impl_->nodes(dead_only), std::move(h));
}

void membership::health_impl(asio::any_completion_handler<void(error_code, cluster_health)> h) {
    auto run = [](std::shared_ptr<detail::membership_impl> m)
        -> asio::awaitable<std::pair<error_code, cluster_health>> {
        auto [ec, all] = co_await m->nodes(false);
        cluster_health out;
        out.total = all.size();
        for (const auto& n : all) (n.alive ? out.healthy : out.dead) += 1;
        co_return std::pair{ec, out};
    };
    detail::launch(impl_->s->conn.get_executor(), run(impl_), std::move(h));
}

void membership::check_dead_impl(
    asio::any_completion_handler<void(error_code, std::vector<std::string>)> h) {
    detail::launch(impl_->s->conn.get_executor(), impl_->check_dead(), std::move(h));
}

membership::watch& membership::watch::operator=(watch&& o) noexcept {
    if (this != &o) {
        watch old(std::move(*this));
        s_ = std::move(o.s_);
        id_ = std::exchange(o.id_, 0);
    }
    return *this;
}

membership::watch::~watch() {
    if (auto s = s_.lock(); s && id_) s->hub.remove(id_);
}

membership::watch membership::subscribe(std::function<void(const member_event&)> callback) {
    watch w;
    w.s_ = impl_->s;
    w.id_ = impl_->s->hub.add(impl_->events_channel(), false,
                              [cb = std::move(callback)](const push_message& m) {
                                  if (m.is_gap()) return;
                                  error_code ec;
                                  auto v = json::parse(m.payload, ec);
                                  if (ec || !v.is_object()) return;
                                  const auto& o = v.as_object();
                                  auto* what = o.if_contains("event");
                                  auto* node = o.if_contains("node");
                                  if (!what || !node || !what->is_string() || !node->is_string())
                                      return;
                                  member_event e;
                                  e.node = node->as_string().c_str();
                                  const std::string_view w = what->as_string();
                                  if (w == "joined")
                                      e.what = member_event::kind::joined;
                                  else if (w == "left")
                                      e.what = member_event::kind::left;
                                  else if (w == "dead")
                                      e.what = member_event::kind::dead;
                                  else
                                      return;
                                  cb(e);
                              });
    return w;
}

std::vector<std::string> membership::hosted() const {
    return {impl_->hosted.begin(), impl_->hosted.end()};
}

const membership_options& membership::options() const noexcept { return impl_->opts; }

}  // namespace redcoord
