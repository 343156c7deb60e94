#include <redcoord/error.hpp>
#include <redcoord/resp3/parser.hpp>

#include <charconv>
#include <cstring>
#include <limits>

namespace redcoord::resp3 {
namespace {

using boost::system::error_code;

bool fail(error_code& ec, error e) {
    ec = e;
    return false;
}

// A length or count: decimal digits only, no sign (negative lengths are handled by callers).
bool parse_size(std::string_view s, std::size_t& out) {
    if (s.empty() || s.size() > 19) return false;
    auto [p, e] = std::from_chars(s.data(), s.data() + s.size(), out);
    return e == std::errc{} && p == s.data() + s.size();
}

bool valid_integer(std::string_view s) {
    std::int64_t v;
    if (s.empty()) return false;
    auto [p, e] = std::from_chars(s.data(), s.data() + s.size(), v);
    return e == std::errc{} && p == s.data() + s.size();
}

bool valid_double(std::string_view s) {
    if (s == "inf" || s == "-inf" || s == "+inf" || s == "nan" || s == "-nan") return true;
    if (s.empty()) return false;
    if (s.front() == '+') s.remove_prefix(1);
    double v;
    auto [p, e] = std::from_chars(s.data(), s.data() + s.size(), v);
    return (e == std::errc{} || e == std::errc::result_out_of_range) && p == s.data() + s.size();
}

bool valid_big_number(std::string_view s) {
    if (!s.empty() && (s.front() == '-' || s.front() == '+')) s.remove_prefix(1);
    if (s.empty()) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}


}  // namespace

std::size_t parser::consume(std::string_view data, error_code& ec) {
    std::size_t pos = 0;
    while (state_ != state::done) {
        if (state_ == state::bulk) {
            std::size_t n = std::min(bulk_remaining_, data.size() - pos);
            if (!discarding_) {
                arena_.append(data.data() + pos, n);
                nodes_.back().length += static_cast<std::uint32_t>(n);
            }
            pos += n;
            bulk_remaining_ -= n;
            if (bulk_remaining_ != 0) return pos;
            state_ = state::bulk_crlf;
        }
        if (state_ == state::bulk_crlf) {
            if (data.size() - pos < 2) return pos;
            if (data[pos] != '\r' || data[pos + 1] != '\n') {
                ec = error::protocol_error;
                return pos;
            }
            pos += 2;
            if (streamed_string_) {
                state_ = state::chunk_header;
            } else {
                state_ = state::header;
                value_completed();
            }
            continue;
        }
        // A header line: state::header or state::chunk_header.
        auto rest = data.substr(pos);
        auto eol = rest.find("\r\n");
        if (eol == std::string_view::npos) {
            // A header line longer than any we accept is malformed, not worth waiting for.
            // The last byte may be the '\r' of its CRLF, so it does not count.
            if (rest.size() > max_line_size() + 1) ec = error::size_exceeded;
            return pos;
        }
        auto line = rest.substr(0, eol);
        pos += eol + 2;
        // The same limit when the whole line arrived at once: otherwise a long line would be
        // accepted or refused depending on how the input happened to be split.
        if (line.size() > max_line_size()) {
            ec = error::size_exceeded;
            return pos;
        }
        if (line.empty()) {
            ec = error::protocol_error;
            return pos;
        }
        if (state_ == state::chunk_header) {
            std::size_t len = 0;
            if (line[0] != ';' || !parse_size(line.substr(1), len)) {
                ec = error::protocol_error;
                return pos;
            }
            if (len == 0) {
                streamed_string_ = false;
                state_ = state::header;
                value_completed();
                continue;
            }
            if (streamed_length_ + len > limits_.max_bulk_size) {
                ec = error::size_exceeded;
                return pos;
            }
            streamed_length_ += len;
            bulk_remaining_ = len;
            if (!discarding_ && memory() + len > limits_.max_message_size) start_discarding();
            state_ = state::bulk;
            continue;
        }
        if (!on_header(line, ec)) return pos;
    }
    return pos;
}

bool parser::on_header(std::string_view line, error_code& ec) {
    const char marker = line[0];
    const auto body = line.substr(1);
    // A streamed aggregate announces no size, so max_aggregate_size is enforced as its
    // elements arrive: this line would start one more.
    if (marker != '.' && !stack_.empty() && stack_.back().streamed) {
        const auto mult = element_multiplicity(stack_.back().data_type);
        if (stack_.back().count >= limits_.max_aggregate_size * mult)
            return fail(ec, error::size_exceeded);
    }
    if (marker != '.') attribute_pending_ = false;
    switch (marker) {
        case '+': push_scalar(type::simple_string, body); break;
        case '-': push_scalar(type::simple_error, body); break;
        case ':':
            if (!valid_integer(body)) return fail(ec, error::protocol_error);
            push_scalar(type::number, body);
            break;
        case ',':
            if (!valid_double(body)) return fail(ec, error::protocol_error);
            push_scalar(type::doublean, body);
            break;
        case '(':
            if (!valid_big_number(body)) return fail(ec, error::protocol_error);
            push_scalar(type::big_number, body);
            break;
        case '#':
            if (body != "t" && body != "f") return fail(ec, error::protocol_error);
            push_scalar(type::boolean, body);
            break;
        case '_':
            if (!body.empty()) return fail(ec, error::protocol_error);
            push_scalar(type::null, {});
            break;
        case '$': return open_string(type::blob_string, body, ec);
        case '!': return open_string(type::blob_error, body, ec);
        case '=': return open_string(type::verbatim_string, body, ec);
        case '*': return open_aggregate(type::array, body, ec);
        case '%': return open_aggregate(type::map, body, ec);
        case '~': return open_aggregate(type::set, body, ec);
        case '|': return open_aggregate(type::attribute, body, ec);
        case '>': return open_aggregate(type::push, body, ec);
        case '.': {
            // End of a streamed aggregate.
            if (!body.empty() || stack_.empty() || !stack_.back().streamed)
                return fail(ec, error::protocol_error);
            // An attribute describes the value after it: it cannot be the last thing in an
            // aggregate (its nodes would belong to no value).
            if (attribute_pending_) return fail(ec, error::protocol_error);
            frame f = stack_.back();
            const auto mult = element_multiplicity(f.data_type);
            if (f.count % mult != 0) return fail(ec, error::protocol_error);
            if (!discarding_)
                nodes_[f.node_index].aggregate_size = static_cast<std::uint32_t>(f.count / mult);
            stack_.pop_back();
            aggregate_completed(f.attribute);
            return true;
        }
        default: return fail(ec, error::protocol_error);
    }
    return true;
}

bool parser::open_string(type t, std::string_view len, error_code& ec) {
    if (len == "-1" && t == type::blob_string) {  // RESP2 null bulk string
        push_scalar(type::null, {});
        return true;
    }
    if (current_depth() > limits_.max_depth) return fail(ec, error::depth_exceeded);
    if (len == "?") {  // streamed string: ";len" chunks until ";0"
        if (t != type::blob_string) return fail(ec, error::protocol_error);
        add_node(t, 1, arena_.size(), 0);
        streamed_string_ = true;
        streamed_length_ = 0;
        state_ = state::chunk_header;
        return true;
    }
    std::size_t n = 0;
    if (!parse_size(len, n)) return fail(ec, error::protocol_error);
    if (n > limits_.max_bulk_size) return fail(ec, error::size_exceeded);
    if (t == type::verbatim_string && n < 4) return fail(ec, error::protocol_error);
    add_node(t, 1, arena_.size(), 0);
    if (!discarding_ && memory() + n > limits_.max_message_size) start_discarding();
    bulk_remaining_ = n;
    streamed_string_ = false;
    state_ = state::bulk;
    return true;
}

bool parser::open_aggregate(type t, std::string_view len, error_code& ec) {
    if (len == "-1" && t == type::array) {  // RESP2 null array
        push_scalar(type::null, {});
        return true;
    }
    if (current_depth() + 1 > limits_.max_depth) return fail(ec, error::depth_exceeded);
    const bool streamed = (len == "?");
    std::size_t n = 0;
    if (!streamed) {
        if (!parse_size(len, n)) return fail(ec, error::protocol_error);
        if (n > limits_.max_aggregate_size) return fail(ec, error::size_exceeded);
    }
    add_node(t, n, arena_.size(), 0);
    const bool attribute = (t == type::attribute);
    if (!streamed && n == 0) {
        aggregate_completed(attribute);
        return true;
    }
    stack_.push_back(
        {nodes_.size() - 1, n * element_multiplicity(t), 0, t, streamed, attribute});
    return true;
}

void parser::push_scalar(type t, std::string_view value) {
    if (!discarding_) {
        const std::size_t offset = arena_.size();
        arena_.append(value);
        add_node(t, 1, offset, value.size());
    }
    value_completed();
}

void parser::add_node(type t, std::size_t aggregate_size, std::size_t offset,
                      std::size_t length) {
    if (discarding_) return;
    nodes_.push_back({offset, static_cast<std::uint32_t>(length),
                      static_cast<std::uint32_t>(aggregate_size),
                      static_cast<std::uint16_t>(current_depth()), t});
    if (memory() > limits_.max_message_size) start_discarding();
}

// Past the limit: what the message holds is freed now, and the rest is only counted.
void parser::start_discarding() {
    discarding_ = true;
    std::string().swap(arena_);
    std::vector<raw_node>().swap(nodes_);
}

// An aggregate ended. An attribute is not a value: the value it describes is still to come.
void parser::aggregate_completed(bool attribute) {
    if (attribute)
        attribute_pending_ = true;
    else
        value_completed();
}

void parser::value_completed() {
    // Walk up: each finished value may finish the aggregate it belongs to.
    while (!stack_.empty()) {
        frame& f = stack_.back();
        if (f.streamed) {
            ++f.count;
            return;
        }
        if (--f.remaining != 0) return;
        const bool attribute = f.attribute;
        stack_.pop_back();
        if (attribute) {  // an attribute is not an element of its parent
            attribute_pending_ = true;
            return;
        }
    }
    // The top-level value is complete, unless it was an attribute (handled above: attributes
    // return before reaching here), so the message is done.
    state_ = state::done;
}

std::span<const node_view> parser::message() {
    views_.clear();
    if (discarding_) return views_;
    views_.reserve(nodes_.size());
    for (const auto& n : nodes_)
        views_.push_back({n.data_type, n.aggregate_size, n.depth,
                          std::string_view(arena_).substr(n.offset, n.length)});
    return views_;
}

void parser::clear() noexcept {
    state_ = state::header;
    // A big message's buffers are given back rather than kept for the next, small one.
    constexpr std::size_t keep = 1024 * 1024;
    if (arena_.capacity() > keep) std::string().swap(arena_);
    if (nodes_.capacity() * sizeof(raw_node) > keep) std::vector<raw_node>().swap(nodes_);
    if (views_.capacity() * sizeof(node_view) > keep) std::vector<node_view>().swap(views_);
    arena_.clear();
    nodes_.clear();
    discarding_ = false;
    streamed_length_ = 0;
    stack_.clear();
    bulk_remaining_ = 0;
    streamed_string_ = false;
    attribute_pending_ = false;
}

}  // namespace redcoord::resp3
