// Lua scripts against a real redis-server: the embedded scripts, the EVALSHA to EVAL fallback
// after SCRIPT FLUSH and after a restart, typed replies, script errors and cancellation.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "async_test.hpp"
#include "connection_helpers.hpp"
#include "redis_cluster.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::test::redis_server;
using redcoord::test::run_async;
using strings = std::vector<std::string>;

using redcoord::test::command;
using redcoord::test::config_for;
using redcoord::test::nothrow;
using redcoord::test::require_ok;
using redcoord::test::wait_until;
using redcoord::test::with_connection;

// Runs a script that must succeed and returns its reply as T.
// (g++ 12 cannot compile braced lists inside a co_await expression: callers pass named vectors.)
template <class T>
asio::awaitable<T> eval(redcoord::connection& conn, const redcoord::script& s, const strings& keys,
                        const strings& args) {
    T reply{};
    redcoord::diagnostics diag;
    auto [ec, n] = co_await redcoord::async_eval(conn, s, keys, args, reply, diag, nothrow);
    require_ok(ec, diag);
    co_return reply;
}

// SCRIPT EXISTS for one script, on the server that serves `key` (its master on a cluster).
bool is_cached(const redis_server& srv, const redcoord::script& s, const std::string& key) {
    const std::vector<std::string> exists{"SCRIPT", "EXISTS", s.sha1()};
    if (const auto* c = srv.cluster()) {
        const auto node = c->index_of_slot(redcoord::test::redis_cluster::key_slot(key));
        return c->cli(node, exists) == "1";
    }
    return srv.cli(exists) == "1";
}

// SCRIPT EXISTS for one script: false when no node has it.
bool cached_nowhere(const redis_server& srv, const redcoord::script& s) {
    for (const auto& reply : redcoord::test::cli_on_each_node(srv, {"SCRIPT", "EXISTS", s.sha1()}))
        if (reply != "0") return false;
    return true;
}

// SCRIPT FLUSH on the server, on every master of a cluster.
void flush_scripts(const redis_server& srv) {
    for (const auto& reply : redcoord::test::cli_on_each_node(srv, {"SCRIPT", "FLUSH"}))
        REQUIRE(reply == "OK");
}

// compare_and_delete on `key` with `token`; returns what the script returned (1 or 0).
asio::awaitable<long long> compare_and_delete(redcoord::connection& conn, std::string key,
                                              std::string token) {
    const auto& s = redcoord::script::embedded("compare_and_delete");
    const strings keys{std::move(key)}, args{std::move(token)};
    co_return co_await eval<long long>(conn, s, keys, args);
}

}  // namespace

TEST_CASE("script: the embedded compare_and_delete", "[integration][script]") {
    with_connection([](redcoord::connection& conn, redis_server&) -> asio::awaitable<void> {
        co_await command(conn, "SET", "script:lock", "owner-a");
        const auto other_owner = co_await compare_and_delete(conn, "script:lock", "owner-b");
        CHECK(other_owner == 0);
        const auto kept = co_await command(conn, "EXISTS", "script:lock");
        CHECK(kept == "1");
        const auto owner = co_await compare_and_delete(conn, "script:lock", "owner-a");
        CHECK(owner == 1);
        const auto gone = co_await command(conn, "EXISTS", "script:lock");
        CHECK(gone == "0");
        const auto again = co_await compare_and_delete(conn, "script:lock", "owner-a");
        CHECK(again == 0);
    });
}

TEST_CASE("script: loaded again after SCRIPT FLUSH", "[integration][script]") {
    with_connection([](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
        const auto& s = redcoord::script::embedded("compare_and_delete");
        co_await command(conn, "SET", "script:lock", "me");
        const auto other_owner = co_await compare_and_delete(conn, "script:lock", "other");
        CHECK(other_owner == 0);
        CHECK(is_cached(srv, s, "script:lock"));

        flush_scripts(srv);
        CHECK(cached_nowhere(srv, s));
        const auto owner = co_await compare_and_delete(conn, "script:lock", "me");
        CHECK(owner == 1);
        // The script is cached again.
        CHECK(is_cached(srv, s, "script:lock"));
    });
}

TEST_CASE("script: loaded again after a server restart", "[integration][script][single_server]") {
    with_connection([](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
        const auto before = co_await compare_and_delete(conn, "script:lock", "me");
        CHECK(before == 0);
        srv.restart();
        // Requests written before the connection notices the restart fail with
        // connection_lost; wait for the reconnect.
        co_await wait_until([&] { return conn.get_usage().connects >= 2; });
        co_await command(conn, "SET", "script:lock", "me");
        const auto after = co_await compare_and_delete(conn, "script:lock", "me");
        CHECK(after == 1);
        CHECK(srv.cli({"EXISTS", "script:lock"}) == "0");
    });
}

