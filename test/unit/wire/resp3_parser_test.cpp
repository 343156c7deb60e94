// The RESP3 parser: every type, under every fragmentation; malformed input; limits; trees.
#include <redcoord/error.hpp>
#include <redcoord/resp3/node.hpp>
#include <redcoord/resp3/parser.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <ostream>
#include <set>
#include <string>
#include <string_view>
#include <vector>

using namespace std::string_literals;
using boost::system::error_code;
using redcoord::error;
using redcoord::resp3::node;
using redcoord::resp3::node_view;
using redcoord::resp3::parser;
using redcoord::resp3::parser_limits;
using redcoord::resp3::tree;
using redcoord::resp3::type;

namespace {

using message = std::vector<node>;

struct sample {
    std::string name;
    std::string input;
    message expected;
};

// A scalar node and an aggregate node, for the tables below.
node s(type t, std::size_t depth, std::string value) { return {t, 1, depth, std::move(value)}; }
node a(type t, std::size_t size, std::size_t depth) { return {t, size, depth, ""}; }

// One sample per shape the parser must handle; each input is exactly one message.
const std::vector<sample>& samples() {
    using enum type;
    static const std::vector<sample> table = {
        {"simple string", "+OK\r\n", {s(simple_string, 0, "OK")}},
        {"empty simple string", "+\r\n", {s(simple_string, 0, "")}},
        {"simple error",
         "-ERR unknown command 'foo'\r\n",
         {s(simple_error, 0, "ERR unknown command 'foo'")}},
        {"integer", ":1234\r\n", {s(number, 0, "1234")}},
        {"negative integer", ":-42\r\n", {s(number, 0, "-42")}},
        {"int64 min", ":-9223372036854775808\r\n", {s(number, 0, "-9223372036854775808")}},
        {"int64 max", ":9223372036854775807\r\n", {s(number, 0, "9223372036854775807")}},
        {"bulk string", "$5\r\nhello\r\n", {s(blob_string, 0, "hello")}},
        {"empty bulk string", "$0\r\n\r\n", {s(blob_string, 0, "")}},
        {"binary bulk string", "$7\r\n\r\na\0b\r\n\r\n"s, {s(blob_string, 0, "\r\na\0b\r\n"s)}},
        {"blob error",
         "!21\r\nSYNTAX invalid syntax\r\n",
         {s(blob_error, 0, "SYNTAX invalid syntax")}},
        {"verbatim string",
         "=15\r\ntxt:Some string\r\n",
         {s(verbatim_string, 0, "txt:Some string")}},
        {"verbatim string with CRLF inside",
         "=10\r\nmkd:a\r\nb\r\n\r\n",
         {s(verbatim_string, 0, "mkd:a\r\nb\r\n")}},
        {"double", ",1.23\r\n", {s(doublean, 0, "1.23")}},
        {"integral double", ",10\r\n", {s(doublean, 0, "10")}},
        {"double inf", ",inf\r\n", {s(doublean, 0, "inf")}},
        {"double -inf", ",-inf\r\n", {s(doublean, 0, "-inf")}},
        {"double nan", ",nan\r\n", {s(doublean, 0, "nan")}},
        {"double with exponent", ",1.5e10\r\n", {s(doublean, 0, "1.5e10")}},
        {"double with negative exponent", ",-2.5E-3\r\n", {s(doublean, 0, "-2.5E-3")}},
        {"big number",
         "(3492890328409238509324850943850943825024385\r\n",
         {s(big_number, 0, "3492890328409238509324850943850943825024385")}},
        {"negative big number",
         "(-3492890328409238509324850943850943825024385\r\n",
         {s(big_number, 0, "-3492890328409238509324850943850943825024385")}},
        {"true", "#t\r\n", {s(boolean, 0, "t")}},
        {"false", "#f\r\n", {s(boolean, 0, "f")}},
        {"null", "_\r\n", {s(null, 0, "")}},
        {"RESP2 null bulk string", "$-1\r\n", {s(null, 0, "")}},
        {"RESP2 null array", "*-1\r\n", {s(null, 0, "")}},
        {"array",
         "*3\r\n:1\r\n:2\r\n:3\r\n",
         {a(array, 3, 0), s(number, 1, "1"), s(number, 1, "2"), s(number, 1, "3")}},
        {"empty array", "*0\r\n", {a(array, 0, 0)}},
        {"nested array",
         "*2\r\n*3\r\n:1\r\n$1\r\nx\r\n_\r\n*0\r\n",
         {a(array, 2, 0), a(array, 3, 1), s(number, 2, "1"), s(blob_string, 2, "x"), s(null, 2, ""),
          a(array, 0, 1)}},
        {"RESP2 nulls inside an array",
         "*2\r\n$-1\r\n*-1\r\n",
         {a(array, 2, 0), s(null, 1, ""), s(null, 1, "")}},
        {"map",
         "%2\r\n+first\r\n:1\r\n+second\r\n*1\r\n#t\r\n",
         {a(map, 2, 0), s(simple_string, 1, "first"), s(number, 1, "1"),
          s(simple_string, 1, "second"), a(array, 1, 1), s(boolean, 2, "t")}},
        {"empty map", "%0\r\n", {a(map, 0, 0)}},
        {"set",
         "~3\r\n+a\r\n:1\r\n,2.5\r\n",
         {a(set, 3, 0), s(simple_string, 1, "a"), s(number, 1, "1"), s(doublean, 1, "2.5")}},
        {"attribute before a top-level value",
         "|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n"
         "*2\r\n:2039123\r\n:9543892\r\n",
         {a(attribute, 1, 0), s(simple_string, 1, "key-popularity"), a(map, 2, 1),
          s(blob_string, 2, "a"), s(doublean, 2, "0.1923"), s(blob_string, 2, "b"),
          s(doublean, 2, "0.0012"), a(array, 2, 0), s(number, 1, "2039123"),
          s(number, 1, "9543892")}},
        {"attribute nested in an array",
         "*3\r\n:1\r\n|1\r\n+ttl\r\n:3600\r\n:2\r\n:3\r\n",
         {a(array, 3, 0), s(number, 1, "1"), a(attribute, 1, 1), s(simple_string, 2, "ttl"),
          s(number, 2, "3600"), s(number, 1, "2"), s(number, 1, "3")}},
        {"empty attribute", "|0\r\n+x\r\n", {a(attribute, 0, 0), s(simple_string, 0, "x")}},
        {"push",
         ">3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$5\r\nhello\r\n",
         {a(push, 3, 0), s(blob_string, 1, "message"), s(blob_string, 1, "chan"),
          s(blob_string, 1, "hello")}},
        {"push with nested aggregates",
         ">2\r\n+invalidate\r\n*1\r\n%1\r\n+k\r\n~1\r\n_\r\n",
         {a(push, 2, 0), s(simple_string, 1, "invalidate"), a(array, 1, 1), a(map, 1, 2),
          s(simple_string, 3, "k"), a(set, 1, 3), s(null, 4, "")}},
        {"streamed string",
         "$?\r\n;4\r\nHell\r\n;5\r\no wor\r\n;2\r\nld\r\n;0\r\n",
         {s(blob_string, 0, "Hello world")}},
        {"streamed string with CRLF and NUL in chunks",
         "$?\r\n;3\r\na\r\n\r\n;1\r\n\0\r\n;0\r\n"s,
         {s(blob_string, 0, "a\r\n\0"s)}},
        {"empty streamed string", "$?\r\n;0\r\n", {s(blob_string, 0, "")}},
        {"streamed array",
         "*?\r\n:1\r\n:2\r\n:3\r\n.\r\n",
         {a(array, 3, 0), s(number, 1, "1"), s(number, 1, "2"), s(number, 1, "3")}},
        {"empty streamed array", "*?\r\n.\r\n", {a(array, 0, 0)}},
        {"streamed map",
         "%?\r\n+a\r\n:1\r\n+b\r\n*?\r\n.\r\n.\r\n",
         {a(map, 2, 0), s(simple_string, 1, "a"), s(number, 1, "1"), s(simple_string, 1, "b"),
          a(array, 0, 1)}},
        {"streamed set",
         "~?\r\n+x\r\n$?\r\n;1\r\ny\r\n;0\r\n.\r\n",
         {a(set, 2, 0), s(simple_string, 1, "x"), s(blob_string, 1, "y")}},
        {"streamed attribute",
         "|?\r\n+a\r\n+b\r\n.\r\n+real\r\n",
         {a(attribute, 1, 0), s(simple_string, 1, "a"), s(simple_string, 1, "b"),
          s(simple_string, 0, "real")}},
        {"streamed aggregates nested, with an attribute",
         "*?\r\n|1\r\n+k\r\n+v\r\n%?\r\n+f\r\n~?\r\n.\r\n.\r\n.\r\n",
         {a(array, 1, 0), a(attribute, 1, 1), s(simple_string, 2, "k"), s(simple_string, 2, "v"),
          a(map, 1, 1), s(simple_string, 2, "f"), a(set, 0, 2)}},
        {"long simple string",
         "+" + std::string(1000, 'x') + "\r\n",
         {s(simple_string, 0, std::string(1000, 'x'))}},
    };
    return table;
}

// What feeding some input produced: the complete messages and the error, if any.
struct outcome {
    std::vector<message> messages;
    error_code ec;
    std::size_t unconsumed = 0;  // bytes still held back at the end (not part of ==)

