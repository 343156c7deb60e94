// A throwaway Redis Cluster per test: masters and replicas, each a redis_server (own temp dir,
// own free ports on 127.0.0.1, stopped by PID), joined with the real cluster commands.
//
// Independent of the redcoord library on purpose, like redis_server: everything goes through
// redis-cli, so a bug in the library can never make the fixture lie about the cluster's state.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "redis_server.hpp"

namespace redcoord::test {

struct redis_cluster_options {
    /// Masters, each serving an even share of the 16384 slots.
    std::size_t masters = 3;
    /// Replicas of each master.
    std::size_t replicas_per_master = 1;
    /// cluster-node-timeout: a node silent this long is suspected, then failed over. Failover
    /// tests want it short (500 ms).
    std::chrono::milliseconds node_timeout{5000};
    /// requirepass on every node (and masterauth, so replicas can sync); empty means none.
    std::string password{};
    /// Extra redis.conf lines for every node, after the cluster's own (so they win).
    std::vector<std::string> extra_config{};
};

/// Owns a Redis Cluster of options.masters + options.masters * options.replicas_per_master
/// redis-server children. Nodes 0..masters-1 start as the masters (node m serves the m-th share
/// of the slots); the replicas of master m are nodes masters + m * replicas_per_master + r.
/// Indexes stay with the process, not the role: after a failover node(i) may be a replica.
///
/// Questions about the topology ("live") are asked of running, unpaused nodes with CLUSTER
/// NODES at the time of the call. Not thread-safe; create and destroy it on the test's main
/// thread (as redis_server).
class redis_cluster {
  public:
    static constexpr int slot_count = 16384;

    /// Starts every node, assigns the slots, joins the nodes and the replicas, and waits until
    /// wait_until_stable() holds (about 2 s: a master waits 2 s before it says ok). The join
    /// runs with cluster-node-timeout at most 1 s, set back to options.node_timeout at the end.
    /// Throws std::runtime_error with each node's view and log tail on failure or after 30 s.
    explicit redis_cluster(redis_cluster_options opts = {});
    /// Stops every node by PID (paused nodes are resumed first) and removes their temp dirs.
    ~redis_cluster();

    redis_cluster(const redis_cluster&) = delete;
    redis_cluster& operator=(const redis_cluster&) = delete;

    const redis_cluster_options& options() const;
    /// Number of nodes, masters and replicas.
    std::size_t size() const;
    redis_server& node(std::size_t i);
    const redis_server& node(std::size_t i) const;
    /// The client port of node i on 127.0.0.1.
    std::uint16_t port(std::size_t i) const;
    /// The cluster bus port of node i (set with cluster-port, not port + 10000).
    std::uint16_t bus_port(std::size_t i) const;
    /// Node i's cluster node id (40 hex digits); kept across restart().
    const std::string& node_id(std::size_t i) const;
    /// The index of the node listening on `port`; throws std::out_of_range when none does.
    std::size_t index_of_port(std::uint16_t port) const;
    /// "127.0.0.1:p1,127.0.0.1:p2,..." for the nodes that started as masters.
    std::string seeds() const;

    /// Running and not paused.
    bool live(std::size_t i) const;
    /// Live: ports of the masters that are not flagged failed, ordered by their first slot
    /// (masters without slots last).
    std::vector<std::uint16_t> master_ports() const;
    /// Live: port of the master serving `slot` (the migration source while one is under way);
    /// throws std::runtime_error when no node serves it.
    std::uint16_t port_of_slot(int slot) const;
    /// index_of_port(port_of_slot(slot)).
    std::size_t index_of_slot(int slot) const;
    /// The hash slot of a key (CRC16 of the key or of its {hash tag}, mod 16384), computed
    /// here so that tests need no server for it; CLUSTER KEYSLOT gives the same answer.
    static int key_slot(std::string_view key);

