// Tests of the Redis Cluster fixture itself, through redis-cli only: if these fail, no cluster
// test of the library can be trusted.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "redis_cluster.hpp"

using namespace std::chrono_literals;
using redcoord::test::redis_cluster;

namespace {

/// The value of "field:" in INFO output (redis-cli prints it with "\r\n" line ends).
std::string info_field(const std::string& info, const std::string& field) {
    std::istringstream in(info);
    for (std::string line; std::getline(in, line);) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.starts_with(field + ":")) return line.substr(field.size() + 1);
    }
    return {};
}

/// How many masters in `cluster_nodes` (CLUSTER NODES output) serve each slot.
std::vector<int> slot_coverage(const std::string& cluster_nodes) {
    std::vector<int> served(redis_cluster::slot_count, 0);
    std::istringstream lines(cluster_nodes);
    for (std::string line; std::getline(lines, line);) {
        std::istringstream fields(line);
        std::vector<std::string> f;
        for (std::string field; fields >> field;) f.push_back(field);
        if (f.size() < 8 || f[2].find("master") == std::string::npos) continue;
        for (std::size_t i = 8; i < f.size(); ++i) {
            if (f[i].starts_with("[")) continue;  // a migration under way
            const auto dash = f[i].find('-');
            const int first = std::stoi(f[i].substr(0, dash));
            const int last = dash == std::string::npos ? first : std::stoi(f[i].substr(dash + 1));
            for (int slot = first; slot <= last; ++slot) ++served[slot];
        }
    }
    return served;
}

std::string moved_to(int slot, std::uint16_t port) {
    return "MOVED " + std::to_string(slot) + " 127.0.0.1:" + std::to_string(port);
}

}  // namespace

TEST_CASE("redis_cluster starts 3 masters and 3 replicas and migrates a slot",
          "[integration][redis_cluster]") {
    redis_cluster cluster;
    REQUIRE(cluster.size() == 6);

    const auto masters = cluster.master_ports();
    REQUIRE(masters.size() == 3);
    CHECK(cluster.seeds() == "127.0.0.1:" + std::to_string(cluster.port(0)) +
                                 ",127.0.0.1:" + std::to_string(cluster.port(1)) +
                                 ",127.0.0.1:" + std::to_string(cluster.port(2)));
    for (std::size_t m = 0; m < 3; ++m) {
        CHECK(std::count(masters.begin(), masters.end(), cluster.port(m)) == 1);
    }

    // Every slot served by exactly one master, as every node sees it.
    for (std::size_t i = 0; i < cluster.size(); ++i) {
        INFO("node " << i);
        CHECK(cluster.node_id(i) == cluster.cli(i, {"CLUSTER", "MYID"}));
        // The join's shorter timeout is undone.
        CHECK(cluster.cli(i, {"CONFIG", "GET", "cluster-node-timeout"}) ==
              "cluster-node-timeout\n5000");
        const auto info = cluster.cli(i, {"CLUSTER", "INFO"});
        CHECK(info_field(info, "cluster_state") == "ok");
        CHECK(info_field(info, "cluster_slots_ok") == "16384");
        CHECK(info_field(info, "cluster_known_nodes") == "6");
        CHECK(info_field(info, "cluster_size") == "3");
        const auto served = slot_coverage(cluster.cli(i, {"CLUSTER", "NODES"}));
        CHECK(std::all_of(served.begin(), served.end(), [](int n) { return n == 1; }));
    }
    // The replicas of master m are node 3 + m, in sync.
    for (std::size_t m = 0; m < 3; ++m) {
        const auto replication = cluster.cli(3 + m, {"INFO", "replication"});
        CHECK(info_field(replication, "role") == "slave");
        CHECK(info_field(replication, "master_port") == std::to_string(cluster.port(m)));
        CHECK(info_field(replication, "master_link_status") == "up");
    }

    const std::string key = "fixture:key";
    REQUIRE(cluster.cli(0, {"-c", "SET", key, "v1"}) == "OK");
    for (std::size_t i = 0; i < cluster.size(); ++i) {
        INFO("node " << i);
        CHECK(cluster.cli(i, {"-c", "GET", key}) == "v1");
    }

    const int slot = std::stoi(cluster.cli(0, {"CLUSTER", "KEYSLOT", key}));
    CHECK(redis_cluster::key_slot(key) == slot);
    CHECK(redis_cluster::key_slot("{fixture:key}.other") == slot);
    const auto from = cluster.index_of_slot(slot);
    REQUIRE(from < 3);
    CHECK(cluster.cli(from, {"GET", key}) == "v1");
    const auto to = (from + 1) % 3;

    SECTION("migrate_slot moves the slot and its keys") {
        cluster.migrate_slot(slot, to);
        CHECK(cluster.port_of_slot(slot) == cluster.port(to));
        CHECK(cluster.cli(to, {"GET", key}) == "v1");
        CHECK(cluster.cli(from, {"GET", key}).starts_with(moved_to(slot, cluster.port(to))));
        for (std::size_t i = 0; i < cluster.size(); ++i) {
            INFO("node " << i);
            CHECK(cluster.cli(i, {"-c", "GET", key}) == "v1");
            CHECK(info_field(cluster.cli(i, {"CLUSTER", "INFO"}), "cluster_state") == "ok");
        }
    }

    SECTION("the migration steps answer ASK while the keys are on their way") {
        cluster.begin_migration(slot, to);
        // Still on the source: served there; the target redirects clients that did not ASK.
        CHECK(cluster.cli(from, {"GET", key}) == "v1");
        CHECK(cluster.cli(to, {"GET", key}).starts_with(moved_to(slot, cluster.port(from))));

        cluster.migrate_keys(slot);
        CHECK(cluster.cli(from, {"CLUSTER", "COUNTKEYSINSLOT", std::to_string(slot)}) == "0");
        CHECK(cluster.cli(from, {"GET", key})
                  .starts_with("ASK " + std::to_string(slot) +
                               " 127.0.0.1:" + std::to_string(cluster.port(to))));
        CHECK(cluster.cli(0, {"-c", "GET", key}) == "v1");  // redis-cli follows the ASK
        CHECK(cluster.port_of_slot(slot) == cluster.port(from));

        cluster.finish_migration(slot);
        CHECK(cluster.port_of_slot(slot) == cluster.port(to));
        CHECK(cluster.cli(to, {"GET", key}) == "v1");
        CHECK(cluster.cli(from, {"GET", key}).starts_with(moved_to(slot, cluster.port(to))));
    }
}

