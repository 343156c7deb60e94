#include <redcoord/response.hpp>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <charconv>
#include <cmath>
#include <limits>

namespace redcoord::detail {
namespace {

using boost::system::error_code;
using resp3::type;

// The scalar at nodes[i] after attributes, or nullptr with ec set.
const resp3::node_view* take_scalar(node_span nodes, std::size_t& i, error_code& ec) {
    skip_attributes(nodes, i);
    if (i >= nodes.size()) {
        ec = error::incompatible_size;
        return nullptr;
    }
    const auto& n = nodes[i];
    if (resp3::is_error(n.data_type)) {
        ec = error::server_error;
        skip_value(nodes, i);
        return nullptr;
    }
    if (n.data_type == type::null) {
        ec = error::unexpected_null;
        ++i;
        return nullptr;
    }
    if (resp3::is_aggregate(n.data_type)) {
        ec = error::unexpected_type;
        skip_value(nodes, i);
        return nullptr;
    }
    ++i;
    return &n;
}

// Verbatim strings carry a three-letter format and a colon before the text ("txt:...").
std::string_view text_of(const resp3::node_view& n) {
    return n.data_type == type::verbatim_string ? n.value.substr(4) : n.value;
}

template <class Int>
bool parse_int(std::string_view s, Int& out) {
    auto [p, e] = std::from_chars(s.data(), s.data() + s.size(), out);
    return e == std::errc{} && p == s.data() + s.size() && !s.empty();
}

bool parse_double(std::string_view s, double& out) {
    if (s == "inf" || s == "+inf") return out = std::numeric_limits<double>::infinity(), true;
    if (s == "-inf") return out = -std::numeric_limits<double>::infinity(), true;
    if (s == "nan" || s == "-nan") return out = std::numeric_limits<double>::quiet_NaN(), true;
    if (!s.empty() && s.front() == '+') s.remove_prefix(1);
    auto [p, e] = std::from_chars(s.data(), s.data() + s.size(), out);
    return e == std::errc{} && p == s.data() + s.size() && !s.empty();
}

}  // namespace

void skip_attributes(node_span nodes, std::size_t& i) noexcept {
    while (i < nodes.size() && nodes[i].data_type == type::attribute) {
        const std::size_t children = nodes[i++].aggregate_size * 2;
        for (std::size_t k = 0; k < children; ++k) skip_value(nodes, i);
    }
}

void skip_value(node_span nodes, std::size_t& i) noexcept {
    i += resp3::value_extent(nodes.subspan(std::min(i, nodes.size())));
}

bool take_null(node_span nodes, std::size_t& i) noexcept {
    skip_attributes(nodes, i);
    if (i < nodes.size() && nodes[i].data_type == type::null) {
        ++i;
        return true;
    }
    return false;
}

void convert_string(node_span nodes, std::size_t& i, std::string& out, error_code& ec) {
    if (auto n = take_scalar(nodes, i, ec)) out.assign(text_of(*n));
}

void convert_signed(node_span nodes, std::size_t& i, std::int64_t& out, error_code& ec) {
    if (auto n = take_scalar(nodes, i, ec))
        if (!parse_int(text_of(*n), out)) ec = error::not_a_number;
}

void convert_unsigned(node_span nodes, std::size_t& i, std::uint64_t& out, error_code& ec) {
    if (auto n = take_scalar(nodes, i, ec))
        if (!parse_int(text_of(*n), out)) ec = error::not_a_number;
}

void convert_double(node_span nodes, std::size_t& i, double& out, error_code& ec) {
    if (auto n = take_scalar(nodes, i, ec))
        if (!parse_double(text_of(*n), out)) ec = error::not_a_number;
}

void convert_bool(node_span nodes, std::size_t& i, bool& out, error_code& ec) {
    auto n = take_scalar(nodes, i, ec);
    if (!n) return;
    const auto v = text_of(*n);
    if (n->data_type == type::boolean)
        out = (v == "t");
    else if (v == "1" || v == "OK")
        out = true;
    else if (v == "0")
        out = false;
    else
        ec = error::unexpected_type;
}

std::size_t open_aggregate(node_span nodes, std::size_t& i, bool want_map, error_code& ec) {
    skip_attributes(nodes, i);
    if (i >= nodes.size()) {
        ec = error::incompatible_size;
        return 0;
    }
    const auto& n = nodes[i];
    if (resp3::is_error(n.data_type)) {
        ec = error::server_error;
        skip_value(nodes, i);
        return 0;
    }
    if (n.data_type == type::null) {
        ec = error::unexpected_null;
        ++i;
        return 0;
    }
    const bool is_map = n.data_type == type::map;
    const bool is_seq =
        n.data_type == type::array || n.data_type == type::set || n.data_type == type::push;
    if (want_map) {
        // A map, or (RESP2 style, e.g. HGETALL through a proxy) a flat array of pairs.
        if (is_map) return ++i, n.aggregate_size;
        if (is_seq && n.aggregate_size % 2 == 0) return ++i, n.aggregate_size / 2;
    } else {
        if (is_seq) return ++i, n.aggregate_size;
    }
    ec = error::unexpected_type;
    skip_value(nodes, i);
    return 0;
}

namespace {

boost::json::value json_of(node_span nodes, std::size_t& i, error_code& ec) {
    skip_attributes(nodes, i);
    if (i >= nodes.size()) {
        ec = error::incompatible_size;
        return nullptr;
    }
    const auto& n = nodes[i];
    switch (n.data_type) {
        case type::null: ++i; return nullptr;
        case type::boolean: ++i; return n.value == "t";
        case type::number: {
            ++i;
            std::int64_t v = 0;
            parse_int(n.value, v);
            return v;
        }
        case type::doublean: {
            ++i;
            double v = 0;
            parse_double(n.value, v);
            return v;
        }
        case type::simple_error:
        case type::blob_error: ec = error::server_error; skip_value(nodes, i); return nullptr;
        case type::map:
        case type::attribute: {
            ++i;
            boost::json::object obj;
            for (std::size_t k = 0; k < n.aggregate_size && !ec; ++k) {
                std::string key;
                convert_string(nodes, i, key, ec);
                if (ec) break;
                obj[key] = json_of(nodes, i, ec);
            }
            return obj;
        }
        case type::array:
        case type::set:
        case type::push: {
            ++i;
            boost::json::array arr;
            arr.reserve(n.aggregate_size);
            for (std::size_t k = 0; k < n.aggregate_size && !ec; ++k)
                arr.push_back(json_of(nodes, i, ec));
            return arr;
        }
        default: ++i; return boost::json::string(text_of(n));
    }
}

}  // namespace

void convert_json(node_span nodes, std::size_t& i, boost::json::value& out, error_code& ec) {
    out = json_of(nodes, i, ec);
}

}  // namespace redcoord::detail