    friend bool operator==(const outcome& x, const outcome& y) {
        return x.messages == y.messages && x.ec == y.ec;
    }
    friend std::ostream& operator<<(std::ostream& os, const outcome& o) {
        os << o.messages.size() << " message(s)";
        for (const auto& m : o.messages) {
            os << "\n  [";
            for (const auto& n : m) os << " " << n;
            os << " ]";
        }
        return os << "\n  ec: " << o.ec.message() << ", unconsumed: " << o.unconsumed;
    }
};

outcome success(std::vector<message> messages) { return {std::move(messages), {}}; }
outcome failure(error e) { return {{}, e}; }

// Feeds the pieces one after another, keeping what the parser did not consume and offering it
// again with the next piece: the protocol of the connection and of the fuzz target.
outcome parse_pieces(const std::vector<std::string_view>& pieces, parser_limits limits = {}) {
    parser p(limits);
    outcome out;
    std::string pending;
    for (auto piece : pieces) {
        pending.append(piece);
        while (!pending.empty() && !out.ec) {
            const std::size_t n = p.consume(pending, out.ec);
            pending.erase(0, n);
            if (p.done()) {
                const auto msg = p.message();
                out.messages.emplace_back(msg.begin(), msg.end());
                p.clear();
            } else if (n == 0) {
                break;
            }
        }
        if (out.ec) break;
    }
    out.unconsumed = pending.size();
    return out;
}

outcome parse_whole(std::string_view input, parser_limits limits = {}) {
    return parse_pieces({input}, limits);
}

outcome parse_split(std::string_view input, std::size_t at, parser_limits limits = {}) {
    return parse_pieces({input.substr(0, at), input.substr(at)}, limits);
}

// The input cut into pieces of `size` bytes (the last one may be shorter).
outcome parse_chunked(std::string_view input, std::size_t size, parser_limits limits = {}) {
    std::vector<std::string_view> pieces;
    for (std::size_t pos = 0; pos < input.size(); pos += size)
        pieces.push_back(input.substr(pos, size));
    return parse_pieces(pieces, limits);
}

// Every way of feeding `input` (whole, split at each point, in chunks of 1 to 7 bytes) gives
// `want`.
void check_every_fragmentation(std::string_view input, const outcome& want,
                               parser_limits limits = {}) {
    CHECK(parse_whole(input, limits) == want);
    for (std::size_t at = 0; at <= input.size(); ++at) {
        INFO("split at " << at);
        const outcome got = parse_split(input, at, limits);
        CHECK(got == want);
        if (got != want) break;  // the first split that differs says it all
    }
    for (std::size_t size = 1; size <= 7; ++size) {
        INFO("chunks of " << size);
        const outcome got = parse_chunked(input, size, limits);
        CHECK(got == want);
        if (got != want) break;
    }
}

std::string all_samples_back_to_back() {
    std::string input;
    for (const auto& smp : samples()) input += smp.input;
    return input;
}

std::vector<message> all_samples_expected() {
    std::vector<message> messages;
    for (const auto& smp : samples()) messages.push_back(smp.expected);
    return messages;
}

}  // namespace

