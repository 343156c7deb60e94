#include "redis_cluster.hpp"
#include "text_files.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace redcoord::test {

namespace {

using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto join_deadline = 30s;
constexpr auto poll_interval = 50ms;
constexpr auto join_node_timeout = 1000ms;
constexpr int start_attempts = 5;
constexpr std::size_t log_tail_lines = 15;
/// Keys moved per MIGRATE.
constexpr int migrate_batch = 100;

using slot_ranges = std::vector<std::pair<int, int>>;

/// One line of CLUSTER NODES.
struct node_entry {
    std::string id;
    std::uint16_t port = 0;
    std::set<std::string> flags;
    std::string master_id;  // "-" for a master
    std::string link_state;
    slot_ranges slots;  // without the [slot->-id] / [slot-<-id] migration entries

    bool has(const std::string& flag) const { return flags.count(flag) != 0; }
    bool is_master() const { return has("master"); }
    bool failed() const { return has("fail") || has("fail?"); }
    bool serves(int slot) const {
        return std::any_of(slots.begin(), slots.end(),
                           [&](const auto& r) { return r.first <= slot && slot <= r.second; });
    }
};

using cluster_view = std::vector<node_entry>;

std::vector<std::string> split(const std::string& text, char sep) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string item; std::getline(in, item, sep);) {
        if (!item.empty() && item.back() == '\r') item.pop_back();
        if (!item.empty()) out.push_back(item);
    }
    return out;
}

/// Parses CLUSTER NODES: "<id> <ip:port@cport[,hostname]> <flags> <master> <ping-sent>
/// <pong-recv> <config-epoch> <link-state> <slot>...".
cluster_view parse_nodes(const std::string& text) {
    cluster_view view;
    for (const auto& line : split(text, '\n')) {
        const auto fields = split(line, ' ');
        if (fields.size() < 8) throw std::runtime_error("unexpected CLUSTER NODES line: " + line);
        node_entry entry;
        entry.id = fields[0];
        const auto colon = fields[1].rfind(':', fields[1].find('@'));
        if (colon == std::string::npos) {
            throw std::runtime_error("unexpected address in CLUSTER NODES: " + line);
        }
        entry.port = static_cast<std::uint16_t>(std::stoi(fields[1].substr(colon + 1)));
        for (const auto& flag : split(fields[2], ',')) entry.flags.insert(flag);
        entry.master_id = fields[3];
        entry.link_state = fields[7];
        for (std::size_t i = 8; i < fields.size(); ++i) {
            const auto& token = fields[i];
            if (token.starts_with("[")) continue;
            const auto dash = token.find('-');
            const int first = std::stoi(token.substr(0, dash));
            const int last = dash == std::string::npos ? first : std::stoi(token.substr(dash + 1));
            entry.slots.emplace_back(first, last);
        }
        view.push_back(std::move(entry));
    }
    return view;
}

const node_entry* find_id(const cluster_view& view, const std::string& id) {
    for (const auto& entry : view) {
        if (entry.id == id) return &entry;
    }
    return nullptr;
}

const node_entry* find_myself(const cluster_view& view) {
    for (const auto& entry : view) {
        if (entry.has("myself")) return &entry;
    }
    return nullptr;
}

const node_entry* owner_of(const cluster_view& view, int slot) {
    for (const auto& entry : view) {
        if (entry.serves(slot)) return &entry;
    }
    return nullptr;
}

/// What every node should agree on: who is there, who replicates whom, who serves what. Flags
/// other than the role (myself, fail?, ...) are left out: they differ by design.
std::string canonical(const cluster_view& view) {
    std::vector<std::string> lines;
    for (const auto& entry : view) {
        std::string line =
            entry.id + (entry.is_master() ? " master " : " replica ") + entry.master_id;
        for (const auto& [first, last] : entry.slots) {
            line += " " + std::to_string(first) + "-" + std::to_string(last);
        }
        lines.push_back(std::move(line));
    }
    std::sort(lines.begin(), lines.end());
    std::string out;
    for (const auto& line : lines) out += line + "\n";
    return out;
}

