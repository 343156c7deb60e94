#include <redcoord/resp3/node.hpp>

namespace redcoord::resp3 {

std::string_view to_string(type t) noexcept {
    switch (t) {
        case type::simple_string: return "simple_string";
        case type::simple_error: return "simple_error";
        case type::number: return "number";
        case type::blob_string: return "blob_string";
        case type::blob_error: return "blob_error";
        case type::verbatim_string: return "verbatim_string";
        case type::doublean: return "double";
        case type::big_number: return "big_number";
        case type::boolean: return "boolean";
        case type::null: return "null";
        case type::array: return "array";
        case type::map: return "map";
        case type::set: return "set";
        case type::attribute: return "attribute";
        case type::push: return "push";
    }
    return "unknown";
}

std::size_t value_extent(std::span<const node_view> nodes) noexcept {
    // Counts nodes until every opened aggregate has all its children (attributes included).
    std::size_t i = 0;
    std::size_t pending = 1;  // values still to read
    while (pending != 0 && i < nodes.size()) {
        const auto& n = nodes[i++];
        if (n.data_type == type::attribute) {
            pending += n.aggregate_size * 2;  // the attribute does not count as the value
            continue;
        }
        --pending;
        if (is_aggregate(n.data_type)) pending += n.aggregate_size * element_multiplicity(n.data_type);
    }
    return i;
}

namespace {

// Builds the tree of the value at nodes[i], advancing i past it.
tree build(std::span<const node_view> nodes, std::size_t& i) {
    std::vector<tree> attributes;
    while (i < nodes.size() && nodes[i].data_type == type::attribute) {
        const std::size_t pairs = nodes[i++].aggregate_size;
        for (std::size_t k = 0; k < pairs * 2; ++k) attributes.push_back(build(nodes, i));
    }
    tree t;
    t.attributes = std::move(attributes);
    if (i >= nodes.size()) return t;
    const auto& n = nodes[i++];
    t.data_type = n.data_type;
    if (is_aggregate(n.data_type)) {
        const std::size_t children = n.aggregate_size * element_multiplicity(n.data_type);
        t.children.reserve(children);
        for (std::size_t k = 0; k < children; ++k) t.children.push_back(build(nodes, i));
    } else {
        t.value.assign(n.value);
    }
    return t;
}

}  // namespace

tree make_tree(std::span<const node_view> nodes) {
    std::size_t i = 0;
    return build(nodes, i);
}

std::ostream& operator<<(std::ostream& os, const node& n) {
    return os << "{" << to_string(n.data_type) << ", size " << n.aggregate_size << ", depth "
              << n.depth << ", \"" << n.value << "\"}";
}

}  // namespace redcoord::resp3