TEST_CASE("parser: each sample gives its nodes", "[unit][resp3]") {
    for (const auto& smp : samples()) {
        INFO(smp.name);
        const outcome got = parse_whole(smp.input);
        CHECK(got == success({smp.expected}));
        CHECK(got.unconsumed == 0);
    }
}

TEST_CASE("parser: the samples cover every RESP3 type", "[unit][resp3]") {
    std::set<type> seen;
    for (const auto& smp : samples())
        for (const auto& n : smp.expected) seen.insert(n.data_type);
    for (int t = 0; t <= static_cast<int>(type::push); ++t) {
        INFO(to_string(static_cast<type>(t)));
        CHECK(seen.count(static_cast<type>(t)) == 1);
    }
}

TEST_CASE("parser: every split point and byte-by-byte feeding give the same nodes",
          "[unit][resp3]") {
    for (const auto& smp : samples()) {
        INFO(smp.name);
        check_every_fragmentation(smp.input, success({smp.expected}));
    }
}

TEST_CASE("parser: several messages back to back in one buffer", "[unit][resp3]") {
    const std::string input = all_samples_back_to_back();
    const outcome want = success(all_samples_expected());
    check_every_fragmentation(input, want);
}

TEST_CASE("parser: an incomplete header line is left unconsumed", "[unit][resp3]") {
    parser p;
    error_code ec;
    CHECK(p.consume("$5\r", ec) == 0);
    CHECK_FALSE(ec);
    CHECK_FALSE(p.done());
    CHECK(p.consume("$5\r\nhel", ec) == 7);
    CHECK_FALSE(p.done());
    CHECK(p.consume("lo\r\n+next\r\n", ec) == 4);  // stops at the end of the message
    REQUIRE(p.done());
    CHECK(message(p.message().begin(), p.message().end()) ==
          message{s(type::blob_string, 0, "hello")});
    p.clear();
    CHECK(p.consume("+next\r\n", ec) == 7);
    CHECK(p.done());
    CHECK_FALSE(ec);
}