TEST_CASE("script: keys, args and a typed reply", "[integration][script]") {
    const redcoord::script s(R"(
        redis.call('SET', KEYS[1], ARGV[1])
        redis.call('RPUSH', KEYS[2], ARGV[2], ARGV[3])
        return {redis.call('GET', KEYS[1]), tonumber(ARGV[2]) * 10, #KEYS,
                redis.call('LRANGE', KEYS[2], 0, -1)}
    )");
    CHECK(s.sha1().size() == 40);
    // One reply, an array: response<...> holds one value per reply.
    using reply = redcoord::response<std::tuple<std::string, long long, int, strings>>;
    with_connection([&](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
        // One hash tag: a script's keys lie in one slot on a cluster.
        const strings keys{"{script}:str", "{script}:list"}, args{"hello", "4", "x"};
        const auto [r] = co_await eval<reply>(conn, s, keys, args);
        CHECK(std::get<0>(r) == "hello");
        CHECK(std::get<1>(r) == 40);
        CHECK(std::get<2>(r) == 2);
        CHECK(std::get<3>(r) == strings{"4", "x"});
        CHECK(srv.cli({"GET", "{script}:str"}) == "hello");

        // The same script, now cached: EVALSHA's reply, as a generic response.
        CHECK(is_cached(srv, s, "{script}:str"));
        const strings keys2{"{script}:str2", "{script}:list2"}, args2{"bye", "1", "y"};
        const auto generic = co_await eval<redcoord::generic_response>(conn, s, keys2, args2);
        REQUIRE_FALSE(generic.empty());
        CHECK(generic.front().data_type == redcoord::resp3::type::array);
        CHECK(generic.front().aggregate_size == 4);
        CHECK(generic.size() == 7);  // the array, 3 scalars, the nested array and its 2 items
    });
}

TEST_CASE("script: a generic response holds only the reply after the script is loaded again",
          "[integration][script]") {
    const redcoord::script s("return {ARGV[1], 7}");
    with_connection([&](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
        flush_scripts(srv);
        const strings args{"seven"};
        const auto r = co_await eval<redcoord::generic_response>(conn, s, {}, args);
        REQUIRE(r.size() == 3);
        CHECK(r[0].data_type == redcoord::resp3::type::array);
        CHECK(r[1].value == "seven");
        CHECK(r[2].value == "7");
    });
}

TEST_CASE("script: errors in scripts", "[integration][script]") {
    struct error_case {
        std::string source;
        std::string server_text;
    };
    const auto c = GENERATE(
        error_case{"return redis.call('INCR', KEYS[1])", "not an integer"},
        error_case{"return redis.error_reply('MYERR custom failure')", "MYERR custom failure"},
        error_case{"error('boom')", "boom"}, error_case{"return (", "Error compiling script"});
    const redcoord::script s(c.source);
    with_connection([&](redcoord::connection& conn, redis_server&) -> asio::awaitable<void> {
        co_await command(conn, "SET", "script:text", "not a number");
        const strings keys{"script:text"};
        for (int round = 0; round < 2; ++round) {  // EVAL first, then EVALSHA when cached
            long long reply = 0;
            redcoord::diagnostics diag;
            auto [ec, n] = co_await redcoord::async_eval(conn, s, keys, {}, reply, diag, nothrow);
            CHECK(ec == redcoord::error::server_error);
            CHECK_THAT(diag.server_message(), Catch::Contains(c.server_text));
            CHECK_THAT(diag.server_message(), !Catch::Contains("NOSCRIPT"));
        }
        // The connection is still fine.
        const auto text = co_await command(conn, "GET", "script:text");
        CHECK(text == "not a number");
    });
}

TEST_CASE("script: a reply that does not fit the response type", "[integration][script]") {
    const redcoord::script s("return 'not a number'");
    with_connection([&](redcoord::connection& conn, redis_server&) -> asio::awaitable<void> {
        long long reply = 0;
        redcoord::diagnostics diag;
        auto [ec, n] = co_await redcoord::async_eval(conn, s, {}, {}, reply, diag, nothrow);
        CHECK(ec == redcoord::error::not_a_number);
        const auto pong = co_await command(conn, "PING");
        CHECK(pong == "PONG");
    });
}

TEST_CASE("script: cancelling async_eval before it is written",
          "[integration][script][single_server]") {
    const redcoord::script s("return redis.call('SET', KEYS[1], 'ran')");
    with_connection([&](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
        co_await command(conn, "PING");
        srv.stop();
        co_await wait_until([&] { return !conn.is_connected(); });

        std::optional<error_code> result;
        std::string reply;
        redcoord::diagnostics diag;
        asio::cancellation_signal signal;
        redcoord::async_eval(conn, s, {"script:ran"}, {}, reply, diag,
                             asio::bind_cancellation_slot(
                                 signal.slot(), [&](error_code ec, std::size_t) { result = ec; }));
        asio::steady_timer timer(co_await asio::this_coro::executor, 50ms);
        co_await timer.async_wait(asio::use_awaitable);
        CHECK_FALSE(result);
        signal.emit(asio::cancellation_type::terminal);
        co_await wait_until([&] { return result.has_value(); });
        CHECK(*result == asio::error::operation_aborted);

        // The script never reached the server: requests after the reconnect do not see it.
        srv.start();
        co_await command(conn, "PING");
        const auto ran = co_await command(conn, "EXISTS", "script:ran");
        CHECK(ran == "0");
    });
}

TEST_CASE("script: an unknown embedded script", "[integration][script]") {
    try {
        redcoord::script::embedded("nope");
        FAIL("embedded(\"nope\") did not throw");
    } catch (const redcoord::error_with_diagnostics& e) {
        CHECK(e.code() == redcoord::error::invalid_argument);
        CHECK_THAT(e.get_diagnostics().client_message(), Catch::Contains("'nope'"));
        CHECK_THAT(std::string(e.what()), Catch::Contains("nope"));
    }
    CHECK_NOTHROW(redcoord::script::embedded("compare_and_delete"));
}
