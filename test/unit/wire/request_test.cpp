// Requests: the exact RESP bytes of every kind of argument, reply counting, subscriptions and
// the detection of blocking commands.
#include <redcoord/request.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using namespace std::string_literals;
using redcoord::request;
using redcoord::subscription_change;

namespace {

// The RESP encoding of one command whose arguments are already text.
std::string resp(std::initializer_list<std::string_view> args) {
    std::string out = "*" + std::to_string(args.size()) + "\r\n";
    for (auto a : args) out += "$" + std::to_string(a.size()) + "\r\n" + std::string(a) + "\r\n";
    return out;
}

// The text of the last bulk string of a payload that has no CRLF inside its arguments.
std::string_view last_argument(std::string_view payload) {
    payload.remove_suffix(2);
    return payload.substr(payload.rfind("\r\n") + 2);
}

template <class... Args>
std::string payload_of(std::string_view command, const Args&... args) {
    request req;
    req.push(command, args...);
    return std::string(req.payload());
}

}  // namespace

TEST_CASE("request: strings of every kind, byte for byte", "[unit][request]") {
    const std::string key = "key";
    const std::string_view value = "value";
    const char* literal = "lit";
    CHECK(payload_of("SET", key, value, literal) ==
          "*4\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n$3\r\nlit\r\n");
    CHECK(payload_of("SET", "k", "") == "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
    CHECK(payload_of("PING") == "*1\r\n$4\r\nPING\r\n");
    // Strings are binary safe: CRLF and NUL inside are just bytes of the bulk.
    CHECK(payload_of("SET", "k", "a\r\n\0b"s) == resp({"SET", "k", "a\r\n\0b"s}));
}

TEST_CASE("request: integers", "[unit][request]") {
    constexpr auto min64 = std::numeric_limits<std::int64_t>::min();
    constexpr auto max64 = std::numeric_limits<std::int64_t>::max();
    constexpr auto max_u64 = std::numeric_limits<std::uint64_t>::max();
    CHECK(payload_of("X", 0, 42, -7) == resp({"X", "0", "42", "-7"}));
    CHECK(payload_of("X", min64, max64) ==
          resp({"X", "-9223372036854775808", "9223372036854775807"}));
    CHECK(payload_of("X", 42u, max_u64, std::uint16_t{65535}, short{-3}) ==
          resp({"X", "42", "18446744073709551615", "65535", "-3"}));
    CHECK(payload_of("EXPIRE", "k", 10L, 5LL) == resp({"EXPIRE", "k", "10", "5"}));
}

TEST_CASE("request: doubles in the shortest form that reads back", "[unit][request]") {
    constexpr double inf = std::numeric_limits<double>::infinity();
    CHECK(payload_of("X", 1.5, 0.1, 3.0, -0.25, 1e100, 2.5e-8) ==
          resp({"X", "1.5", "0.1", "3", "-0.25", "1e+100", "2.5e-08"}));
    CHECK(payload_of("X", inf, -inf) == resp({"X", "inf", "-inf"}));
    CHECK(payload_of("X", 0.1f) == resp({"X", "0.1"}));
    CHECK(payload_of("ZADD", "z", 1.0 / 3, "m") == resp({"ZADD", "z", "0.3333333333333333", "m"}));

    for (double v : {1.0 / 3, 2.0 / 3, 0.1 + 0.2, 1e-300, 123456789.123456789, -5e300}) {
        const std::string p = payload_of("X", v);
        const auto text = last_argument(p);
        double back = 0;
        std::from_chars(text.data(), text.data() + text.size(), back);
        INFO(text);
        CHECK(back == v);
    }
}

TEST_CASE("request: binary arguments", "[unit][request]") {
    const std::vector<std::uint8_t> bytes = {'a', 0, '\r', '\n', 'b'};
    const auto as_bytes = std::as_bytes(std::span(bytes));
    const std::array<unsigned char, 3> array = {0, '\r', 0xff};
    const std::string expected = "a\0\r\nb"s;
    CHECK(payload_of("SET", "k", bytes) == resp({"SET", "k", expected}));
    CHECK(payload_of("SET", "k", as_bytes) == "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\na\0\r\nb\r\n"s);
    CHECK(payload_of("SET", "k", array) == resp({"SET", "k", "\0\r\xff"s}));
    CHECK(payload_of("SET", "k", std::vector<std::uint8_t>{}) == resp({"SET", "k", ""}));
}

TEST_CASE("request: ranges of arguments", "[unit][request]") {
    const std::vector<std::string> list = {"a", "b", "c"};
    const std::set<std::string> set = {"y", "x"};
    const std::vector<int> numbers = {1, -2};
    const std::vector<std::vector<std::uint8_t>> blobs = {{'\0'}, {'\r', '\n'}};
    CHECK(payload_of("RPUSH", "l", list) == resp({"RPUSH", "l", "a", "b", "c"}));
    CHECK(payload_of("SADD", "s", set) == resp({"SADD", "s", "x", "y"}));
    CHECK(payload_of("RPUSH", "l", numbers, 3) == resp({"RPUSH", "l", "1", "-2", "3"}));
    CHECK(payload_of("RPUSH", "l", blobs) == resp({"RPUSH", "l", "\0"s, "\r\n"}));
    CHECK(payload_of("DEL", std::vector<std::string>{}) == resp({"DEL"}));
}

TEST_CASE("request: map ranges become key value pairs", "[unit][request]") {
    const std::map<std::string, int> map = {{"b", 2}, {"a", 1}};
    const std::vector<std::pair<std::string, std::string>> pairs = {{"k1", "v1"}, {"k2", "v2"}};
    CHECK(payload_of("HSET", "h", map) == resp({"HSET", "h", "a", "1", "b", "2"}));
    CHECK(payload_of("MSET", pairs) == resp({"MSET", "k1", "v1", "k2", "v2"}));

    request req;
    req.push_range("HSET", "h", map);
    req.push_range("MSET", pairs);
    req.push_range("RPUSH", "l", std::vector<std::string>{"x"});
    CHECK(req.payload() == resp({"HSET", "h", "a", "1", "b", "2"}) +
                               resp({"MSET", "k1", "v1", "k2", "v2"}) + resp({"RPUSH", "l", "x"}));
    CHECK(req.commands() == 3);
    CHECK(req.expected_responses() == 3);
}

TEST_CASE("request: commands and expected responses", "[unit][request]") {
    request req;
    CHECK(req.commands() == 0);
    CHECK(req.expected_responses() == 0);
    req.push("SET", "k", 1);
    req.push("GET", "k");
    req.push("SUBSCRIBE", "ch");
    req.push("PING");
    CHECK(req.commands() == 4);
    CHECK(req.expected_responses() == 3);
    CHECK(req.payload() == resp({"SET", "k", "1"}) + resp({"GET", "k"}) +
                               resp({"SUBSCRIBE", "ch"}) + resp({"PING"}));
}

TEST_CASE("request: subscription commands expect no reply and are recorded", "[unit][request]") {
    using kind = subscription_change::kind;
    request req;
    req.push("SUBSCRIBE", "a", "b");
    req.push("psubscribe", "news.*");
    req.push("SSubscribe", "shard");
    req.push("UNSUBSCRIBE");
    req.push("PUNSUBSCRIBE", "news.*");
    req.push_range("sunsubscribe", std::vector<std::string>{"shard", "other"});
    CHECK(req.commands() == 6);
    CHECK(req.expected_responses() == 0);
    CHECK_FALSE(req.has_blocking_command());

    struct change {
        kind what;
        std::vector<std::string> channels;
    };
    const std::vector<change> want = {
        {kind::subscribe, {"a", "b"}},    {kind::psubscribe, {"news.*"}},
        {kind::ssubscribe, {"shard"}},    {kind::unsubscribe, {}},
        {kind::punsubscribe, {"news.*"}}, {kind::sunsubscribe, {"shard", "other"}},
    };
    const auto& got = req.subscription_changes();
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < want.size(); ++i) {
        INFO("change " << i);
        CHECK(got[i].what == want[i].what);
        CHECK(got[i].channels == want[i].channels);
    }
}