TEST_CASE("parser: malformed input is a protocol error under any fragmentation", "[unit][resp3]") {
    struct bad {
        std::string name, input;
    };
    const std::vector<bad> table = {
        {"unknown marker", "@foo\r\n"},
        {"unknown marker inside an array", "*2\r\n:1\r\n?\r\n"},
        {"empty line", "\r\n"},
        {"integer with letters", ":12a\r\n"},
        {"empty integer", ":\r\n"},
        {"integer overflow", ":9223372036854775808\r\n"},
        {"double with two dots", ",1.2.3\r\n"},
        {"empty double", ",\r\n"},
        {"double that is a word", ",abc\r\n"},
        {"big number with letters", "(12a\r\n"},
        {"empty big number", "(\r\n"},
        {"bulk length with letters", "$abc\r\n"},
        {"empty bulk length", "$\r\n"},
        {"bulk length with a space", "$ 3\r\n"},
        {"array count with letters", "*1x\r\n"},
        {"missing CRLF after a bulk", "$3\r\nabcd\r\n"},
        {"missing CRLF after a blob error", "!1\r\nab\r\n"},
        {"missing CRLF after a chunk", "$?\r\n;2\r\nabc\r\n"},
        {"chunk header without ;", "$?\r\n2\r\nab\r\n"},
        {"chunk length with letters", "$?\r\n;x\r\n"},
        {"negative chunk length", "$?\r\n;-1\r\n"},
        {"streamed blob error", "!?\r\n"},
        {"streamed verbatim string", "=?\r\n"},
        {". outside any aggregate", ".\r\n"},
        {". inside a sized array", "*1\r\n.\r\n"},
        {". ending a sized array in a streamed one", "*?\r\n*1\r\n.\r\n"},
        {". with a body", "*?\r\n.x\r\n"},
        {"boolean x", "#x\r\n"},
        {"empty boolean", "#\r\n"},
        {"boolean true", "#true\r\n"},
        {"non-empty null", "_x\r\n"},
        {"verbatim shorter than 4", "=3\r\ntxt\r\n"},
        {"odd number of elements in a streamed map", "%?\r\n+a\r\n.\r\n"},
        {"odd number of elements in a streamed attribute", "|?\r\n+a\r\n.\r\n"},
        // Regressions: an attribute with no value after it, ending a streamed aggregate.
        {"attribute ending a streamed array", "*?\r\n|1\r\n+\r\n+\r\n.\r\n"},
        {"empty attribute ending a streamed set", "~?\r\n:1\r\n|0\r\n.\r\n"},
        {"streamed attribute ending a streamed map", "%?\r\n+k\r\n|?\r\n.\r\n.\r\n"},
        {"bulk length -2", "$-2\r\n"},
        {"array count -2", "*-2\r\n"},
        {"map count -1", "%-1\r\n"},
        {"set count -1", "~-1\r\n"},
        {"push count -1", ">-1\r\n"},
        {"attribute count -1", "|-1\r\n"},
        {"blob error length -1", "!-1\r\n"},
        {"verbatim length -1", "=-1\r\n"},
    };
    for (const auto& b : table) {
        INFO(b.name);
        check_every_fragmentation(b.input, failure(error::protocol_error));
    }
}