/// The value of "field:" in INFO output, or empty.
std::string info_field(const std::string& info, const std::string& field) {
    for (const auto& line : split(info, '\n')) {
        if (line.size() > field.size() && line.compare(0, field.size(), field) == 0 &&
            line[field.size()] == ':') {
            return line.substr(field.size() + 1);
        }
    }
    return {};
}

std::string ranges_text(const slot_ranges& ranges) {
    std::string out;
    for (const auto& [first, last] : ranges) {
        if (!out.empty()) out += ",";
        out += std::to_string(first);
        if (last != first) out += "-" + std::to_string(last);
    }
    return out;
}

using text::last_lines;
using text::quote;
using text::read_text_file;

/// A free port on 127.0.0.1 for a cluster bus. Another process may take it before redis-server
/// binds it; the caller retries then.
std::uint16_t pick_free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
    const int error = errno;
    ::close(fd);
    if (!ok) throw std::runtime_error(std::string("bind 127.0.0.1:0: ") + std::strerror(error));
    return ntohs(addr.sin_port);
}

std::uint16_t crc16(std::string_view data) {
    // CRC-16/XMODEM (poly 0x1021, init 0), as in Redis' crc16.c.
    std::uint16_t crc = 0;
    for (unsigned char byte : data) {
        crc ^= static_cast<std::uint16_t>(byte << 8);
        for (int bit = 0; bit < 8; ++bit) {
            crc = (crc & 0x8000) ? static_cast<std::uint16_t>((crc << 1) ^ 0x1021)
                                 : static_cast<std::uint16_t>(crc << 1);
        }
    }
    return crc;
}

}  // namespace

redis_cluster::redis_cluster(redis_cluster_options opts) : opts_(std::move(opts)) {
    if (opts_.masters == 0 || opts_.masters > static_cast<std::size_t>(slot_count)) {
        throw std::invalid_argument("redis_cluster: masters must be 1..16384, not " +
                                    std::to_string(opts_.masters));
    }
    if (opts_.node_timeout <= 0ms) {
        throw std::invalid_argument("redis_cluster: node_timeout must be positive");
    }
    // On failure the members' destructors stop whatever started.
    start_nodes();
    join();
}

redis_cluster::~redis_cluster() {
    // A stopped process cannot handle SIGTERM (redis_server::stop resumes its own node, but a
    // paused replica would also hold up its master's shutdown).
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
        if (paused_[i]) resume(i);
    }
    // Replicas (the last nodes, unless a failover swapped roles) first, so that no master
    // waits for a replica to catch up on shutdown.
    while (!nodes_.empty()) nodes_.pop_back();
}

void redis_cluster::start_nodes() {
    const std::size_t count = opts_.masters * (1 + opts_.replicas_per_master);
    for (std::size_t i = 0; i < count; ++i) {
        for (int attempt = 1;; ++attempt) {
            const std::uint16_t bus = pick_free_port();
            redis_options node_opts;
            node_opts.password = opts_.password;
            node_opts.extra_config = {
                "cluster-enabled yes",
                // Relative to dir, the node's temp dir; kept by stop() for restart().
                "cluster-config-file nodes.conf",
                "cluster-node-timeout " + std::to_string(opts_.node_timeout.count()),
                // Not port + 10000, which may be taken or above 65535.
                "cluster-port " + std::to_string(bus),
                "repl-diskless-sync-delay 0",
            };
            if (!opts_.password.empty()) {
                node_opts.extra_config.push_back("masterauth " + quote(opts_.password));
            }
            node_opts.extra_config.insert(node_opts.extra_config.end(),
                                          opts_.extra_config.begin(), opts_.extra_config.end());
            node_opts.single_server = true;  // a node, whatever REDCOORD_TEST_TOPOLOGY says
            try {
                nodes_.push_back(std::make_unique<redis_server>(std::move(node_opts)));
                bus_ports_.push_back(bus);
                paused_.push_back(false);
                break;
            } catch (const std::runtime_error& e) {
                // The bus port was taken between picking and binding: pick another one.
                const bool port_taken = std::string_view(e.what()).find("Address already in use") !=
                                        std::string_view::npos;
                if (!port_taken || attempt == start_attempts) {
                    throw std::runtime_error("redis_cluster: node " + std::to_string(i) +
                                             " did not start: " + e.what());
                }
            }
        }
    }
    for (std::size_t i = 0; i < nodes_.size(); ++i) ids_.push_back(cli(i, {"CLUSTER", "MYID"}));
}

