#include <redcoord/error.hpp>
#include <redcoord/lock_monitor.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <redcoord/script.hpp>

#include <cctype>
#include <algorithm>
#include <charconv>
#include <map>
#include <optional>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "core/access.hpp"
#include "core/session_impl.hpp"
#include "locks/lock_value.hpp"

namespace redcoord {

namespace asio = boost::asio;
using boost::system::error_code;
using detail::session_impl;
using std::chrono::milliseconds;

namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
constexpr int scan_count = 1000;

using list_result = std::tuple<error_code, std::vector<active_lock>>;

std::optional<std::int64_t> to_int(const std::optional<std::string>& s) {
    if (!s || s->empty()) return std::nullopt;
    std::int64_t v = 0;
    const auto* end = s->data() + s->size();
    auto [p, ec] = std::from_chars(s->data(), end, v);
    if (ec != std::errc() || p != end) return std::nullopt;
    return v;
}

// Replies of MULTI, GET key, GET fence, PTTL key, EXEC for each key: only EXEC's reply (a
// snapshot of the three, taken atomically) is kept. A key that changed type in between gives an
// error inside EXEC's reply; it is skipped rather than failing the whole listing.
struct lock_reads {
    struct entry {
        bool ok = false;
        std::optional<std::string> value, fence;
        std::int64_t pttl = -2;
    };
    std::vector<entry> entries;

    static void store(void* self, std::size_t index, node_span reply, error_code&) {
        if (index % 5 != 4) return;
        auto& e = static_cast<lock_reads*>(self)->entries[index / 5];
        std::tuple<std::optional<std::string>, std::optional<std::string>, std::int64_t> v;
        error_code local;
        from_resp3(reply, v, local);
        if (local) return;
        e.value = std::move(std::get<0>(v));
        e.fence = std::move(std::get<1>(v));
        e.pttl = std::get<2>(v);
        e.ok = true;
    }
};

std::optional<active_lock> to_lock(std::string name, const lock_reads::entry& e) {
    if (!e.ok || e.pttl == -2 || !e.value) return std::nullopt;
    auto v = detail::parse_lock_value(*e.value);
    // Not a lock: a string under the prefix that lock_ops.lua did not write.
    if (!v) return std::nullopt;
    // A held lock's counter lives at least as long as the lock (lock_renew.lua keeps it), so
    // it is missing only when deleted by hand or evicted: the token is then unknown, 0.
    const auto fence = to_int(e.fence).value_or(0);
    active_lock l;
    l.name = std::move(name);
    l.owner = std::move(v->owner);
    l.fencing_token = fence;
    l.holds = v->holds;
    l.acquired_at = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(milliseconds(v->since_ms)));
    l.node = std::move(v->node);
    l.watchdog = v->watchdog;
    l.remaining_ttl = milliseconds(e.pttl);
    return l;
}

// Reads the locks among `keys` (the main keys found by SCAN) into out.
asio::awaitable<error_code> read_locks(session_impl& s, const std::vector<std::string>& keys,
                                       std::vector<active_lock>& out, diagnostics& diag) {
    request req;
    for (const auto& k : keys) {
        req.push("MULTI");
        req.push("GET", k);
        req.push("GET", keyspace::companion(k, "fence"));
        req.push("PTTL", k);
        req.push("EXEC");
    }
    lock_reads reads;
    reads.entries.resize(keys.size());
    const detail::any_adapter adapter(&reads, &lock_reads::store, detail::any_adapter::npos, false);
    auto [ec, n] = co_await detail::access::exec_erased(s.conn, req, adapter, &diag, nothrow);
    if (ec) co_return ec;
    for (std::size_t i = 0; i < keys.size(); ++i) {
        if (auto l = to_lock(std::string(s.keys.name_of(keys[i], "lock:")), reads.entries[i]))
            out.push_back(std::move(*l));
    }
    co_return error_code{};
}