TEST_CASE("parser: a cleared parser recovers from an error", "[unit][resp3]") {
    parser p;
    error_code ec;
    p.consume("#x\r\n", ec);
    REQUIRE(ec == error::protocol_error);
    p.clear();
    ec.clear();
    CHECK(p.consume("#t\r\n", ec) == 4);
    CHECK_FALSE(ec);
    CHECK(p.done());
}

TEST_CASE("parser: nesting deeper than max_depth", "[unit][resp3]") {
    const parser_limits limits{.max_depth = 2};
    CHECK(parse_whole("*1\r\n*1\r\n:1\r\n", limits).messages.size() == 1);
    CHECK(parse_whole("*1\r\n%1\r\n+k\r\n$?\r\n;1\r\nv\r\n;0\r\n", limits).messages.size() == 1);
    for (std::string input : {"*1\r\n*1\r\n*1\r\n:1\r\n", "%1\r\n+k\r\n*1\r\n*1\r\n:1\r\n",
                              "|1\r\n+k\r\n*1\r\n*1\r\n:1\r\n", "*?\r\n*?\r\n*?\r\n"}) {
        INFO(input);
        check_every_fragmentation(input, failure(error::depth_exceeded), limits);
    }
}

TEST_CASE("parser: a bulk longer than max_bulk_size fails before its payload arrives",
          "[unit][resp3]") {
    const parser_limits limits{.max_bulk_size = 16};
    const std::string sixteen(16, 'x');
    CHECK(parse_whole("$16\r\n" + sixteen + "\r\n", limits) ==
          success({{s(type::blob_string, 0, sixteen)}}));
    CHECK(
        parse_whole("$?\r\n;10\r\n0123456789\r\n;6\r\nabcdef\r\n;0\r\n", limits).messages.size() ==
        1);

    // Only the header is fed: the error comes without waiting for (or storing) the payload.
    for (std::string header :
         {"$17\r\n", "!17\r\n", "=17\r\n", "$?\r\n;10\r\n0123456789\r\n;7\r\n"}) {
        INFO(header);
        check_every_fragmentation(header, failure(error::size_exceeded), limits);
    }
    // With the default limits, a length of 600 MB is refused as it is read.
    parser p;
    error_code ec;
    CHECK(p.consume("$600000000\r\n", ec) == 12);
    CHECK(ec == error::size_exceeded);
}

TEST_CASE("parser: an aggregate larger than max_aggregate_size", "[unit][resp3]") {
    const parser_limits limits{.max_aggregate_size = 4};
    CHECK(parse_whole("*4\r\n:1\r\n:2\r\n:3\r\n:4\r\n", limits).messages.size() == 1);
    CHECK(parse_whole("*?\r\n:1\r\n:2\r\n:3\r\n:4\r\n.\r\n", limits).messages.size() == 1);
    CHECK(parse_whole("%?\r\n:1\r\n:2\r\n:3\r\n:4\r\n:5\r\n:6\r\n:7\r\n:8\r\n.\r\n", limits)
              .messages.size() == 1);
    for (std::string input :
         {"*5\r\n", "%5\r\n", "~5\r\n", ">5\r\n", "|5\r\n",
          "*?\r\n:1\r\n:2\r\n:3\r\n:4\r\n:5\r\n.\r\n",
          "%?\r\n:1\r\n:2\r\n:3\r\n:4\r\n:5\r\n:6\r\n:7\r\n:8\r\n:9\r\n:10\r\n.\r\n",
          "~?\r\n*?\r\n.\r\n*0\r\n_\r\n+a\r\n$-1\r\n"}) {
        INFO(input);
        check_every_fragmentation(input, failure(error::size_exceeded), limits);
    }
}

TEST_CASE("parser: a header line longer than the line limit", "[unit][resp3]") {
    // With max_bulk_size 16 the line limit is a few dozen bytes.
    const parser_limits limits{.max_bulk_size = 16};
    const std::string endless = "+" + std::string(200, 'a');
    CHECK(parse_whole(endless, limits) == failure(error::size_exceeded));
    CHECK(parse_chunked(endless, 1, limits) == failure(error::size_exceeded));

    // A short unfinished line is just waiting for more.
    const outcome waiting = parse_whole("+aaaa", limits);
    CHECK(waiting == success({}));
    CHECK(waiting.unconsumed == 5);

    // Around the limit, a complete line gets the same verdict however it arrives.
    for (std::size_t length = 1; length <= 80; ++length) {
        INFO("line of " << length << " bytes");
        const std::string line = "+" + std::string(length, 'b') + "\r\n";
        check_every_fragmentation(line, parse_whole(line, limits), limits);
    }
    CHECK(parse_whole("+" + std::string(200, 'c') + "\r\n", limits) ==
          failure(error::size_exceeded));

    // The default limit: a line that never ends is refused once it passes 1 MiB or so.
    CHECK(parse_whole("+" + std::string(2 * 1024 * 1024, 'd')) == failure(error::size_exceeded));
}

