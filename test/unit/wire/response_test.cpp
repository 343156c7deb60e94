// Typed responses: RESP3 replies (parsed from their wire form) converted to C++ values.
#include <redcoord/error.hpp>
#include <redcoord/resp3/parser.hpp>
#include <redcoord/response.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

using namespace std::string_literals;
using boost::system::error_code;
using redcoord::error;
using redcoord::generic_response;
using redcoord::ignore_t;
using redcoord::node_span;
using redcoord::resp3::node;
using redcoord::resp3::node_view;
using redcoord::resp3::tree;
using redcoord::resp3::type;

namespace {

// One reply, parsed from RESP3 text and kept alive with the views that conversions read.
class reply {
  public:
    explicit reply(std::string_view text) {
        redcoord::resp3::parser p;
        error_code ec;
        INFO("RESP3: " << text);
        REQUIRE(p.consume(text, ec) == text.size());
        REQUIRE_FALSE(ec);
        REQUIRE(p.done());
        for (const auto& v : p.message()) nodes_.emplace_back(v);
        for (const auto& n : nodes_) views_.push_back(n.view());
    }
    reply(const reply&) = delete;
    reply& operator=(const reply&) = delete;

    node_span nodes() const noexcept { return views_; }

  private:
    std::vector<node> nodes_;
    std::vector<node_view> views_;
};

template <class T>
error_code convert(std::string_view text, T& out) {
    const reply r(text);
    error_code ec;
    redcoord::from_resp3(r.nodes(), out, ec);
    return ec;
}

// The value `text` converts to; the conversion must succeed.
template <class T>
T converted(std::string_view text) {
    T out{};
    const error_code ec = convert(text, out);
    INFO("RESP3: " << text);
    INFO("error: " << ec.message());
    CHECK_FALSE(ec);
    return out;
}

template <class T>
error_code conversion_error(std::string_view text) {
    T out{};
    return convert(text, out);
}

template <class T>
struct value_case {
    std::string text;
    T want;
};

template <class T>
void check_values(const std::vector<value_case<T>>& table) {
    for (const auto& c : table) {
        INFO("RESP3: " << c.text);
        CHECK(converted<T>(c.text) == c.want);
    }
}

struct error_case {
    std::string text;
    error want;
};

template <class T>
void check_errors(const std::vector<error_case>& table) {
    for (const auto& c : table) {
        INFO("RESP3: " << c.text);
        CHECK(conversion_error<T>(c.text) == c.want);
    }
}

}  // namespace

TEST_CASE("response: std::string from every string-like reply", "[unit][response]") {
    check_values<std::string>({
        {"+OK\r\n", "OK"},
        {"$5\r\nhello\r\n", "hello"},
        {"$0\r\n\r\n", ""},
        {"$4\r\na\0\r\n\r\n"s, "a\0\r\n"s},
        {"=15\r\ntxt:Some string\r\n", "Some string"},  // the format prefix is stripped
        {"=4\r\nmkd:\r\n", ""},
        {":-42\r\n", "-42"},
        {",3.5\r\n", "3.5"},
        {"(12345678901234567890123\r\n", "12345678901234567890123"},
    });
    check_errors<std::string>({
        {"_\r\n", error::unexpected_null},
        {"$-1\r\n", error::unexpected_null},
        {"-ERR wrong\r\n", error::server_error},
        {"!3\r\nbad\r\n", error::server_error},
        {"*1\r\n+a\r\n", error::unexpected_type},
        {"%0\r\n", error::unexpected_type},
    });
}

TEST_CASE("response: integers", "[unit][response]") {
    check_values<int>({{":42\r\n", 42},
                       {":-7\r\n", -7},
                       {"$2\r\n17\r\n", 17},
                       {"+12\r\n", 12},
                       {"(123\r\n", 123},
                       {"=6\r\ntxt:99\r\n", 99}});
    check_values<long long>({{":-9223372036854775808\r\n", std::numeric_limits<long long>::min()},
                             {":9223372036854775807\r\n", std::numeric_limits<long long>::max()}});
    check_values<unsigned>({{":42\r\n", 42u}, {":4294967295\r\n", 4294967295u}});
    check_values<std::uint64_t>({{"$20\r\n18446744073709551615\r\n", ~std::uint64_t{0}}});
    check_values<std::uint8_t>({{":255\r\n", 255}});

    check_errors<int>({
        {":3000000000\r\n", error::not_a_number},
        {"$3\r\nabc\r\n", error::not_a_number},
        {"$0\r\n\r\n", error::not_a_number},
        {"$3\r\n12x\r\n", error::not_a_number},
        {",1.5\r\n", error::not_a_number},
        {"(99999999999999999999999\r\n", error::not_a_number},
        {"_\r\n", error::unexpected_null},
        {"*0\r\n", error::unexpected_type},
    });
    check_errors<unsigned>(
        {{":-1\r\n", error::not_a_number}, {":4294967296\r\n", error::not_a_number}});
    check_errors<std::uint8_t>({{":256\r\n", error::not_a_number}});
    check_errors<long long>({{"$19\r\n9223372036854775808\r\n", error::not_a_number}});
}

