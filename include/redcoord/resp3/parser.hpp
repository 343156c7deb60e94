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
    /// Memory one message may take (its bytes plus a few dozen per node). A message past it
    /// is read to its end but not kept: done() with discarded() set.
    std::size_t max_message_size = std::size_t(1) << 30;
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
    /// Limits past what the node representation holds (4 Gi, depth 65535) are lowered to it.
    explicit parser(parser_limits limits = {}) : limits_(clamped(limits)) {}

    std::size_t consume(std::string_view data, boost::system::error_code& ec);

    bool done() const noexcept { return state_ == state::done; }

    /// The complete message; valid until the next consume() or clear(). Empty when the
    /// message was discarded.
    std::span<const node_view> message();

    /// The message was larger than limits().max_message_size: it was read to its end, its
    /// nodes dropped as soon as it passed the limit.
    bool discarded() const noexcept { return discarding_; }

    /// Memory the message being parsed holds, as max_message_size counts it.
    std::size_t memory() const noexcept {
        return arena_.size() + nodes_.size() * (sizeof(raw_node) + sizeof(node_view));
    }

    /// Forgets the current message (complete or not) and any error.
    void clear() noexcept;

    const parser_limits& limits() const noexcept { return limits_; }

private:
    enum class state : std::uint8_t { header, bulk, bulk_crlf, chunk_header, done };

    // 24 bytes: a reply of a million small elements costs tens of megabytes, not hundreds.
    struct raw_node {
        std::size_t offset;           // into arena_
        std::uint32_t length;         // max_bulk_size is below 4 GiB
        std::uint32_t aggregate_size; // max_aggregate_size is below 4 Gi
        std::uint16_t depth;
        type data_type;
    };
    struct frame {
        std::size_t node_index;  // the aggregate's node, patched when a streamed one ends
        std::size_t remaining;   // children still expected (unused when streamed)
        std::size_t count;       // children seen (streamed aggregates only)
        type data_type;
        bool streamed;
        bool attribute;
    };
    void add_node(type t, std::size_t aggregate_size, std::size_t offset, std::size_t length);
    void start_discarding();

    static parser_limits clamped(parser_limits l) noexcept {
        l.max_depth = std::min<std::size_t>(l.max_depth, 65535);
        l.max_bulk_size = std::min<std::size_t>(l.max_bulk_size, UINT32_MAX);
        l.max_aggregate_size = std::min<std::size_t>(l.max_aggregate_size, UINT32_MAX / 2);
        return l;
    }
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
    bool discarding_ = false;        // past max_message_size: nodes and bytes are not kept
    std::size_t streamed_length_ = 0;  // bytes of the streamed string so far
};

}  // namespace redcoord::resp3
