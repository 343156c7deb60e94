// The only place key and channel names are built: the prefix, the layout of DESIGN.md, and
// hash tags so that the keys one Lua script touches share a Redis Cluster slot.
#pragma once

#include <redcoord/diagnostics.hpp>

#include <boost/system/error_code.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace redcoord {

/// Key names of one deployment (one prefix). Every key starts with the prefix.
///
/// A resource's main key is exactly the documented name (`redcoord:lock:orders`), so operators
/// find it with redis-cli. Its companion keys (fencing counter, wait queue, release channel)
/// wrap the main key in a hash tag, `{redcoord:lock:orders}:fence`: Redis hashes a key without
/// braces as a whole, so main key and companions share one cluster slot.
class keyspace {
public:
    explicit keyspace(std::string prefix = "redcoord:") : prefix_(std::move(prefix)) {}

    const std::string& prefix() const noexcept { return prefix_; }

    std::string lock(std::string_view name) const { return join("lock:", name); }
    std::string semaphore(std::string_view name) const { return join("semaphore:", name); }
    std::string heartbeat(std::string_view node) const { return join("hb:", node); }
    std::string registry() const { return prefix_ + "nodes:registry"; }
    std::string leader(std::string_view name) const { return join("leader:", name); }
    std::string circuit(std::string_view name) const { return join("circuit:", name); }
    std::string cache(std::string_view key) const { return join("cache:", key); }
    std::string checkpoint(std::string_view task, std::int64_t sequence) const;
    /// The index of a task's checkpoints (a sorted set of their sequences):
    /// `{{prefix}checkpoint:{task}}:index`.
    std::string checkpoint_index(std::string_view task) const {
        return companion(join("checkpoint:", task), "index");
    }
    std::string idempotency(std::string_view key) const { return join("idempotency:", key); }
    std::string result(std::string_view id) const { return join("result:", id); }
    std::string result_value(std::string_view id) const { return result(id) + ":value"; }
    std::string state(std::string_view key) const { return join("state:", key); }
    std::string queue(std::string_view name) const { return join("queue:", name); }
    std::string barrier(std::string_view name) const { return join("barrier:", name); }
    /// A job's completion record (the barrier's dependencies): `{prefix}job:{id}`.
    std::string job(std::string_view id) const { return join("job:", id); }
    std::string channel(std::string_view name) const { return join("events:", name); }

    /// A key (or pub/sub channel) that lives in the same cluster slot as `main_key`:
    /// `{main_key}:suffix`, or `main_key:suffix` when main_key already has a hash tag.
    static std::string companion(std::string_view main_key, std::string_view suffix);

    /// The part of a main key after the prefix and the kind ("lock:"), or empty when the key
    /// is not of that kind.
    std::string_view name_of(std::string_view key, std::string_view kind) const noexcept;

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