void redis_cluster::join() {
    const auto deadline = steady::now() + join_deadline;
    const auto expect_ok = [&](std::size_t i, const std::vector<std::string>& args) {
        const auto reply = cli(i, args);
        if (reply != "OK") {
            std::string command;
            for (const auto& arg : args) command += " " + arg;
            throw std::runtime_error(failure_report("node " + std::to_string(i) + " answered" +
                                                    command + " with: " + reply));
        }
    };

    // A node tells the others of its new role only in its own pings, which it sends each
    // node every cluster-node-timeout / 2: with 5 s, agreeing on the replicas takes seconds.
    // So the join runs with a shorter timeout (redis.conf keeps the configured one).
    if (opts_.node_timeout > join_node_timeout) {
        for (std::size_t i = 0; i < nodes_.size(); ++i) {
            expect_ok(i, {"CONFIG", "SET", "cluster-node-timeout",
                          std::to_string(join_node_timeout.count())});
        }
    }

    // Even shares of the slots: 0-5460, 5461-10921, 10922-16383 for three masters.
    const auto masters = opts_.masters;
    for (std::size_t m = 0; m < masters; ++m) {
        const auto first = m * slot_count / masters;
        const auto last = (m + 1) * slot_count / masters - 1;
        expect_ok(m, {"CLUSTER", "ADDSLOTSRANGE", std::to_string(first), std::to_string(last)});
    }
    for (std::size_t i = 1; i < nodes_.size(); ++i) {
        expect_ok(i, {"CLUSTER", "MEET", "127.0.0.1", std::to_string(port(0)),
                      std::to_string(bus_port(0))});
    }

    // CLUSTER REPLICATE needs the master known to the replica.
    const std::set<std::string> all_ids(ids_.begin(), ids_.end());
    for (;;) {
        bool everyone_known = true;
        for (std::size_t i = 0; i < nodes_.size() && everyone_known; ++i) {
            std::set<std::string> known;
            for (const auto& entry : parse_nodes(cli(i, {"CLUSTER", "NODES"}))) {
                if (!entry.has("handshake")) known.insert(entry.id);
            }
            everyone_known = known == all_ids;
        }
        if (everyone_known) break;
        if (steady::now() >= deadline) {
            throw std::runtime_error(failure_report("the nodes did not all meet within 30 s"));
        }
        std::this_thread::sleep_for(poll_interval);
    }

    for (std::size_t m = 0; m < masters; ++m) {
        for (std::size_t r = 0; r < opts_.replicas_per_master; ++r) {
            expect_ok(masters + m * opts_.replicas_per_master + r,
                      {"CLUSTER", "REPLICATE", ids_[m]});
        }
    }
    wait_until_stable(std::chrono::ceil<std::chrono::milliseconds>(deadline - steady::now()));
    if (opts_.node_timeout > join_node_timeout) {
        for (std::size_t i = 0; i < nodes_.size(); ++i) {
            expect_ok(i, {"CONFIG", "SET", "cluster-node-timeout",
                          std::to_string(opts_.node_timeout.count())});
        }
    }
}

const redis_cluster_options& redis_cluster::options() const { return opts_; }

std::size_t redis_cluster::size() const { return nodes_.size(); }

