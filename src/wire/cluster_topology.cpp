#include "wire/cluster_topology.hpp"

#include <redcoord/resp3/node.hpp>

#include <algorithm>
#include <charconv>

namespace redcoord::detail {
namespace {

using resp3::tree;

bool is_aggregate(const tree& t) {
    return t.data_type == resp3::type::array || t.data_type == resp3::type::map ||
           t.data_type == resp3::type::set || t.data_type == resp3::type::push;
}

// Numbers come as integers, or as strings on some 7.0 releases.
bool to_number(const tree& t, std::int64_t& out) {
    if (is_aggregate(t)) return false;
    auto [p, e] = std::from_chars(t.value.data(), t.value.data() + t.value.size(), out);
    return e == std::errc{} && p == t.value.data() + t.value.size();
}

// A RESP3 map, or the flat key value list RESP2 would give.
const tree* field(const tree& m, std::string_view key) {
    for (std::size_t i = 0; i + 1 < m.children.size(); i += 2)
        if (m.children[i].value == key) return &m.children[i + 1];
    return nullptr;
}

std::string text_of(const tree* t) { return t && !is_aggregate(*t) ? t->value : std::string(); }

int add_master(cluster_map& out, cluster_map::master m) {
    if (int i = out.find(m.ep); i >= 0) return i;
    out.masters.push_back(std::move(m));
    return static_cast<int>(out.masters.size() - 1);
}

bool assign_range(cluster_map& out, std::int64_t first, std::int64_t last, int owner,
                  std::string& why) {
    if (first < 0 || last >= static_cast<std::int64_t>(cluster_slots) || first > last) {
        why = "slot range " + std::to_string(first) + "-" + std::to_string(last) +
              " is out of bounds";
        return false;
    }
    for (auto s = first; s <= last; ++s) out.owner[static_cast<std::size_t>(s)] =
        static_cast<std::int16_t>(owner);
    return true;
}

// The reply as a tree; false (and why) for an error reply or anything but an array.
bool read_root(node_span reply, std::string_view command, tree& root, std::string& why) {
    if (reply.empty()) {
        why = "empty reply";
        return false;
    }
    root = resp3::make_tree(reply);
    if (root.data_type == resp3::type::simple_error || root.data_type == resp3::type::blob_error) {
        why = root.value;
        return false;
    }
    if (!is_aggregate(root)) {
        why = std::string(command) + " did not reply with an array";
        return false;
    }
    return true;
}

std::string host_or_seed(std::string host, const std::string& seed_host) {
    if (host.empty() || host == "?") return seed_host;
    return host;
}

}  // namespace

std::size_t cluster_map::uncovered() const noexcept {
    return static_cast<std::size_t>(std::count(owner.begin(), owner.end(), std::int16_t{-1}));
}

int cluster_map::find(const endpoint& ep) const noexcept {
    for (std::size_t i = 0; i < masters.size(); ++i)
        if (masters[i].ep == ep) return static_cast<int>(i);
    return -1;
}

bool parse_cluster_shards(node_span reply, bool tls, const std::string& seed_host,
                          cluster_map& out, std::string& why) {
    out = cluster_map{};
    tree root;
    if (!read_root(reply, "CLUSTER SHARDS", root, why)) return false;
    for (const auto& shard : root.children) {
        const tree* slots = field(shard, "slots");
        const tree* nodes = field(shard, "nodes");
        if (!slots || !nodes || !is_aggregate(*slots) || !is_aggregate(*nodes)) {
            why = "a shard without slots and nodes";
            return false;
        }
        if (slots->children.empty()) continue;  // e.g. a failed master that lost its slots
        if (slots->children.size() % 2 != 0) {
            why = "a shard's slots are not a list of pairs";
            return false;
        }
        const tree* master = nullptr;
        for (const auto& n : nodes->children)
            if (text_of(field(n, "role")) == "master" && text_of(field(n, "health")) == "online")
                master = &n;
        if (!master) continue;  // no online master: its slots stay uncovered
        cluster_map::master m;
        m.id = text_of(field(*master, "id"));
        std::string host = text_of(field(*master, "endpoint"));
        if (host.empty() || host == "?") host = text_of(field(*master, "ip"));
        m.ep.host = host_or_seed(std::move(host), seed_host);
        std::int64_t port = 0;
        const tree* p = field(*master, tls ? "tls-port" : "port");
        if (!p || !to_number(*p, port) || port <= 0 || port > 65535) {
            why = std::string("a master without a valid ") + (tls ? "tls-port" : "port");
            return false;
        }
        m.ep.port = static_cast<std::uint16_t>(port);
        const int index = add_master(out, std::move(m));
        for (std::size_t i = 0; i < slots->children.size(); i += 2) {
            std::int64_t first = 0, last = 0;
            if (!to_number(slots->children[i], first) || !to_number(slots->children[i + 1], last)) {
                why = "a slot number that is not a number";
                return false;
            }
            if (!assign_range(out, first, last, index, why)) return false;
        }
    }
    return true;
}

bool parse_cluster_slots(node_span reply, const std::string& seed_host, cluster_map& out,
                         std::string& why) {
    out = cluster_map{};
    tree root;
    if (!read_root(reply, "CLUSTER SLOTS", root, why)) return false;
    for (const auto& range : root.children) {
        std::int64_t first = 0, last = 0, port = 0;
        if (range.children.size() < 3 || !to_number(range.children[0], first) ||
            !to_number(range.children[1], last) || range.children[2].children.size() < 2 ||
            !to_number(range.children[2].children[1], port) || port <= 0 || port > 65535) {
            why = "a slot range that is not [start, end, [host, port, ...], ...]";
            return false;
        }
        cluster_map::master m;
        const auto& node = range.children[2].children;
        m.ep.host = host_or_seed(text_of(&node[0]), seed_host);
        m.ep.port = static_cast<std::uint16_t>(port);
        if (node.size() > 2) m.id = text_of(&node[2]);
        if (!assign_range(out, first, last, add_master(out, std::move(m)), why)) return false;
    }
    return true;
}

}  // namespace redcoord::detail