asio::awaitable<list_result> find_active_locks(std::shared_ptr<session_impl> s, diagnostics& diag) {
    const std::string pattern = s->keys.main_key_pattern("lock:");
    std::vector<active_lock> out;
    std::unordered_set<std::string> seen;  // SCAN may return a key more than once
    std::string cursor = "0";
    do {
        request req;
        req.push("SCAN", cursor, "MATCH", pattern, "COUNT", scan_count, "TYPE", "string");
        std::pair<std::string, std::vector<std::string>> page;
        auto [ec, n] = co_await s->conn.async_exec(req, page, diag, nothrow);
        if (ec) co_return list_result{ec, {}};
        cursor = std::move(page.first);
        std::vector<std::string> fresh;
        for (auto& k : page.second) {
            if (s->keys.name_of(k, "lock:").empty()) continue;
            if (seen.insert(k).second) fresh.push_back(std::move(k));
        }
        if (fresh.empty()) continue;
        if (auto ec2 = co_await read_locks(*s, fresh, out, diag)) co_return list_result{ec2, {}};
    } while (cursor != "0");
    co_return list_result{error_code{}, std::move(out)};
}

// True when any node of the deployment has a heartbeat key.
// The active locks, writing into the caller's diagnostics or the operation's own.
asio::awaitable<list_result> list_locks(std::shared_ptr<session_impl> s,
                                        detail::diag_target target) {
    co_return co_await find_active_locks(std::move(s), target.get());
}

asio::awaitable<std::tuple<error_code, bool>> any_heartbeat(session_impl& s, diagnostics& diag) {
    const std::string pattern = detail::glob_escape(s.keys.prefix()) + "hb:*";
    std::string cursor = "0";
    do {
        request req;
        req.push("SCAN", cursor, "MATCH", pattern, "COUNT", scan_count);
        std::pair<std::string, std::vector<std::string>> page;
        auto [ec, n] = co_await s.conn.async_exec(req, page, diag, nothrow);
        if (ec) co_return std::tuple{ec, false};
        if (!page.second.empty()) co_return std::tuple{error_code{}, true};
        cursor = std::move(page.first);
    } while (cursor != "0");
    co_return std::tuple{error_code{}, false};
}

// Replies of TIME, then EXISTS for each node's heartbeat.
struct liveness_reads {
    std::int64_t now_ms = 0;
    std::vector<std::int64_t> exists;

    static void store(void* self, std::size_t index, node_span reply, error_code& ec) {
        auto& r = *static_cast<liveness_reads*>(self);
        if (index == 0) {
            std::vector<std::string> t;
            from_resp3(reply, t, ec);
            if (ec) return;
            const auto sec = t.size() == 2 ? to_int(t[0]) : std::nullopt;
            const auto usec = t.size() == 2 ? to_int(t[1]) : std::nullopt;
            if (!sec || !usec) {
                ec = error::unexpected_reply;
                return;
            }
            r.now_ms = *sec * 1000 + *usec / 1000;
        } else {
            from_resp3(reply, r.exists[index - 1], ec);
        }
    }
};

asio::awaitable<list_result> stale_locks(std::shared_ptr<session_impl> s, milliseconds stale_after,
                                         detail::diag_target target) {
    auto& diag = target.get();
    auto [ec, locks] = co_await find_active_locks(s, diag);
    if (ec || locks.empty()) co_return list_result{ec, std::move(locks)};

    std::vector<std::string> nodes;
    std::unordered_map<std::string, std::size_t> node_index;
    for (const auto& l : locks)
        if (!l.node.empty() && node_index.emplace(l.node, nodes.size()).second)
            nodes.push_back(l.node);
    request req;
    req.push("TIME");
    for (const auto& n : nodes) req.push("EXISTS", s->keys.heartbeat(n));
    liveness_reads live;
    live.exists.resize(nodes.size());
    const detail::any_adapter adapter(&live, &liveness_reads::store, nodes.size() + 1, false);
    auto [ec2, n2] = co_await detail::access::exec_erased(s->conn, req, adapter, &diag, nothrow);
    if (ec2) co_return list_result{ec2, {}};

    bool membership = false;
    for (auto e : live.exists) membership = membership || e > 0;
    if (!membership) {
        auto [ec3, any] = co_await any_heartbeat(*s, diag);
        if (ec3) co_return list_result{ec3, {}};
        membership = any;
    }

    std::vector<active_lock> out;
    for (auto& l : locks) {
        bool node_gone = false;
        if (membership) {
            auto it = node_index.find(l.node);
            node_gone = it == node_index.end() || live.exists[it->second] == 0;
        }
        const auto since_ms =
            std::chrono::duration_cast<milliseconds>(l.acquired_at.time_since_epoch()).count();
        const bool overdue = !l.watchdog && live.now_ms - since_ms > stale_after.count();
        if (node_gone || overdue) out.push_back(std::move(l));
    }
    co_return list_result{error_code{}, std::move(out)};
}