redis_server& redis_cluster::node(std::size_t i) {
    require_index(i, "node");
    return *nodes_[i];
}

const redis_server& redis_cluster::node(std::size_t i) const {
    require_index(i, "node");
    return *nodes_[i];
}

std::uint16_t redis_cluster::port(std::size_t i) const { return node(i).port(); }

std::uint16_t redis_cluster::bus_port(std::size_t i) const {
    require_index(i, "bus_port");
    return bus_ports_[i];
}

const std::string& redis_cluster::node_id(std::size_t i) const {
    require_index(i, "node_id");
    return ids_[i];
}

std::size_t redis_cluster::index_of_port(std::uint16_t p) const {
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
        if (nodes_[i]->port() == p) return i;
    }
    throw std::out_of_range("redis_cluster: no node on port " + std::to_string(p));
}

std::string redis_cluster::seeds() const {
    std::string out;
    for (std::size_t m = 0; m < opts_.masters; ++m) {
        if (!out.empty()) out += ",";
        out += "127.0.0.1:" + std::to_string(port(m));
    }
    return out;
}

bool redis_cluster::live(std::size_t i) const {
    require_index(i, "live");
    return !paused_[i] && nodes_[i]->running();
}

std::vector<std::uint16_t> redis_cluster::master_ports() const {
    auto view = parse_nodes(any_live_view());
    std::vector<const node_entry*> masters;
    for (const auto& entry : view) {
        if (entry.is_master() && !entry.failed()) masters.push_back(&entry);
    }
    const auto first_slot = [](const node_entry* e) {
        int first = slot_count;
        for (const auto& range : e->slots) first = std::min(first, range.first);
        return first;
    };
    std::stable_sort(masters.begin(), masters.end(),
                     [&](const auto* a, const auto* b) { return first_slot(a) < first_slot(b); });
    std::vector<std::uint16_t> ports;
    for (const auto* entry : masters) ports.push_back(entry->port);
    return ports;
}

std::uint16_t redis_cluster::port_of_slot(int slot) const {
    if (slot < 0 || slot >= slot_count) {
        throw std::out_of_range("redis_cluster: no slot " + std::to_string(slot));
    }
    const auto view = parse_nodes(any_live_view());
    const auto* owner = owner_of(view, slot);
    if (owner == nullptr) {
        throw std::runtime_error("redis_cluster: no node serves slot " + std::to_string(slot));
    }
    return owner->port;
}

std::size_t redis_cluster::index_of_slot(int slot) const {
    return index_of_port(port_of_slot(slot));
}

int redis_cluster::key_slot(std::string_view key) {
    const auto open = key.find('{');
    if (open != std::string_view::npos) {
        const auto close = key.find('}', open + 1);
        if (close != std::string_view::npos && close > open + 1) {
            key = key.substr(open + 1, close - open - 1);
        }
    }
    return crc16(key) & (slot_count - 1);
}

std::string redis_cluster::cli(std::size_t i, const std::vector<std::string>& args) const {
    return node(i).cli(args);
}

void redis_cluster::remember_what_it_serves(std::size_t i) {
    const auto view = parse_nodes(cli(i, {"CLUSTER", "NODES"}));
    slots_when_lost_.erase(i);
    replicas_when_lost_.erase(i);
    if (const auto* me = find_myself(view); me && me->is_master()) {
        slots_when_lost_[i] = me->slots;
        for (const auto& entry : view) {
            if (entry.master_id == me->id) replicas_when_lost_[i].push_back(entry.id);
        }
    }
}

void redis_cluster::kill(std::size_t i) {
    require_index(i, "kill");
    // Remember what it served for wait_for_failover; a paused node was seen by pause().
    if (live(i)) remember_what_it_serves(i);
    nodes_[i]->kill();
    paused_[i] = false;
}