TEST_CASE("redis_cluster fails over a killed master to its replica",
          "[integration][redis_cluster]") {
    redis_cluster cluster({.node_timeout = 500ms});

    const std::string key = "fixture:failover";
    REQUIRE(cluster.cli(0, {"-c", "SET", key, "v1"}) == "OK");
    const int slot = redis_cluster::key_slot(key);
    const auto old_master = cluster.index_of_slot(slot);
    REQUIRE(old_master < 3);
    const auto replica = 3 + old_master;
    // The replica has the key before the master dies (replication is asynchronous).
    for (int i = 0; i < 100 && cluster.cli(replica, {"DBSIZE"}) != "1"; ++i) {
        std::this_thread::sleep_for(20ms);
    }
    REQUIRE(cluster.cli(replica, {"DBSIZE"}) == "1");

    cluster.kill(old_master);
    CHECK_FALSE(cluster.live(old_master));
    const auto promoted = cluster.wait_for_failover(old_master, 20s);
    CHECK(promoted == replica);

    CHECK(cluster.port_of_slot(slot) == cluster.port(promoted));
    const auto masters = cluster.master_ports();
    CHECK(masters.size() == 3);
    CHECK(std::count(masters.begin(), masters.end(), cluster.port(old_master)) == 0);
    CHECK(std::count(masters.begin(), masters.end(), cluster.port(promoted)) == 1);
    for (const auto port : masters) {
        const auto i = cluster.index_of_port(port);
        INFO("master node " << i);
        CHECK(info_field(cluster.cli(i, {"CLUSTER", "INFO"}), "cluster_state") == "ok");
        CHECK(info_field(cluster.cli(i, {"INFO", "replication"}), "role") == "master");
    }
    CHECK(cluster.cli(promoted, {"GET", key}) == "v1");
    CHECK(cluster.cli(0 == old_master ? 1 : 0, {"-c", "GET", key}) == "v1");

    // Restarted with its nodes.conf, the old master rejoins as a replica of the promoted node.
    cluster.restart(old_master);
    const auto replication = cluster.cli(old_master, {"INFO", "replication"});
    CHECK(info_field(replication, "role") == "slave");
    CHECK(info_field(replication, "master_port") == std::to_string(cluster.port(promoted)));
    CHECK(cluster.cli(old_master, {"CLUSTER", "MYID"}) == cluster.node_id(old_master));
}