TEST_CASE("response: floating point", "[unit][response]") {
    constexpr double inf = std::numeric_limits<double>::infinity();
    check_values<double>({
        {",1.23\r\n", 1.23},
        {",10\r\n", 10.0},
        {",1.5e10\r\n", 1.5e10},
        {",-2.5E-3\r\n", -2.5e-3},
        {",inf\r\n", inf},
        {",-inf\r\n", -inf},
        {"$3\r\n3.5\r\n", 3.5},
        {"$3\r\ninf\r\n", inf},
        {":-4\r\n", -4.0},
        {"+0.25\r\n", 0.25},
    });
    check_values<float>({{",0.5\r\n", 0.5f}});
    CHECK(std::isnan(converted<double>(",nan\r\n")));
    CHECK(std::isnan(converted<double>("$4\r\n-nan\r\n")));
    check_errors<double>({{"$3\r\nabc\r\n", error::not_a_number},
                          {"$4\r\n1.5x\r\n", error::not_a_number},
                          {"_\r\n", error::unexpected_null},
                          {"~1\r\n,1\r\n", error::unexpected_type}});
}

TEST_CASE("response: bool", "[unit][response]") {
    check_values<bool>({{"#t\r\n", true},
                        {"#f\r\n", false},
                        {":1\r\n", true},
                        {":0\r\n", false},
                        {"+OK\r\n", true}});
    check_errors<bool>({{":2\r\n", error::unexpected_type},
                        {"$3\r\nyes\r\n", error::unexpected_type},
                        {"_\r\n", error::unexpected_null},
                        {"*1\r\n#t\r\n", error::unexpected_type}});
}

TEST_CASE("response: std::optional", "[unit][response]") {
    check_values<std::optional<int>>({{"_\r\n", std::nullopt}, {":5\r\n", 5}});
    check_values<std::optional<std::string>>({{"$-1\r\n", std::nullopt},
                                              {"*-1\r\n", std::nullopt},
                                              {"_\r\n", std::nullopt},
                                              {"$1\r\nv\r\n", "v"}});
    check_values<std::vector<std::optional<std::string>>>(
        {{"*3\r\n$1\r\na\r\n$-1\r\n_\r\n", {"a", std::nullopt, std::nullopt}}});
    check_values<std::optional<std::vector<int>>>(
        {{"*-1\r\n", std::nullopt}, {"*2\r\n:1\r\n:2\r\n", std::vector{1, 2}}});
    check_errors<std::optional<int>>({{"$1\r\nx\r\n", error::not_a_number}});
}

TEST_CASE("response: sequences and sets", "[unit][response]") {
    using strings = std::vector<std::string>;
    check_values<strings>({
        {"*3\r\n+a\r\n$1\r\nb\r\n:3\r\n", {"a", "b", "3"}},
        {"*0\r\n", {}},
        {"~2\r\n+x\r\n+y\r\n", {"x", "y"}},
        {">2\r\n+message\r\n+hi\r\n", {"message", "hi"}},
        {"*?\r\n+s\r\n.\r\n", {"s"}},
    });
    check_values<std::vector<std::vector<int>>>({{"*2\r\n*2\r\n:1\r\n:2\r\n*0\r\n", {{1, 2}, {}}}});
    check_values<std::set<std::string>>({{"~3\r\n+b\r\n+a\r\n+b\r\n", {"a", "b"}}});
    check_values<std::unordered_set<int>>({{"*3\r\n:1\r\n:2\r\n:1\r\n", {1, 2}}});
    check_errors<strings>({
        {"+a\r\n", error::unexpected_type},
        {"%1\r\n+k\r\n+v\r\n", error::unexpected_type},
        {"_\r\n", error::unexpected_null},
        {"*2\r\n+a\r\n*1\r\n+b\r\n", error::unexpected_type},
    });
}

