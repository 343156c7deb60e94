// Shared state against a real redis-server: typed set/get, native TTLs, watchers of changes
// and removals, decode failures and bad input.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "async_test.hpp"
#include "connection_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::session;
using redcoord::shared_state;
using redcoord::test::command;
using redcoord::test::config_for;
using redcoord::test::nothrow;
using redcoord::test::quiet_config;
using redcoord::test::redis_server;
using redcoord::test::require_ok;
using redcoord::test::wait_for;
using redcoord::test::with_quiet_connection;

struct progress {
    std::string job;
    int percent = 0;
    std::map<std::string, double> metrics;
};

void tag_invoke(const json::value_from_tag&, json::value& jv, const progress& p) {
    jv = {{"job", p.job}, {"percent", p.percent}, {"metrics", json::value_from(p.metrics)}};
}

progress tag_invoke(const json::value_to_tag<progress>&, const json::value& jv) {
    const auto& o = jv.as_object();
    return progress{json::value_to<std::string>(o.at("job")), json::value_to<int>(o.at("percent")),
                    json::value_to<std::map<std::string, double>>(o.at("metrics"))};
}

template <class T>
asio::awaitable<void> must_set(shared_state& st, std::string key, const T& value,
                               std::optional<std::chrono::milliseconds> ttl = std::nullopt) {
    redcoord::diagnostics diag;
    auto [ec] = co_await st.async_set(std::move(key), value, ttl, diag, nothrow);
    require_ok(ec, diag);
}

template <class T>
asio::awaitable<std::optional<T>> must_get(shared_state& st, std::string key) {
    redcoord::diagnostics diag;
    auto [ec, v] = co_await st.async_get<T>(std::move(key), diag, nothrow);
    require_ok(ec, diag);
    co_return v;
}

TEST_CASE("state: a user type round-trips as JSON with the default TTL", "[state]") {
    with_quiet_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        shared_state st(s);
        const progress p{"job-1", 40, {{"rate", 2.5}}};
        co_await must_set(st, "progress:job-1", p);
        auto got = co_await must_get<progress>(st, "progress:job-1");
        REQUIRE(got);
        CHECK(got->job == "job-1");
        CHECK(got->percent == 40);
        CHECK(got->metrics.at("rate") == 2.5);

        // Stored as JSON text under the documented key, with the default TTL (7200 s).
        auto text = co_await command(conn, "GET", "redcoord:state:{progress:job-1}");
        CHECK(json::parse(text) == json::value_from(p));
        const auto pttl =
            std::stoll(co_await command(conn, "PTTL", "redcoord:state:{progress:job-1}"));
        CHECK(pttl > 7190000);
        CHECK(pttl <= 7200000);

        // Plain types too, with a TTL of their own.
        co_await must_set(st, "count", 17, 10s);
        auto count = co_await must_get<int>(st, "count");
        CHECK(count == 17);
        const auto pttl2 = std::stoll(co_await command(conn, "PTTL", "redcoord:state:{count}"));
        CHECK(pttl2 > 5000);
        CHECK(pttl2 <= 10000);

        // The options' default TTL.
        shared_state short_lived(s, {.default_ttl = 60s});
        co_await must_set(short_lived, "brief", std::string("x"));
        const auto pttl3 = std::stoll(co_await command(conn, "PTTL", "redcoord:state:{brief}"));
        CHECK(pttl3 > 55000);
        CHECK(pttl3 <= 60000);

        // A missing key reads as nullopt; a removed one too.
        auto none = co_await must_get<int>(st, "missing");
        CHECK_FALSE(none);
        auto [rec, removed] = co_await st.async_remove("count", nothrow);
        REQUIRE_FALSE(rec);
        CHECK(removed);
        auto [rec2, removed2] = co_await st.async_remove("count", nothrow);
        REQUIRE_FALSE(rec2);
        CHECK_FALSE(removed2);
        auto gone = co_await must_get<int>(st, "count");
        CHECK_FALSE(gone);
    });
}

