// RESP3 as a real server writes it: DEBUG PROTOCOL <type> makes redis-server send a reply of
// each RESP3 type, which must come back through the connection as the right nodes and values.
//
// What Redis 7.0 sends (checked on the raw protocol after HELLO 3):
//   string   $11 Hello World            integer  :12345            double  ,3.141
//   bignum   (1234567999999999999999999999999999999                 null    _
//   array    *3 :0 :1 :2                set      ~3 :0 :1 :2
//   map      %3 :0 #f :1 #t :2 #f       verbatim =29 txt:This is a verbatim\nstring
//   true #t  false #f
//   attrib   |1 $14 key-popularity *2 $7 key:123 :90, then the real reply
//            $39 Some real reply following the attribute
//   push     >2 $16 server-cpu-usage :42 (a push), then the real reply
//            $40 Some real reply following the push reply
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "async_test.hpp"
#include "connection_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using redcoord::generic_response;
using redcoord::resp3::node;
using redcoord::resp3::type;
using redcoord::test::redis_server;
using redcoord::test::run_async;

using redcoord::test::config_for;
using redcoord::test::nothrow;

node s(type t, std::size_t depth, std::string value) { return {t, 1, depth, std::move(value)}; }
node a(type t, std::size_t size, std::size_t depth) { return {t, size, depth, ""}; }

const std::string attrib_reply = "Some real reply following the attribute";
const std::string push_reply = "Some real reply following the push reply";

struct protocol_case {
    std::string what;  // the argument of DEBUG PROTOCOL
    generic_response nodes;
};

const std::vector<protocol_case>& protocol_cases() {
    using enum type;
    static const std::vector<protocol_case> table = {
        {"string", {s(blob_string, 0, "Hello World")}},
        {"integer", {s(number, 0, "12345")}},
        {"double", {s(doublean, 0, "3.141")}},
        {"bignum", {s(big_number, 0, "1234567999999999999999999999999999999")}},
        {"null", {s(null, 0, "")}},
        {"array", {a(array, 3, 0), s(number, 1, "0"), s(number, 1, "1"), s(number, 1, "2")}},
        {"set", {a(set, 3, 0), s(number, 1, "0"), s(number, 1, "1"), s(number, 1, "2")}},
        {"map",
         {a(map, 3, 0), s(number, 1, "0"), s(boolean, 1, "f"), s(number, 1, "1"),
          s(boolean, 1, "t"), s(number, 1, "2"), s(boolean, 1, "f")}},
        {"attrib",
         {a(attribute, 1, 0), s(blob_string, 1, "key-popularity"), a(array, 2, 1),
          s(blob_string, 2, "key:123"), s(number, 2, "90"), s(blob_string, 0, attrib_reply)}},
        // The push goes to async_receive; the request gets only the real reply.
        {"push", {s(blob_string, 0, push_reply)}},
        {"verbatim", {s(verbatim_string, 0, "txt:This is a verbatim\nstring")}},
        {"true", {s(boolean, 0, "t")}},
        {"false", {s(boolean, 0, "f")}},
    };
    return table;
}

redcoord::request debug_protocol(std::string_view what) {
    redcoord::request req;
    req.push("DEBUG", "PROTOCOL", what);
    return req;
}

// Runs DEBUG PROTOCOL `what` and converts its reply to T.
template <class T>
asio::awaitable<std::pair<boost::system::error_code, T>> exec_as(redcoord::connection& conn,
                                                                 std::string_view what) {
    const auto req = debug_protocol(what);
    T reply{};
    auto [ec, n] = co_await conn.async_exec(req, reply, nothrow);
    co_return std::pair{ec, std::move(reply)};
}

// Waits for the next push, which must be the one DEBUG PROTOCOL push sends.
asio::awaitable<void> expect_cpu_usage_push(redcoord::connection& conn) {
    redcoord::push_message push;
    auto [ec] = co_await conn.async_receive(push, nothrow);
    REQUIRE_FALSE(ec);
    CHECK(push.kind == "server-cpu-usage");
    const generic_response want = {a(type::push, 2, 0), s(type::blob_string, 1, "server-cpu-usage"),
                                   s(type::number, 1, "42")};
    CHECK(push.nodes == want);
}

}  // namespace