// ---- every held thing ----------------------------------------------------------------------

// One kind of held thing: the SCAN pattern and type of its keys, what monitor_held.lua is told
// it is, its companions, and how the name is read from a key.
struct held_source {
    held_kind kind;
    std::string pattern;
    const char* type;
    const char* script_kind;
    // The main key (<prefix>kind:{<name>}) a found key belongs to (the key less `suffix`).
    std::string suffix;
    std::string_view name_kind;  // "lock:", ...
    // Companions of the main key passed as KEYS[2..] ("" : none, the key itself stays KEYS[1]).
    std::vector<std::string> companions;
};

std::vector<held_source> held_sources(const keyspace& k) {
    return {
        {held_kind::mutex, k.main_key_pattern("lock:"), "string", "lock", "", "lock:",
         {"fence", "queue"}},
        {held_kind::read, k.main_key_pattern("lock:") + ":rw:readers", "zset", "holders",
         ":rw:readers", "lock:", {"rw:holders", "rw:writers_waiting"}},
        {held_kind::write, k.main_key_pattern("lock:") + ":rw:writer", "hash", "writer",
         ":rw:writer", "lock:", {"rw:writers_waiting"}},
        {held_kind::permit, k.main_key_pattern("semaphore:"), "zset", "holders", "",
         "semaphore:", {"holders"}},
        {held_kind::leadership, k.main_key_pattern("leader:"), "string", "lock", "", "leader:",
         {"fence", "queue"}},
        {held_kind::fill, k.main_key_pattern("cache:") + ":fill", "string", "fill", ":fill",
         "cache:", {}},
        {held_kind::fill, k.main_key_pattern("idempotency:") + ":running", "string", "fill",
         ":running", "idempotency:", {}},
    };
}

// The node id in an owner token the library made (`<node id>:<32 hex digits>`), else "".
std::string node_of_owner(std::string_view owner) {
    const auto colon = owner.rfind(':');
    if (colon == std::string_view::npos || owner.size() - colon - 1 != 32) return {};
    for (char c : owner.substr(colon + 1))
        if (!std::isxdigit(static_cast<unsigned char>(c))) return {};
    return std::string(owner.substr(0, colon));
}

// The replies of one request: SCRIPT LOAD, then one monitor_held.lua call per key (an array of
// strings; a call that failed, e.g. on a key of another type, leaves its entry empty).
struct held_reads {
    std::vector<std::vector<std::string>> replies;
    static void store(void* self, std::size_t index, node_span reply, error_code&) {
        if (index == 0) return;
        auto& r = *static_cast<held_reads*>(self);
        std::vector<std::string> v;
        error_code local;
        from_resp3(reply, v, local);
        if (!local && index - 1 < r.replies.size()) r.replies[index - 1] = std::move(v);
    }
};

std::int64_t int_or(const std::string& s, std::int64_t fallback) {
    return to_int(std::optional<std::string>(s)).value_or(fallback);
}