    /// redis-cli against node i (see redis_server::cli; pass "-c" first to follow redirects).
    /// Never call it on a paused node: redis-cli would wait forever.
    std::string cli(std::size_t i, const std::vector<std::string>& args) const;

    // Faults. Each acts on one process by PID.

    /// SIGKILL (a crash); the node keeps its dir and nodes.conf for restart().
    void kill(std::size_t i);
    /// SIGSTOP: the node keeps its sockets but answers nothing, to clients and cluster bus.
    void pause(std::size_t i);
    /// SIGCONT after pause().
    void resume(std::size_t i);
    /// Stops node i if running (SIGTERM) and starts it on the same ports with its nodes.conf,
    /// so it rejoins with the same id (data is lost: persistence is off). Waits up to 30 s
    /// until it knows every node, says cluster_state:ok, no live node flags it failed and, if
    /// it is a replica, its link to its master is up.
    void restart(std::size_t i);
    /// Waits until a replica of the failed master old_master serves every slot old_master
    /// served (as seen by every live node) and every live master says cluster_state:ok;
    /// returns the index of the promoted node. Throws std::runtime_error on timeout.
    std::size_t wait_for_failover(std::size_t old_master,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(30));
    /// Waits until every live node says cluster_state:ok, knows every node, agrees on who serves
    /// every slot, and every live replica's link is up. Throws std::runtime_error on timeout.
    void wait_until_stable(std::chrono::milliseconds timeout = std::chrono::seconds(30));

    // Slot migration, by the real protocol (what redis-cli --cluster reshard does).

    /// CLUSTER SETSLOT slot IMPORTING <source id> on node to, then MIGRATING <to's id> on the
    /// current owner. Clients now get ASK for keys of the slot already moved.
    void begin_migration(int slot, std::size_t to);
    /// Moves every key of the slot from the source to the target of the migration begun for
    /// it: CLUSTER GETKEYSINSLOT, then MIGRATE ... KEYS, until the source has none left.
    /// Keys must not contain newlines (redis-cli prints one key per line).
    void migrate_keys(int slot);
    /// CLUSTER SETSLOT slot NODE <target id> on the target, the source, then every other live
    /// master; then waits until every live node sees the target serving the slot.
    void finish_migration(int slot);
    /// begin_migration, migrate_keys, finish_migration.
    void migrate_slot(int slot, std::size_t to);
    /// migrate_slot for each slot of first..last (inclusive) not already served by node to,
    /// waiting for the gossip once at the end. Some 8 redis-cli runs (25-70 ms) a slot: meant
    /// for small ranges.
    void migrate_range(int first, int last, std::size_t to);

  private:
    struct migration {
        std::size_t from, to;
    };

    void start_nodes();
    // Records node i's slots and replicas (while it is a live master) for wait_for_failover.
    void remember_what_it_serves(std::size_t i);
    void begin_migration(int slot, std::size_t from, std::size_t to);
    std::size_t assign_slot(int slot, const std::vector<std::size_t>& masters);
    std::vector<std::size_t> live_masters() const;
    void wait_for_owner(int first, int last, std::size_t to);
    void join();
    std::string any_live_view() const;
    std::size_t first_live() const;
    void require_index(std::size_t i, const char* what) const;
    std::string failure_report(const std::string& what) const;

    redis_cluster_options opts_;
    std::vector<std::unique_ptr<redis_server>> nodes_;
    std::vector<std::uint16_t> bus_ports_;
    std::vector<std::string> ids_;
    std::vector<bool> paused_;
    /// The slot ranges (first, last) a master served, and its replicas' ids, when kill() or
    /// pause() took it down: for wait_for_failover.
    std::map<std::size_t, std::vector<std::pair<int, int>>> slots_when_lost_;
    std::map<std::size_t, std::vector<std::string>> replicas_when_lost_;
    std::map<int, migration> migrations_;
};

}  // namespace redcoord::test