void redis_cluster::pause(std::size_t i) {
    require_index(i, "pause");
    if (!live(i)) {
        throw std::logic_error("redis_cluster::pause: node " + std::to_string(i) +
                               " is not running or already paused");
    }
    remember_what_it_serves(i);
    nodes_[i]->pause();
    paused_[i] = true;
}

void redis_cluster::resume(std::size_t i) {
    require_index(i, "resume");
    nodes_[i]->resume();
    paused_[i] = false;
}

void redis_cluster::restart(std::size_t i) {
    require_index(i, "restart");
    nodes_[i]->restart();  // resumes it first if paused
    paused_[i] = false;

    const auto deadline = steady::now() + join_deadline;
    std::string waiting_for;
    for (;;) {
        try {
            waiting_for = "node " + std::to_string(i) + " to know every node";
            const auto own = parse_nodes(cli(i, {"CLUSTER", "NODES"}));
            bool knows_all = own.size() == ids_.size();
            for (const auto& id : ids_) knows_all = knows_all && find_id(own, id) != nullptr;
            const auto* me = find_myself(own);
            if (knows_all && me != nullptr) {
                waiting_for =
                    "every live node to agree with node " + std::to_string(i) + " and see it up";
                bool agreed = true;
                for (std::size_t j = 0; j < nodes_.size() && agreed; ++j) {
                    if (j == i || !live(j)) continue;
                    const auto other = parse_nodes(cli(j, {"CLUSTER", "NODES"}));
                    const auto* seen = find_id(other, ids_[i]);
                    agreed = canonical(other) == canonical(own) && seen && !seen->failed();
                }
                if (agreed) {
                    waiting_for = "node " + std::to_string(i) + " to say cluster_state:ok";
                    const bool state_ok =
                        info_field(cli(i, {"CLUSTER", "INFO"}), "cluster_state") == "ok";
                    waiting_for = "node " + std::to_string(i) + "'s link to its master";
                    const bool link_up =
                        me->is_master() ||
                        info_field(cli(i, {"INFO", "replication"}), "master_link_status") == "up";
                    if (state_ok && link_up) return;
                }
            }
        } catch (const std::runtime_error& e) {
            waiting_for += " (" + std::string(e.what()) + ")";
        }
        if (steady::now() >= deadline) {
            throw std::runtime_error(
                failure_report("restart: gave up after 30 s waiting for " + waiting_for));
        }
        std::this_thread::sleep_for(poll_interval);
    }
}

std::size_t redis_cluster::wait_for_failover(std::size_t old_master,
                                             std::chrono::milliseconds timeout) {
    require_index(old_master, "wait_for_failover");
    const auto deadline = steady::now() + timeout;
    const auto& old_id = ids_[old_master];

    slot_ranges lost;
    std::set<std::string> candidates;
    if (const auto it = slots_when_lost_.find(old_master); it != slots_when_lost_.end()) {
        lost = it->second;
        const auto& replicas = replicas_when_lost_[old_master];
        candidates.insert(replicas.begin(), replicas.end());
    } else {  // taken down behind the fixture's back: what the cluster still says of it
        const auto view = parse_nodes(any_live_view());
        if (const auto* old = find_id(view, old_id)) lost = old->slots;
        for (const auto& entry : view) {
            if (entry.master_id == old_id) candidates.insert(entry.id);
        }
    }
    if (lost.empty()) {
        throw std::logic_error("redis_cluster::wait_for_failover: node " +
                               std::to_string(old_master) + " serves no slots");
    }
    if (candidates.empty()) {
        throw std::logic_error("redis_cluster::wait_for_failover: node " +
                               std::to_string(old_master) + " has no replica to promote");
    }

    std::string waiting_for;
    for (;;) {
        try {
            std::optional<std::string> promoted;
            bool done = true;
            for (std::size_t j = 0; j < nodes_.size() && done; ++j) {
                if (!live(j)) continue;
                const auto view = parse_nodes(cli(j, {"CLUSTER", "NODES"}));
                waiting_for = "node " + std::to_string(j) + " to see a replica of node " +
                              std::to_string(old_master) + " serve slots " + ranges_text(lost);
                for (const auto& [first, last] : lost) {
                    for (int slot : {first, last}) {
                        const auto* owner = owner_of(view, slot);
                        const bool ok = owner && owner->is_master() && !owner->failed() &&
                                        candidates.count(owner->id) != 0 &&
                                        (!promoted || *promoted == owner->id);
                        if (!ok) {
                            done = false;
                            break;
                        }
                        promoted = owner->id;
                    }
                    if (!done) break;
                }
                if (!done) break;
                const auto* me = find_myself(view);
                if (me && me->is_master()) {
                    waiting_for = "master node " + std::to_string(j) + " to say cluster_state:ok";
                    done = info_field(cli(j, {"CLUSTER", "INFO"}), "cluster_state") == "ok";
                }
            }
            if (done && promoted) {
                const auto it = std::find(ids_.begin(), ids_.end(), *promoted);
                if (it != ids_.end()) return static_cast<std::size_t>(it - ids_.begin());
            }
        } catch (const std::runtime_error& e) {
            waiting_for += " (" + std::string(e.what()) + ")";
        }
        if (steady::now() >= deadline) {
            throw std::runtime_error(failure_report("wait_for_failover: gave up after " +
                                                    std::to_string(timeout.count()) +
                                                    " ms waiting for " + waiting_for));
        }
        std::this_thread::sleep_for(poll_interval);
    }
}