TEST_CASE("response: maps, from a RESP3 map and from a flat array", "[unit][response]") {
    using map = std::map<std::string, int>;
    check_values<map>({
        {"%2\r\n+a\r\n:1\r\n+b\r\n:2\r\n", {{"a", 1}, {"b", 2}}},
        {"*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n", {{"a", 1}, {"b", 2}}},
        {"%0\r\n", {}},
        {"%?\r\n+k\r\n:7\r\n.\r\n", {{"k", 7}}},
    });
    check_values<std::unordered_map<std::string, std::vector<std::string>>>(
        {{"%1\r\n+k\r\n*2\r\n+x\r\n+y\r\n", {{"k", {"x", "y"}}}}});
    check_values<std::map<int, std::optional<std::string>>>(
        {{"%2\r\n:1\r\n_\r\n:2\r\n+two\r\n", {{1, std::nullopt}, {2, "two"}}}});
    check_errors<map>({
        {"*3\r\n+a\r\n:1\r\n+b\r\n", error::unexpected_type},  // odd flat array
        {"+a\r\n", error::unexpected_type},
        {"%1\r\n+a\r\n+x\r\n", error::not_a_number},
    });
}

TEST_CASE("response: pair and tuple", "[unit][response]") {
    using pair = std::pair<std::string, int>;
    using tuple = std::tuple<std::string, long long, double, std::optional<int>>;
    check_values<pair>({{"*2\r\n+a\r\n:1\r\n", pair{"a", 1}}});
    check_values<tuple>({{"*4\r\n+s\r\n:-1\r\n,2.5\r\n_\r\n", tuple{"s", -1, 2.5, std::nullopt}}});
    check_errors<pair>({{"*3\r\n+a\r\n:1\r\n:2\r\n", error::incompatible_size},
                        {"*1\r\n+a\r\n", error::incompatible_size}});
    check_errors<tuple>({{"*3\r\n+s\r\n:1\r\n,1\r\n", error::incompatible_size},
                         {"*5\r\n+s\r\n:1\r\n,1\r\n_\r\n_\r\n", error::incompatible_size},
                         {"*4\r\n+s\r\n+x\r\n,1\r\n_\r\n", error::not_a_number}});
}

TEST_CASE("response: boost::json::value", "[unit][response]") {
    const auto json = [](std::string_view text) { return boost::json::parse(text); };
    check_values<boost::json::value>({
        {"%3\r\n+a\r\n:1\r\n+b\r\n*4\r\n,1.5\r\n#t\r\n_\r\n$1\r\ns\r\n+c\r\n%1\r\n+d\r\n~1\r\n#f"
         "\r\n",
         json(R"({"a": 1, "b": [1.5, true, null, "s"], "c": {"d": [false]}})")},
        {":-12\r\n", json("-12")},
        {",2.5\r\n", json("2.5")},
        {"#t\r\n", json("true")},
        {"_\r\n", json("null")},
        {"$-1\r\n", json("null")},
        {"=9\r\ntxt:hello\r\n", json(R"("hello")")},
        {"(123456789012345678901234567890\r\n", json(R"("123456789012345678901234567890")")},
        {"%1\r\n:1\r\n+one\r\n", json(R"({"1": "one"})")},
        {"|1\r\n+ttl\r\n:1\r\n*1\r\n:2\r\n", json("[2]")},
    });
    const auto inf = converted<boost::json::value>(",inf\r\n");
    REQUIRE(inf.is_double());
    CHECK(std::isinf(inf.as_double()));
    check_errors<boost::json::value>({{"*2\r\n:1\r\n-ERR no\r\n", error::server_error},
                                      {"%1\r\n+k\r\n!2\r\nno\r\n", error::server_error}});
}

TEST_CASE("response: resp3::tree", "[unit][response]") {
    const auto leaf = [](type t, std::string v) { return tree{t, std::move(v), {}, {}}; };
    tree want{type::array, "", {leaf(type::number, "1"), leaf(type::simple_error, "ERR x")}, {}};
    want.attributes = {leaf(type::simple_string, "key"), leaf(type::boolean, "t")};
    CHECK(converted<tree>("|1\r\n+key\r\n#t\r\n*2\r\n:1\r\n-ERR x\r\n") == want);
    CHECK(converted<tree>("_\r\n") == leaf(type::null, ""));
}

