// The only place key and channel names are built: the prefix, the layout of DESIGN.md, and
// hash tags so that the keys one Lua script touches share a Redis Cluster slot.
#pragma once

#include <redcoord/diagnostics.hpp>

#include <boost/system/error_code.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace redcoord {

/// Key names of one deployment (one prefix). Every key and channel starts with the prefix, so
/// `redis-cli --scan --pattern 'redcoord:*'` finds all of them.
///
/// A resource's main key is the prefix, its kind and its name in braces
/// (`redcoord:lock:{<orders>}`); its companion keys (fencing counter, wait queue, release
/// channel) add a suffix (`redcoord:lock:{<orders>}:fence`). The braces are a Redis Cluster hash
/// tag: main key and companions hash by the name alone, so they share one slot and one script
/// may touch them all.
///
/// In the table, `<p>` is the prefix and `<name>` the caller's name; braces are literal.
///
/// | kind | main key | companions (main key + suffix) |
/// | --- | --- | --- |
/// | lock, read-write lock | `<p>lock:{<name>}` | `:fence`, `:released`, `:stats`, `:queue`, `:queue:deadlines`, `:rw:writer`, `:rw:readers`, `:rw:writers_waiting`, `:rw:fence`, `:rw:released`, `:rw:holders` |
/// | semaphore | `<p>semaphore:{<name>}` | `:fence`, `:released`, `:holders` |
/// | leadership | `<p>leader:{<name>}` | `:fence`, `:changed`, `:released`, `:stats`, `:terms` |
/// | heartbeat | `<p>hb:{registry}:<node>` (the registry's slot) | |
/// | node registry | `<p>nodes:{registry}` | `:dead`, `:events` (channel) |
/// | circuit breaker | `<p>circuit:{<name>}` | `:failures` |
/// | rate limiter | `<p>rate:{<name>}` | |
/// | cache entry | `<p>cache:{<key>}` | fill lease and its channel |
/// | checkpoint | `<p>checkpoint:{<task>}:<sequence>` | `<p>checkpoint:{<task>}:index` |
/// | idempotency record | `<p>idempotency:{<key>}` | run lease and its channel |
/// | result | `<p>result:{<id>}` | `:value`, `:stored` (channel) |
/// | shared state | `<p>state:{<key>}` | `:changed` (channel) |
/// | queue | `<p>queue:{<name>}` | `:consumers`, `:workers`, `:redelivered`, `:pushed` (channel), `:processing:<consumer>`, `:worker:<worker>` |
/// | barrier, job | `<p>barrier:{<name>}`, `<p>job:{<id>}` | `:arrived`, `:done` (channels) |
/// | lock statistics | `<p>stats:{locks}` (every lock), a lock's or leadership's `:stats` | |
/// | event channel | `<p>events:<name>` (no braces: it has no companions) | |
///
/// A name whose first byte is `}` cannot form a hash tag; its companions then wrap the whole
/// main key, `{redcoord:lock:{}x}}:fence`, which keeps them in its slot.
class keyspace {
public:
    explicit keyspace(std::string prefix = "redcoord:") : prefix_(std::move(prefix)) {}

    const std::string& prefix() const noexcept { return prefix_; }

    std::string lock(std::string_view name) const { return join("lock:", name); }
    std::string semaphore(std::string_view name) const { return join("semaphore:", name); }
    /// A node's heartbeat, `<prefix>hb:{registry}:<node>`: in the node registry's cluster slot,
    /// so that one script or MGET reads the registry and every heartbeat.
    std::string heartbeat(std::string_view node) const;
    std::string registry() const { return join("nodes:", "registry"); }
    std::string leader(std::string_view name) const { return join("leader:", name); }
    std::string circuit(std::string_view name) const { return join("circuit:", name); }
    /// A rate limiter's window (a sorted set of the times its permits were taken):
    /// `<prefix>rate:{<name>}`.
    std::string rate(std::string_view name) const { return join("rate:", name); }
    std::string cache(std::string_view key) const { return join("cache:", key); }
    std::string checkpoint(std::string_view task, std::int64_t sequence) const;
    /// The index of a task's checkpoints (a sorted set of their sequences):
    /// `<prefix>checkpoint:{<task>}:index`.
    std::string checkpoint_index(std::string_view task) const {
        return companion(join("checkpoint:", task), "index");
    }
    std::string idempotency(std::string_view key) const { return join("idempotency:", key); }
    std::string result(std::string_view id) const { return join("result:", id); }
    std::string result_value(std::string_view id) const { return result(id) + ":value"; }
    std::string state(std::string_view key) const { return join("state:", key); }
    std::string queue(std::string_view name) const { return join("queue:", name); }
    std::string barrier(std::string_view name) const { return join("barrier:", name); }
    /// A job's completion record (the barrier's dependencies): `<prefix>job:{<id>}`.
    std::string job(std::string_view id) const { return join("job:", id); }
    /// An event channel, `<prefix>events:<name>`, without braces (it has no companions).
    std::string channel(std::string_view name) const;
    /// The cluster-wide lock statistics, `<prefix>stats:{locks}` (one lock's are its
    /// companion `:stats`).
    std::string lock_statistics() const { return join("stats:", "locks"); }

    /// A key (or pub/sub channel) that lives in the same cluster slot as `main_key`:
    /// `main_key:suffix` when main_key has a hash tag (every main key of this class but one
    /// whose name starts with `}`), else `{main_key}:suffix`.
    static std::string companion(std::string_view main_key, std::string_view suffix);

    /// The name in a main key of this kind ("lock:"), `<prefix>lock:{<name>}` → name, or empty
    /// when the key is not a main key of that kind (a companion, another kind or prefix).
    std::string_view name_of(std::string_view key, std::string_view kind) const noexcept;

    /// The name in an event channel, `<prefix>events:<name>` → name, or empty.
    std::string_view channel_name(std::string_view channel) const noexcept;

    /// A SCAN MATCH pattern for the main keys of a kind whose names match `name_glob` (a Redis
    /// glob; "*" for all): `<prefix>lock:{*}`, with the prefix escaped.
    std::string main_key_pattern(std::string_view kind, std::string_view name_glob = "*") const;

private:
    std::string join(std::string_view kind, std::string_view name) const;
    std::string prefix_;
};

namespace detail {

/// Checks a name given by the caller (a lock name, a key, a node id): it must not be empty.
/// On error, fills diag with a message naming the field and returns error::invalid_argument.
boost::system::error_code check_name(std::string_view field, std::string_view value,
                                     diagnostics& diag);

}  // namespace detail
}  // namespace redcoord
