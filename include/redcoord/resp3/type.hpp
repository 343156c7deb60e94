// The RESP3 data types.
#pragma once

#include <cstdint>
#include <string_view>

namespace redcoord::resp3 {

/// Every RESP3 type. Streamed strings arrive joined as one blob_string; streamed aggregates
/// arrive as the aggregate with its final size.
enum class type : std::uint8_t {
    simple_string,    // +
    simple_error,     // -
    number,           // :
    blob_string,      // $
    blob_error,       // !
    verbatim_string,  // =   (value keeps its "txt:" format prefix)
    doublean,         // ,
    big_number,       // (
    boolean,          // #   (value "t" or "f")
    null,             // _   (and RESP2 "$-1" / "*-1")
    array,            // *
    map,              // %
    set,              // ~
    attribute,        // |
    push,             // >
};

/// True for the aggregate types (their value is empty; their children follow them).
constexpr bool is_aggregate(type t) noexcept {
    return t == type::array || t == type::map || t == type::set || t == type::attribute ||
           t == type::push;
}

/// Children per element: 2 for map and attribute (key and value), 1 otherwise.
constexpr std::size_t element_multiplicity(type t) noexcept {
    return (t == type::map || t == type::attribute) ? 2 : 1;
}

constexpr bool is_error(type t) noexcept {
    return t == type::simple_error || t == type::blob_error;
}

/// The type's name, e.g. "blob_string".
std::string_view to_string(type t) noexcept;

}  // namespace redcoord::resp3