// Appends the held things one script reply describes (8 fields each).
void add_held(const held_source& src, std::string_view name, const std::vector<std::string>& f,
              std::vector<held_lease>& out) {
    for (std::size_t i = 0; i + 8 <= f.size(); i += 8) {
        held_lease h;
        h.kind = src.kind;
        h.name = std::string(name);
        h.owner = f[i];
        h.node = src.kind == held_kind::fill ? node_of_owner(h.owner) : f[i + 1];
        h.remaining_ttl = milliseconds(int_or(f[i + 2], 0));
        h.fencing_token = int_or(f[i + 3], 0);
        if (const auto since = int_or(f[i + 4], 0); since > 0)
            h.acquired_at = std::chrono::system_clock::time_point(
                std::chrono::duration_cast<std::chrono::system_clock::duration>(
                    milliseconds(since)));
        h.holds = int_or(f[i + 5], 1);
        h.waiters = int_or(f[i + 6], 0);
        out.push_back(std::move(h));
    }
}

asio::awaitable<std::tuple<error_code, std::vector<held_lease>>> list_held(
    std::shared_ptr<session_impl> s, detail::diag_target target) {
    static const script& read = script::embedded("monitor_held");
    auto& diag = target.get();
    std::vector<held_lease> out;
    for (const auto& src : held_sources(s->keys)) {
        std::unordered_set<std::string> seen;  // SCAN may return a key more than once
        std::string cursor = "0";
        do {
            request scan;
            scan.push("SCAN", cursor, "MATCH", src.pattern, "COUNT", scan_count, "TYPE",
                      src.type);
            std::pair<std::string, std::vector<std::string>> page;
            auto [ec, n] = co_await s->conn.async_exec(scan, page, diag, nothrow);
            if (ec) co_return std::tuple{ec, std::vector<held_lease>{}};
            cursor = std::move(page.first);
            std::vector<std::pair<std::string, std::string>> found;  // key, name
            for (auto& k : page.second) {
                if (!std::string_view(k).ends_with(src.suffix)) continue;
                const auto main = std::string_view(k).substr(0, k.size() - src.suffix.size());
                const auto name = s->keys.name_of(main, src.name_kind);
                if (name.empty() || !seen.insert(k).second) continue;
                found.emplace_back(k, std::string(name));
            }
            if (found.empty()) continue;
            // The script is loaded first in the same request, so no call meets NOSCRIPT.
            request req;
            req.push("SCRIPT", "LOAD", read.source());
            for (const auto& [k, name] : found) {
                const auto main = std::string_view(k).substr(0, k.size() - src.suffix.size());
                std::vector<std::string> keys{k};
                for (const auto& c : src.companions) keys.push_back(keyspace::companion(main, c));
                req.push("EVALSHA", read.sha1(), keys.size(), keys, src.script_kind);
            }
            held_reads reads;
            reads.replies.resize(found.size());
            const detail::any_adapter adapter(&reads, &held_reads::store, found.size() + 1, true);
            auto [ec2, n2] =
                co_await detail::access::exec_erased(s->conn, req, adapter, &diag, nothrow);
            if (ec2) co_return std::tuple{ec2, std::vector<held_lease>{}};
            for (std::size_t i = 0; i < found.size(); ++i)
                add_held(src, found[i].second, reads.replies[i], out);
        } while (cursor != "0");
    }
    co_return std::tuple{error_code{}, std::move(out)};
}

}  // namespace

std::string_view to_string(held_kind k) noexcept {
    switch (k) {
    case held_kind::mutex: return "mutex";
    case held_kind::read: return "read";
    case held_kind::write: return "write";
    case held_kind::permit: return "permit";
    case held_kind::leadership: return "leadership";
    case held_kind::fill: return "fill";
    }
    return "unknown";
}

lock_monitor::lock_monitor(session& s) : session_(&s), provider_(s) {}

