// A Redis Cluster's slot map, read from CLUSTER SHARDS (Redis 7) or CLUSTER SLOTS (older).
// Plain parsing with no I/O, unit tested with replies captured from a real cluster.
#pragma once

#include "wire/cluster_keys.hpp"

#include <redcoord/config.hpp>
#include <redcoord/response.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace redcoord::detail {

struct cluster_map {
    struct master {
        std::string id;  ///< the node id (empty when the reply has none)
        endpoint ep;
    };
    std::vector<master> masters;
    /// Index into masters of each slot's master; -1 where no online master serves it.
    std::array<std::int16_t, cluster_slots> owner;

    cluster_map() { owner.fill(-1); }
    /// Slots no master serves.
    std::size_t uncovered() const noexcept;
    /// Index of the master at ep, or -1.
    int find(const endpoint& ep) const noexcept;
};

/// Reads the reply of CLUSTER SHARDS: every shard's slot ranges and its master, when that
/// master is `online`. tls: take each node's tls-port. `seed_host` replaces a node address the
/// server does not know ("" or "?"). On a reply of another shape returns false and says why.
bool parse_cluster_shards(node_span reply, bool tls, const std::string& seed_host,
                          cluster_map& out, std::string& why);

/// Reads the reply of CLUSTER SLOTS: [start, end, [ip, port, id, ...], replicas...] per range.
bool parse_cluster_slots(node_span reply, const std::string& seed_host, cluster_map& out,
                         std::string& why);

}  // namespace redcoord::detail