void redis_cluster::wait_until_stable(std::chrono::milliseconds timeout) {
    const auto deadline = steady::now() + timeout;
    std::string waiting_for;
    for (;;) {
        try {
            bool stable = true;
            std::optional<std::string> agreed;
            for (std::size_t i = 0; i < nodes_.size() && stable; ++i) {
                if (!live(i)) continue;
                const auto tag = "node " + std::to_string(i);
                const auto view = parse_nodes(cli(i, {"CLUSTER", "NODES"}));
                waiting_for = tag + " to know every node";
                stable = view.size() == ids_.size();
                for (const auto& id : ids_) stable = stable && find_id(view, id) != nullptr;
                if (!stable) break;
                waiting_for = tag + " to agree with the others on roles and slots";
                const auto summary = canonical(view);
                if (!agreed) agreed = summary;
                stable = *agreed == summary;
                if (!stable) break;
                waiting_for = tag + " to see every live node up";
                for (std::size_t j = 0; j < nodes_.size() && stable; ++j) {
                    stable = !live(j) || !find_id(view, ids_[j])->failed();
                }
                if (!stable) break;
                waiting_for = tag + " to say cluster_state:ok";
                stable = info_field(cli(i, {"CLUSTER", "INFO"}), "cluster_state") == "ok";
                if (!stable) break;
                if (const auto* me = find_myself(view); me && !me->is_master()) {
                    waiting_for = tag + " (a replica) to say master_link_status:up";
                    stable =
                        info_field(cli(i, {"INFO", "replication"}), "master_link_status") == "up";
                }
            }
            if (stable) return;
        } catch (const std::runtime_error& e) {
            waiting_for += " (" + std::string(e.what()) + ")";
        }
        if (steady::now() >= deadline) {
            throw std::runtime_error(failure_report("gave up after " +
                                                    std::to_string(timeout.count()) +
                                                    " ms waiting for " + waiting_for));
        }
        std::this_thread::sleep_for(poll_interval);
    }
}

void redis_cluster::begin_migration(int slot, std::size_t to) {
    require_index(to, "begin_migration");
    begin_migration(slot, index_of_slot(slot), to);
}