TEST_CASE("response: an error inside an aggregate is a server error", "[unit][response]") {
    check_errors<std::vector<std::string>>({{"*2\r\n+a\r\n-ERR x\r\n", error::server_error}});
    check_errors<std::map<std::string, std::string>>(
        {{"%1\r\n+k\r\n!3\r\nbad\r\n", error::server_error}});
    check_errors<std::tuple<int, int>>({{"*2\r\n:1\r\n-ERR x\r\n", error::server_error}});
    check_errors<std::optional<std::string>>({{"-ERR x\r\n", error::server_error}});
}

TEST_CASE("response: attributes before a value are skipped", "[unit][response]") {
    check_values<int>({{"|1\r\n+ttl\r\n:3600\r\n:42\r\n", 42}});
    check_values<std::vector<int>>({{"*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n", {1, 2}}});
    check_values<std::optional<int>>({{"|1\r\n+a\r\n+b\r\n_\r\n", std::nullopt}});
    check_values<std::map<std::string, int>>(
        {{"|1\r\n+a\r\n*1\r\n+b\r\n%1\r\n+k\r\n|0\r\n:1\r\n", {{"k", 1}}}});
    check_values<std::string>({{"|?\r\n+a\r\n+b\r\n.\r\n+v\r\n", "v"}});
}

TEST_CASE("response: leftover nodes after the value are an error", "[unit][response]") {
    const std::vector<node_view> two_values = {{type::simple_string, 1, 0, "a"},
                                               {type::simple_string, 1, 0, "b"}};
    std::string out;
    error_code ec;
    redcoord::from_resp3(two_values, out, ec);
    CHECK(ec == error::incompatible_size);

    ec.clear();
    redcoord::from_resp3(node_span{}, out, ec);
    CHECK(ec == error::incompatible_size);
}

TEST_CASE("response: ignore_t accepts any reply", "[unit][response]") {
    for (std::string text :
         {"+OK\r\n", "*2\r\n%1\r\n+a\r\n:1\r\n_\r\n", "|1\r\n+a\r\n+b\r\n:1\r\n"})
        CHECK(converted<ignore_t>(text) == redcoord::ignore);
}

TEST_CASE("response: make_adapter for tuples, single values and generic_response",
          "[unit][response]") {
    using redcoord::detail::any_adapter;
    using redcoord::detail::make_adapter;

    SECTION("a response<...> takes one reply per element") {
        redcoord::response<std::string, int, ignore_t> resp;
        const any_adapter ad = make_adapter(resp);
        CHECK(ad.expected() == 3);
        CHECK_FALSE(ad.wants_errors());
        const reply first("+hello\r\n");
        const reply second(":7\r\n");
        error_code ec;
        ad(0, first.nodes(), ec);
        ad(1, second.nodes(), ec);
        ad(2, second.nodes(), ec);
        CHECK_FALSE(ec);
        CHECK(std::get<0>(resp) == "hello");
        CHECK(std::get<1>(resp) == 7);

        const reply bad("+x\r\n");
        ad(1, bad.nodes(), ec);
        CHECK(ec == error::not_a_number);
    }
    SECTION("a single value takes one reply") {
        std::vector<int> single;
        CHECK(make_adapter(single).expected() == 1);
        std::pair<std::string, int> pair;
        CHECK(make_adapter(pair).expected() == 1);
        redcoord::response<std::string> one;
        CHECK(make_adapter(one).expected() == 1);
    }
    SECTION("generic_response collects every node, errors included") {
        generic_response resp;
        const any_adapter ad = make_adapter(resp);
        CHECK(ad.expected() == any_adapter::npos);
        CHECK(ad.wants_errors());
        const reply first("*2\r\n:1\r\n$1\r\nx\r\n");
        const reply second("-ERR no\r\n");
        error_code ec;
        ad(0, first.nodes(), ec);
        ad(1, second.nodes(), ec);
        CHECK_FALSE(ec);
        const generic_response want = {{type::array, 2, 0, ""},
                                       {type::number, 1, 1, "1"},
                                       {type::blob_string, 1, 1, "x"},
                                       {type::simple_error, 1, 0, "ERR no"}};
        CHECK(resp == want);
    }
    SECTION("ignore takes anything and stores nothing") {
        ignore_t sink;
        const any_adapter ad = make_adapter(sink);
        CHECK(ad.expected() == any_adapter::npos);
        CHECK_FALSE(ad.wants_errors());
        const reply r("+x\r\n");
        error_code ec;
        ad(0, r.nodes(), ec);
        CHECK_FALSE(ec);
    }
}
