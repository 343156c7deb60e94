// A RESP3 message as a flat pre-order list of nodes, and an owning tree built from it.
#pragma once

#include <redcoord/resp3/type.hpp>

#include <cstddef>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace redcoord::resp3 {

/// One node of a message, viewing data owned by someone else (the parser, or a node).
/// For aggregates, `aggregate_size` counts elements (pairs for maps and attributes) and `value`
/// is empty; for everything else `aggregate_size` is 1.
struct node_view {
    type data_type = type::null;
    std::size_t aggregate_size = 1;
    std::size_t depth = 0;
    std::string_view value;
};

/// An owning node; a message is a std::vector<node> in pre-order (the generic response).
struct node {
    type data_type = type::null;
    std::size_t aggregate_size = 1;
    std::size_t depth = 0;
    std::string value;

    node() = default;
    node(type t, std::size_t size, std::size_t d, std::string v)
        : data_type(t), aggregate_size(size), depth(d), value(std::move(v)) {}
    explicit node(const node_view& v)
        : data_type(v.data_type), aggregate_size(v.aggregate_size), depth(v.depth),
          value(v.value) {}
    node_view view() const noexcept { return {data_type, aggregate_size, depth, value}; }
    friend bool operator==(const node&, const node&) = default;
};

/// A message as a tree: what most people mean by "a generic reply".
struct tree {
    type data_type = type::null;
    std::string value;              ///< text of a scalar
    std::vector<tree> children;     ///< elements of an aggregate (maps: key, value, key, ...)
    std::vector<tree> attributes;   ///< attribute pairs that came before this value

    friend bool operator==(const tree&, const tree&) = default;
};

/// Builds the tree of the message whose nodes are `nodes` (one complete message).
tree make_tree(std::span<const node_view> nodes);

/// Number of nodes the value starting at nodes[0] spans, attributes before it included.
std::size_t value_extent(std::span<const node_view> nodes) noexcept;

std::ostream& operator<<(std::ostream& os, const node& n);

}  // namespace redcoord::resp3