void redis_cluster::begin_migration(int slot, std::size_t from, std::size_t to) {
    if (migrations_.count(slot) != 0) {
        throw std::logic_error("redis_cluster::begin_migration: slot " + std::to_string(slot) +
                               " is already being migrated");
    }
    if (from == to) {
        throw std::logic_error("redis_cluster::begin_migration: node " + std::to_string(to) +
                               " already serves slot " + std::to_string(slot));
    }
    const auto s = std::to_string(slot);
    // Target first: once the source says MIGRATING, clients get ASK towards the target.
    auto reply = cli(to, {"CLUSTER", "SETSLOT", s, "IMPORTING", ids_[from]});
    if (reply != "OK") {
        throw std::runtime_error("redis_cluster: CLUSTER SETSLOT " + s + " IMPORTING on node " +
                                 std::to_string(to) + ": " + reply);
    }
    reply = cli(from, {"CLUSTER", "SETSLOT", s, "MIGRATING", ids_[to]});
    if (reply != "OK") {
        throw std::runtime_error("redis_cluster: CLUSTER SETSLOT " + s + " MIGRATING on node " +
                                 std::to_string(from) + ": " + reply);
    }
    migrations_[slot] = {from, to};
}

void redis_cluster::migrate_keys(int slot) {
    const auto it = migrations_.find(slot);
    if (it == migrations_.end()) {
        throw std::logic_error("redis_cluster::migrate_keys: no migration begun for slot " +
                               std::to_string(slot));
    }
    const auto [from, to] = it->second;
    for (;;) {
        const auto keys = split(cli(from, {"CLUSTER", "GETKEYSINSLOT", std::to_string(slot),
                                           std::to_string(migrate_batch)}),
                                '\n');
        if (keys.empty()) return;
        std::vector<std::string> args = {"MIGRATE", "127.0.0.1", std::to_string(port(to)),
                                         "",        "0",         "5000"};
        if (!opts_.password.empty()) args.insert(args.end(), {"AUTH", opts_.password});
        args.push_back("KEYS");
        args.insert(args.end(), keys.begin(), keys.end());
        const auto reply = cli(from, args);
        if (reply != "OK" && reply != "NOKEY") {
            throw std::runtime_error("redis_cluster: MIGRATE of slot " + std::to_string(slot) +
                                     " from node " + std::to_string(from) + " to node " +
                                     std::to_string(to) + ": " + reply);
        }
    }
}

void redis_cluster::finish_migration(int slot) {
    const auto to = assign_slot(slot, live_masters());
    wait_for_owner(slot, slot, to);
}

/// CLUSTER SETSLOT slot NODE on the target, the source, then `masters`; returns the target.
std::size_t redis_cluster::assign_slot(int slot, const std::vector<std::size_t>& masters) {
    const auto it = migrations_.find(slot);
    if (it == migrations_.end()) {
        throw std::logic_error("redis_cluster::finish_migration: no migration begun for slot " +
                               std::to_string(slot));
    }
    // Named, not a structured binding: clang 14 cannot capture one in the lambda.
    const std::size_t from = it->second.from;
    const std::size_t to = it->second.to;
    const auto s = std::to_string(slot);
    const auto set_node = [&](std::size_t i) {
        const auto reply = cli(i, {"CLUSTER", "SETSLOT", s, "NODE", ids_[to]});
        if (reply != "OK") {
            throw std::runtime_error("redis_cluster: CLUSTER SETSLOT " + s + " NODE on node " +
                                     std::to_string(i) + ": " + reply);
        }
    };
    // The target first (it bumps its config epoch, so its claim wins), then the source (which
    // refuses while it still holds keys of the slot), then the other masters.
    set_node(to);
    set_node(from);
    migrations_.erase(it);
    for (const auto i : masters) {
        if (i != to && i != from) set_node(i);
    }
    return to;
}

/// Indexes of the live nodes that are masters not flagged failed, as node 0.. sees it.
std::vector<std::size_t> redis_cluster::live_masters() const {
    std::vector<std::size_t> masters;
    const auto view = parse_nodes(any_live_view());
    for (const auto& entry : view) {
        if (!entry.is_master() || entry.failed()) continue;
        const auto i = index_of_port(entry.port);
        if (live(i)) masters.push_back(i);
    }
    return masters;
}