TEST_CASE("resp3 conformance: DEBUG PROTOCOL of every type, as nodes", "[integration][resp3]") {
    redis_server srv({.enable_debug = true});
    run_async([&](asio::io_context& ioc) -> asio::awaitable<void> {
        redcoord::connection conn(ioc.get_executor());
        conn.async_run(config_for(srv), asio::detached);
        for (const auto& c : protocol_cases()) {
            INFO("DEBUG PROTOCOL " << c.what);
            const auto req = debug_protocol(c.what);
            generic_response nodes;
            redcoord::diagnostics diag;
            auto [ec, n] = co_await conn.async_exec(req, nodes, diag, nothrow);
            INFO(ec.message() << ": " << diag.message());
            REQUIRE_FALSE(ec);
            CHECK(n > 0);
            CHECK(nodes == c.nodes);
            if (c.what == "push") co_await expect_cpu_usage_push(conn);
        }
        conn.cancel();
    });
}

TEST_CASE("resp3 conformance: DEBUG PROTOCOL of every type, as C++ values, pipelined",
          "[integration][resp3]") {
    redis_server srv({.enable_debug = true});
    run_async([&](asio::io_context& ioc) -> asio::awaitable<void> {
        redcoord::connection conn(ioc.get_executor());
        conn.async_run(config_for(srv), asio::detached);

        redcoord::request req;
        for (const auto& c : protocol_cases()) req.push("DEBUG", "PROTOCOL", c.what);
        REQUIRE(req.expected_responses() == protocol_cases().size());
        redcoord::response<std::string, long long, double, std::string, std::optional<std::string>,
                           std::vector<int>, std::set<int>, std::map<int, bool>, std::string,
                           std::string, std::string, bool, bool>
            resp;
        redcoord::diagnostics diag;
        auto [ec, n] = co_await conn.async_exec(req, resp, diag, nothrow);
        INFO(ec.message() << ": " << diag.message());
        REQUIRE_FALSE(ec);

        CHECK(std::get<0>(resp) == "Hello World");
        CHECK(std::get<1>(resp) == 12345);
        CHECK(std::get<2>(resp) == 3.141);
        CHECK(std::get<3>(resp) == "1234567999999999999999999999999999999");
        CHECK(std::get<4>(resp) == std::nullopt);
        CHECK(std::get<5>(resp) == std::vector<int>{0, 1, 2});
        CHECK(std::get<6>(resp) == std::set<int>{0, 1, 2});
        CHECK(std::get<7>(resp) == std::map<int, bool>{{0, false}, {1, true}, {2, false}});
        CHECK(std::get<8>(resp) == attrib_reply);                   // the attribute is skipped
        CHECK(std::get<9>(resp) == push_reply);                     // the push went elsewhere
        CHECK(std::get<10>(resp) == "This is a verbatim\nstring");  // "txt:" stripped
        CHECK(std::get<11>(resp) == true);
        CHECK(std::get<12>(resp) == false);

        co_await expect_cpu_usage_push(conn);
        conn.cancel();
    });
}

TEST_CASE("resp3 conformance: typed conversions of DEBUG PROTOCOL replies",
          "[integration][resp3]") {
    redis_server srv({.enable_debug = true});
    run_async([&](asio::io_context& ioc) -> asio::awaitable<void> {
        redcoord::connection conn(ioc.get_executor());
        conn.async_run(config_for(srv), asio::detached);

        // The attribute is kept by resp3::tree.
        const auto [tree_ec, tree] = co_await exec_as<redcoord::resp3::tree>(conn, "attrib");
        REQUIRE_FALSE(tree_ec);
        CHECK(tree.data_type == type::blob_string);
        CHECK(tree.value == attrib_reply);
        REQUIRE(tree.attributes.size() == 2);
        CHECK(tree.attributes[0].value == "key-popularity");
        CHECK(tree.attributes[1].data_type == type::array);
        CHECK(tree.attributes[1].children.size() == 2);

        // JSON: map keys become strings, doubles stay doubles.
        const auto [map_ec, map] = co_await exec_as<boost::json::value>(conn, "map");
        CHECK_FALSE(map_ec);
        CHECK(map == boost::json::parse(R"({"0": false, "1": true, "2": false})"));
        const auto [double_ec, dbl] = co_await exec_as<boost::json::value>(conn, "double");
        CHECK_FALSE(double_ec);
        CHECK(dbl == boost::json::value(3.141));

        // Replies that do not fit the C++ type.
        const auto null_ec = (co_await exec_as<std::string>(conn, "null")).first;
        CHECK(null_ec == redcoord::error::unexpected_null);
        const auto bignum_ec = (co_await exec_as<long long>(conn, "bignum")).first;
        CHECK(bignum_ec == redcoord::error::not_a_number);
        const auto array_ec = (co_await exec_as<int>(conn, "array")).first;
        CHECK(array_ec == redcoord::error::unexpected_type);

        // The connection is still in step after those errors.
        const auto [int_ec, integer] = co_await exec_as<long long>(conn, "integer");
        CHECK_FALSE(int_ec);
        CHECK(integer == 12345);
        conn.cancel();
    });
}