TEST_CASE("state: watchers see changes and removals from another node", "[state]") {
    with_quiet_connection([](redcoord::connection& conn, auto& srv) -> asio::awaitable<void> {
        session s(conn);
        shared_state st(s);
        std::vector<std::optional<int>> seen;
        std::vector<error_code> errors;
        auto w = st.watch<int>("limit", [&](error_code ec, std::optional<int> v) {
            if (ec)
                errors.push_back(ec);
            else
                seen.push_back(v);
        });
        int other_key_calls = 0;
        auto w2 = st.watch<int>("other", [&](error_code, std::optional<int>) { ++other_key_calls; });
        co_await command(conn, "PING");  // the SUBSCRIBEs have reached Redis

        redcoord::connection other(co_await asio::this_coro::executor);
        other.async_run(quiet_config(srv), asio::detached);
        session s2(other);
        shared_state st2(s2);
        co_await must_set(st2, "limit", 10);
        co_await must_set(st2, "limit", 20);
        auto [ec, removed] = co_await st2.async_remove("limit", nothrow);
        REQUIRE_FALSE(ec);
        CHECK(removed);
        // Removing what is not there tells nobody.
        auto [ec2, removed2] = co_await st2.async_remove("limit", nothrow);
        REQUIRE_FALSE(ec2);
        CHECK_FALSE(removed2);
        co_await must_set(st2, "limit", 30);

        const bool all = co_await wait_for([&] { return seen.size() == 4; });
        REQUIRE(all);
        CHECK(seen[0] == 10);
        CHECK(seen[1] == 20);
        CHECK_FALSE(seen[2]);
        CHECK(seen[3] == 30);
        CHECK(errors.empty());
        CHECK(other_key_calls == 0);

        // A value that is not an int is reported to the watcher, which goes on.
        co_await must_set(st2, "limit", std::string("many"));
        co_await must_set(st2, "limit", 40);
        const bool more = co_await wait_for([&] { return seen.size() == 5; });
        REQUIRE(more);
        CHECK(seen[4] == 40);
        REQUIRE(errors.size() == 1);
        CHECK(errors[0] == redcoord::error::decode_failed);

        // Unwatched: no more calls.
        w.unsubscribe();
        co_await must_set(st2, "limit", 50);
        co_await command(conn, "PING");
        CHECK(seen.size() == 5);
        other.cancel();
    });
}

TEST_CASE("state: a stored value that does not decode is decode_failed", "[state]") {
    with_quiet_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        shared_state st(s);
        co_await command(conn, "SET", "redcoord:state:{raw}", "not json");
        redcoord::diagnostics diag;
        auto [ec, v] = co_await st.async_get<int>("raw", diag, nothrow);
        CHECK(ec == redcoord::error::decode_failed);
        CHECK_FALSE(v);
        CHECK_THAT(diag.message(), Catch::Contains("raw"));
        co_await must_set(st, "text", std::string("hello"));
        auto [ec2, v2] = co_await st.async_get<int>("text", nothrow);
        CHECK(ec2 == redcoord::error::decode_failed);
        auto [ec3, v3] = co_await st.async_get<std::string>("text", nothrow);
        REQUIRE_FALSE(ec3);
        CHECK(v3 == "hello");
    });
}

TEST_CASE("state: bad input is an error naming the field", "[state]") {
    with_quiet_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        shared_state st(s);
        redcoord::diagnostics diag;
        auto [ec1] = co_await st.async_set("", 1, std::nullopt, diag, nothrow);
        CHECK(ec1 == redcoord::error::invalid_argument);
        CHECK_THAT(diag.message(), Catch::Contains("state key"));

        auto [ec2] = co_await st.async_set("k", 1, 0ms, diag, nothrow);
        CHECK(ec2 == redcoord::error::invalid_argument);
        CHECK_THAT(diag.message(), Catch::Contains("ttl"));
        auto [ec3] = co_await st.async_set("k", 1, -5s, diag, nothrow);
        CHECK(ec3 == redcoord::error::invalid_argument);
        CHECK_THAT(diag.message(), Catch::Contains("-5000"));
        auto exists = co_await command(conn, "EXISTS", "redcoord:state:{k}");
        CHECK(exists == "0");

        auto [ec4, v4] = co_await st.async_get<int>("", diag, nothrow);
        CHECK(ec4 == redcoord::error::invalid_argument);
        CHECK_THAT(diag.message(), Catch::Contains("state key"));
        auto [ec5, r5] = co_await st.async_remove("", diag, nothrow);
        CHECK(ec5 == redcoord::error::invalid_argument);
        CHECK_THAT(diag.message(), Catch::Contains("state key"));

        try {
            auto w = st.watch<int>("", [](error_code, std::optional<int>) {});
            FAIL("watch accepted an empty key");
        } catch (const redcoord::error_with_diagnostics& e) {
            CHECK(e.code() == redcoord::error::invalid_argument);
            CHECK_THAT(e.get_diagnostics().message(), Catch::Contains("state key"));
        }
        try {
            shared_state bad(s, {.default_ttl = 0ms});
            FAIL("shared_state accepted a zero default_ttl");
        } catch (const redcoord::error_with_diagnostics& e) {
            CHECK(e.code() == redcoord::error::bad_config);
            CHECK_THAT(e.get_diagnostics().message(), Catch::Contains("default_ttl"));
        }
    });
}

}  // namespace