TEST_CASE("parser: make_tree and value_extent on nested samples with attributes", "[unit][resp3]") {
    using enum type;
    const auto leaf = [](type t, std::string v) { return tree{t, std::move(v), {}, {}}; };

    SECTION("attribute before a top-level value") {
        parser p;
        error_code ec;
        p.consume(
            "|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n"
            "*2\r\n:2039123\r\n:9543892\r\n",
            ec);
        REQUIRE(p.done());
        const auto msg = p.message();
        const tree want{array,
                        "",
                        {leaf(number, "2039123"), leaf(number, "9543892")},
                        {leaf(simple_string, "key-popularity"),
                         tree{map,
                              "",
                              {leaf(blob_string, "a"), leaf(doublean, "0.1923"),
                               leaf(blob_string, "b"), leaf(doublean, "0.0012")},
                              {}}}};
        CHECK(make_tree(msg) == want);
        CHECK(value_extent(msg) == msg.size());
        CHECK(value_extent(msg.subspan(1)) == 1);  // the attribute's key
        CHECK(value_extent(msg.subspan(2)) == 5);  // the attribute's value (a map)
        CHECK(value_extent(msg.subspan(7)) == 3);  // the real value
    }
    SECTION("attributes nested in an aggregate") {
        parser p;
        error_code ec;
        p.consume("*2\r\n|1\r\n+ttl\r\n:3600\r\n%1\r\n+k\r\n|1\r\n+a\r\n~0\r\n+v\r\n:2\r\n", ec);
        REQUIRE(p.done());
        const auto msg = p.message();
        // [array, attribute, ttl, 3600, map, k, attribute, a, set, v, 2]
        REQUIRE(msg.size() == 11);
        tree value = leaf(simple_string, "v");
        value.attributes = {leaf(simple_string, "a"), tree{set, "", {}, {}}};
        tree inner{map, "", {leaf(simple_string, "k"), value}, {}};
        inner.attributes = {leaf(simple_string, "ttl"), leaf(number, "3600")};
        const tree want{array, "", {inner, leaf(number, "2")}, {}};
        CHECK(make_tree(msg) == want);

        const std::vector<std::size_t> extents = {11, 9, 1, 1, 6, 1, 4, 1, 1, 1, 1};
        for (std::size_t i = 0; i < msg.size(); ++i) {
            INFO("node " << i);
            CHECK(value_extent(msg.subspan(i)) == extents[i]);
        }
    }
}

TEST_CASE("parser: a message past max_message_size is read to its end and dropped",
          "[unit][resp3]") {
    parser_limits limits;
    limits.max_message_size = 4096;
    parser p(limits);
    std::string big = "*1000\r\n";
    for (int i = 0; i < 1000; ++i) big += "$5\r\nhello\r\n";
    const std::string next = "+OK\r\n";
    const std::string input = big + next;
    // Fed a few bytes at a time: the dropped message still ends exactly where it ends.
    std::size_t at = 0;
    error_code ec;
    while (!p.done()) {
        const auto piece = std::string_view(input).substr(at, std::min<std::size_t>(7, big.size() - at));
        at += p.consume(piece, ec);
        REQUIRE_FALSE(ec);
    }
    CHECK(at == big.size());
    CHECK(p.discarded());
    CHECK(p.message().empty());
    CHECK(p.memory() == 0);  // freed as soon as it passed the limit
    p.clear();
    CHECK_FALSE(p.discarded());
    at += p.consume(std::string_view(input).substr(at), ec);
    REQUIRE(p.done());
    REQUIRE(p.message().size() == 1);
    CHECK(p.message()[0].value == "OK");

    // A bulk string larger than the limit is not even buffered.
    p.clear();
    const std::string huge = "$10000\r\n" + std::string(10000, 'x') + "\r\n";
    CHECK(p.consume(huge, ec) == huge.size());
    CHECK(p.done());
    CHECK(p.discarded());
    CHECK(p.memory() == 0);

    // Under the limit, nothing changes.
    parser roomy;
    CHECK(roomy.consume(big, ec) == big.size());
    CHECK_FALSE(roomy.discarded());
    CHECK(roomy.message().size() == 1001);
}