/// Waits until every live node sees node `to` serve first..last; replicas learn it by gossip.
void redis_cluster::wait_for_owner(int first, int last, std::size_t to) {
    const auto deadline = steady::now() + join_deadline;
    for (;;) {
        bool everyone = true;
        for (std::size_t i = 0; i < nodes_.size() && everyone; ++i) {
            if (!live(i)) continue;
            const auto view = parse_nodes(cli(i, {"CLUSTER", "NODES"}));
            const auto* me = find_id(view, ids_[to]);
            everyone = me != nullptr &&
                       std::any_of(me->slots.begin(), me->slots.end(), [&](const auto& range) {
                           return range.first <= first && last <= range.second;
                       });
        }
        if (everyone) return;
        if (steady::now() >= deadline) {
            throw std::runtime_error(failure_report("migration: not every node sees node " +
                                                    std::to_string(to) + " serve slots " +
                                                    ranges_text({{first, last}}) + " after 30 s"));
        }
        std::this_thread::sleep_for(poll_interval);
    }
}

void redis_cluster::migrate_slot(int slot, std::size_t to) {
    begin_migration(slot, to);
    migrate_keys(slot);
    finish_migration(slot);
}

void redis_cluster::migrate_range(int first, int last, std::size_t to) {
    require_index(to, "migrate_range");
    if (first < 0 || last >= slot_count || first > last) {
        throw std::out_of_range("redis_cluster::migrate_range: bad range " + std::to_string(first) +
                                "-" + std::to_string(last));
    }
    // One look at the topology, one wait at the end: each slot still costs about eight
    // redis-cli runs.
    const auto view = parse_nodes(any_live_view());
    const auto masters = live_masters();
    for (int slot = first; slot <= last; ++slot) {
        const auto* owner = owner_of(view, slot);
        if (owner == nullptr) {
            throw std::runtime_error("redis_cluster: no node serves slot " + std::to_string(slot));
        }
        const auto from = index_of_port(owner->port);
        if (from == to) continue;
        begin_migration(slot, from, to);
        migrate_keys(slot);
        assign_slot(slot, masters);
    }
    wait_for_owner(first, last, to);
}

std::string redis_cluster::any_live_view() const { return cli(first_live(), {"CLUSTER", "NODES"}); }

std::size_t redis_cluster::first_live() const {
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
        if (live(i)) return i;
    }
    throw std::runtime_error("redis_cluster: no node is running and unpaused");
}

void redis_cluster::require_index(std::size_t i, const char* what) const {
    if (i >= nodes_.size()) {
        throw std::out_of_range(std::string("redis_cluster::") + what + ": no node " +
                                std::to_string(i) + " (size " + std::to_string(nodes_.size()) +
                                ")");
    }
}

std::string redis_cluster::failure_report(const std::string& what) const {
    std::string report = "redis_cluster: " + what;
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
        const auto& n = *nodes_[i];
        report += "\n=== node " + std::to_string(i) + " port " + std::to_string(n.port()) +
                  " bus " + std::to_string(bus_ports_[i]) + " id " +
                  (i < ids_.size() ? ids_[i] : std::string("?")) + " dir " + n.dir();
        if (paused_[i]) {
            report += " (paused)";
        } else if (!n.running()) {
            report += " (not running)";
        } else {
            try {
                report += "\n--- CLUSTER NODES ---\n" + n.cli({"CLUSTER", "NODES"});
                report += "\n--- cluster_state: " +
                          info_field(n.cli({"CLUSTER", "INFO"}), "cluster_state");
            } catch (const std::exception& e) {
                report += "\n(no answer: " + std::string(e.what()) + ")";
            }
        }
        const auto log = last_lines(read_text_file(n.dir() + "/redis.log"), log_tail_lines);
        if (!log.empty()) report += "\n--- redis.log (tail) ---\n" + log;
    }
    return report;
}

}  // namespace redcoord::test
