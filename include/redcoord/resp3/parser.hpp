// Incremental, sans-io RESP3 parser.
#pragma once

#include <redcoord/resp3/node.hpp>

#include <boost/system/error_code.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace redcoord::resp3 {

/// Bounds on what the parser accepts; input past them is an error, not an allocation.
struct parser_limits {
    std::size_t max_depth = 32;                          ///< nesting of aggregates
    std::size_t max_bulk_size = 512u * 1024 * 1024;      ///< bytes of one string or line
    std::size_t max_aggregate_size = 64u * 1024 * 1024;  ///< elements of one aggregate
};

/// Parses one RESP3 message at a time from input of any fragmentation.
///
/// Feed it bytes with consume(); it returns how many it used. Bytes it did not use (an
/// incomplete header line) must be offered again, with more data appended. When done() is
/// true, message() holds the complete message as pre-order nodes; clear() starts the next one.
/// Malformed input sets ec (error::protocol_error, depth_exceeded, size_exceeded); the parser
/// must then be cleared before further use. Never allocates beyond the limits.
class parser {
public:
    explicit parser(parser_limits limits = {}) : limits_(limits) {}

    std::size_t consume(std::string_view data, boost::system::error_code& ec);

    bool done() const noexcept { return state_ == state::done; }

    /// The complete message; valid until the next consume() or clear().
    std::span<const node_view> message();

    /// Forgets the current message (complete or not) and any error.
    void clear() noexcept;

    const parser_limits& limits() const noexcept { return limits_; }

private:
    enum class state : std::uint8_t { header, bulk, bulk_crlf, chunk_header, done };

    struct raw_node {
        type data_type;
        std::size_t aggregate_size;
        std::size_t depth;
        std::size_t offset;  // into arena_
        std::size_t length;
    };
    struct frame {
        std::size_t node_index;  // the aggregate's node, patched when a streamed one ends
        std::size_t remaining;   // children still expected (unused when streamed)
        std::size_t count;       // children seen (streamed aggregates only)
        bool streamed;
        bool attribute;
    };

    bool on_header(std::string_view line, boost::system::error_code& ec);
    bool open_aggregate(type t, std::string_view len, boost::system::error_code& ec);
    bool open_string(type t, std::string_view len, boost::system::error_code& ec);
    void push_scalar(type t, std::string_view value);
    void value_completed();
    void aggregate_completed(bool attribute);
    std::size_t current_depth() const noexcept { return stack_.size(); }
    // Simple strings and errors live on one line; 1 MiB is far beyond any the server sends.
    std::size_t max_line_size() const noexcept {
        return std::min<std::size_t>(limits_.max_bulk_size, 1024 * 1024) + 32;
    }

    parser_limits limits_;
    state state_ = state::header;
    std::string arena_;
    std::vector<raw_node> nodes_;
    std::vector<frame> stack_;
    std::vector<node_view> views_;
    std::size_t bulk_remaining_ = 0;
    bool streamed_string_ = false;   // the bulk being read is a chunk of a streamed string
    // An attribute has ended and the value it describes has not started yet.
    bool attribute_pending_ = false;
};

}  // namespace redcoord::resp3