namespace {

asio::awaitable<std::tuple<error_code, lock_statistics>> read_cluster_stats(
    std::shared_ptr<session_impl> s) {
    request req;
    req.push("HGETALL", s->keys.lock_statistics());
    std::map<std::string, std::string> fields;
    auto [ec, n] = co_await s->conn.async_exec(req, fields, nothrow);
    if (ec) co_return std::tuple{ec, lock_statistics{}};
    co_return std::tuple{error_code{}, detail::stats_from_hash(fields)};
}

// One HGETALL reply per key.
struct stats_reads {
    std::vector<std::map<std::string, std::string>> hashes;
    static void store(void* self, std::size_t index, node_span reply, error_code&) {
        auto& r = *static_cast<stats_reads*>(self);
        error_code local;
        if (index < r.hashes.size()) from_resp3(reply, r.hashes[index], local);
    }
};

asio::awaitable<std::tuple<error_code, std::vector<lock_contention>>> read_contention(
    std::shared_ptr<session_impl> s) {
    std::vector<lock_contention> out;
    for (auto [kind, name_kind] : {std::pair{held_kind::mutex, std::string_view("lock:")},
                                   std::pair{held_kind::leadership, std::string_view("leader:")}}) {
        const std::string pattern = s->keys.main_key_pattern(name_kind) + ":stats";
        std::unordered_set<std::string> seen;
        std::string cursor = "0";
        do {
            request scan;
            scan.push("SCAN", cursor, "MATCH", pattern, "COUNT", scan_count, "TYPE", "hash");
            std::pair<std::string, std::vector<std::string>> page;
            auto [ec, n] = co_await s->conn.async_exec(scan, page, nothrow);
            if (ec) co_return std::tuple{ec, std::vector<lock_contention>{}};
            cursor = std::move(page.first);
            std::vector<std::string> names;
            request req;
            for (const auto& k : page.second) {
                const auto main = std::string_view(k).substr(0, k.size() - 6);  // ":stats"
                const auto name = s->keys.name_of(main, name_kind);
                if (name.empty() || !seen.insert(k).second) continue;
                names.emplace_back(name);
                req.push("HGETALL", k);
            }
            if (names.empty()) continue;
            stats_reads reads;
            reads.hashes.resize(names.size());
            const detail::any_adapter adapter(&reads, &stats_reads::store, names.size(), true);
            auto [ec2, n2] =
                co_await detail::access::exec_erased(s->conn, req, adapter, nullptr, nothrow);
            if (ec2) co_return std::tuple{ec2, std::vector<lock_contention>{}};
            for (std::size_t i = 0; i < names.size(); ++i)
                out.push_back({std::move(names[i]), kind, detail::stats_from_hash(reads.hashes[i])});
        } while (cursor != "0");
    }
    std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
        return a.stats.wait_mean > b.stats.wait_mean;
    });
    co_return std::tuple{error_code{}, std::move(out)};
}

}  // namespace

void lock_monitor::cluster_stats_impl(
    asio::any_completion_handler<void(error_code, lock_statistics)> handler) {
    auto s = detail::access::impl(*session_);
    detail::launch(s->conn.get_executor(), read_cluster_stats(s), std::move(handler));
}

void lock_monitor::contention_impl(
    asio::any_completion_handler<void(error_code, std::vector<lock_contention>)> handler) {
    auto s = detail::access::impl(*session_);
    detail::launch(s->conn.get_executor(), read_contention(s), std::move(handler));
}

void lock_monitor::held_impl(diagnostics* diag, held_handler handler) {
    auto s = detail::access::impl(*session_);
    if (diag) diag->clear();
    detail::launch(s->conn.get_executor(), list_held(s, detail::diag_target(diag)),
                   std::move(handler));
}

lock_statistics lock_monitor::statistics() const { return session_->get_lock_statistics(); }

void lock_monitor::active_impl(diagnostics* diag, list_handler handler) {
    auto s = detail::access::impl(*session_);
    if (diag) diag->clear();
    detail::launch(s->conn.get_executor(), list_locks(s, detail::diag_target(diag)),
                   std::move(handler));
}

void lock_monitor::stale_impl(milliseconds stale_after, diagnostics* diag, list_handler handler) {
    auto s = detail::access::impl(*session_);
    detail::diag_target target(diag);
    auto& d = target.get();
    d.clear();
    if (auto ec = detail::check_duration_arg(d, "stale locks", "stale_after", stale_after, true)) {
        detail::complete_later(s->conn.get_executor(), std::move(handler), ec,
                               std::vector<active_lock>{});
        return;
    }
    detail::launch(s->conn.get_executor(), stale_locks(s, stale_after, std::move(target)),
                   std::move(handler));
}

}  // namespace redcoord