TEST_CASE("request: blocking commands and their block time", "[unit][request]") {
    using ms = std::chrono::milliseconds;
    struct blocking_case {
        std::string name;
        std::function<void(request&)> build;
        bool blocking;
        std::optional<ms> time;  // nullopt: blocks without limit
        // WAIT and WAITAOF confirm the writes of the connection they run on: they block, but
        // are no blocking commands (which go to a side connection).
        bool waits = false;
    };
    const std::vector<blocking_case> table = {
        {"GET", [](request& r) { r.push("GET", "k"); }, false, 0ms},
        {"BLPOP seconds", [](request& r) { r.push("BLPOP", "a", "b", 5); }, true, 5000ms},
        {"BLPOP fractional", [](request& r) { r.push("BLPOP", "a", "0.5"); }, true, 500ms},
        {"BLPOP double", [](request& r) { r.push("BLPOP", "a", 0.25); }, true, 250ms},
        {"BLPOP sub-millisecond rounds up", [](request& r) { r.push("BLPOP", "a", "0.0015"); },
         true, 2ms},
        {"BRPOP", [](request& r) { r.push("BRPOP", "a", "1.25"); }, true, 1250ms},
        {"BLMOVE", [](request& r) { r.push("BLMOVE", "s", "d", "LEFT", "RIGHT", 2); }, true,
         2000ms},
        {"BRPOPLPUSH", [](request& r) { r.push("BRPOPLPUSH", "s", "d", 3); }, true, 3000ms},
        {"BZPOPMIN", [](request& r) { r.push("BZPOPMIN", "z", 1); }, true, 1000ms},
        {"BZPOPMAX", [](request& r) { r.push("BZPOPMAX", "z", "0.1"); }, true, 100ms},
        {"BLMPOP timeout first",
         [](request& r) { r.push("BLMPOP", "1.5", 2, "a", "b", "LEFT", "COUNT", 3); }, true,
         1500ms},
        {"BZMPOP timeout first", [](request& r) { r.push("BZMPOP", 2, 1, "z", "MIN"); }, true,
         2000ms},
        {"XREAD BLOCK ms",
         [](request& r) { r.push("XREAD", "COUNT", 1, "BLOCK", 250, "STREAMS", "s", "0"); }, true,
         250ms},
        {"XREADGROUP BLOCK ms",
         [](request& r) {
             r.push("XREADGROUP", "GROUP", "g", "c", "BLOCK", 100, "STREAMS", "s", ">");
         },
         true, 100ms},
        {"XREAD without BLOCK",
         [](request& r) { r.push("XREAD", "COUNT", 1, "STREAMS", "s", "0"); }, false, 0ms},
        {"XREAD of a stream named BLOCK",
         [](request& r) { r.push("XREAD", "STREAMS", "BLOCK", "0"); }, false, 0ms},
        {"WAIT ms", [](request& r) { r.push("WAIT", 1, 100); }, false, 100ms, true},
        {"WAITAOF ms", [](request& r) { r.push("WAITAOF", 1, 0, 200); }, false, 200ms, true},
        {"SET then WAIT",
         [](request& r) {
             r.push("SET", "k", "v");
             r.push("WAIT", 1, 100);
         },
         false, 100ms, true},
        {"BLPOP 0 is forever", [](request& r) { r.push("BLPOP", "a", 0); }, true, std::nullopt},
        {"BLMPOP 0 is forever", [](request& r) { r.push("BLMPOP", 0, 1, "a", "LEFT"); }, true,
         std::nullopt},
        {"XREAD BLOCK 0 is forever",
         [](request& r) { r.push("XREAD", "BLOCK", 0, "STREAMS", "s", "$"); }, true, std::nullopt},
        {"WAIT 0 is forever", [](request& r) { r.push("WAIT", 1, 0); }, false, std::nullopt,
         true},
        {"lower case blpop", [](request& r) { r.push("blpop", "a", 2); }, true, 2000ms},
        {"mixed case xRead block",
         [](request& r) { r.push("xRead", "block", 30, "streams", "s", "$"); }, true, 30ms},
        {"mixed case Wait", [](request& r) { r.push("Wait", 0, 10); }, false, 10ms, true},
        {"block times add up",
         [](request& r) {
             r.push("BLPOP", "a", 1);
             r.push("GET", "k");
             r.push("WAIT", 1, 500);
         },
         true, 1500ms, true},
        {"one forever makes the request forever",
         [](request& r) {
             r.push("BLPOP", "a", 1);
             r.push("BLPOP", "b", 0);
             r.push("BLPOP", "c", 1);
         },
         true, std::nullopt},
    };
    for (const auto& c : table) {
        INFO(c.name);
        request req;
        c.build(req);
        CHECK(req.has_blocking_command() == c.blocking);
        CHECK(req.blocking_time() == c.time);
        CHECK(req.has_wait_command() == c.waits);
    }
}

TEST_CASE("request: clear() forgets everything", "[unit][request]") {
    request req;
    req.push("BLPOP", "a", 0);
    req.push("SUBSCRIBE", "ch");
    req.push("GET", "k");
    req.push("WAIT", 1, 10);
    req.clear();
    CHECK(req.payload().empty());
    CHECK(req.commands() == 0);
    CHECK(req.expected_responses() == 0);
    CHECK_FALSE(req.has_blocking_command());
    CHECK_FALSE(req.has_wait_command());
    CHECK(req.blocking_time() == std::chrono::milliseconds(0));
    CHECK(req.subscription_changes().empty());

    // Reusable afterwards, as if new.
    req.push("BLPOP", "a", 2);
    CHECK(req.payload() == resp({"BLPOP", "a", "2"}));
    CHECK(req.commands() == 1);
    CHECK(req.expected_responses() == 1);
    CHECK(req.blocking_time() == std::chrono::milliseconds(2000));
}
