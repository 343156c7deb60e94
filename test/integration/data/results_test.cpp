// The results backend against a real redis-server: typed round trips, the documented TTLs, the
// value as a gzip stream any zlib reads, corrupt and truncated values, waiting by push for a
// result stored on another connection, task state, and bad input.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <catch2/catch.hpp>

#include <zlib.h>

#include <chrono>
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
using redcoord::result_info;
using redcoord::result_options;
using redcoord::result_status;
using redcoord::result_store;
using redcoord::session;
using redcoord::test::command;
using redcoord::test::config_for;
using redcoord::test::nothrow;
using redcoord::test::require_ok;
using redcoord::test::side_connection;
using redcoord::test::with_connection;

struct report {
    std::string name;
    std::vector<int> rows;
    bool operator==(const report&) const = default;
};

void tag_invoke(const json::value_from_tag&, json::value& jv, const report& r) {
    jv = {{"name", r.name}, {"rows", json::value_from(r.rows)}};
}

report tag_invoke(const json::value_to_tag<report>&, const json::value& jv) {
    const auto& o = jv.as_object();
    report r;
    r.name = json::value_to<std::string>(o.at("name"));
    r.rows = json::value_to<std::vector<int>>(o.at("rows"));
    return r;
}

report make_report(std::string name, int n) {
    report r;
    r.name = std::move(name);
    for (int i = 0; i < n; ++i) r.rows.push_back(i);
    return r;
}

// Inflates a gzip stream with zlib directly, as any other reader would.
std::optional<std::string> gunzip(const std::string& in) {
    z_stream zs{};
    if (inflateInit2(&zs, 15 + 16) != Z_OK) return std::nullopt;
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs.avail_in = static_cast<uInt>(in.size());
    std::string out;
    char buf[4096];
    int rc = Z_OK;
    while (rc == Z_OK) {
        zs.next_out = reinterpret_cast<Bytef*>(buf);
        zs.avail_out = sizeof buf;
        rc = inflate(&zs, Z_NO_FLUSH);
        out.append(buf, sizeof buf - zs.avail_out);
        if (rc == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) break;
    }
    inflateEnd(&zs);
    if (rc != Z_STREAM_END) return std::nullopt;
    return out;
}

std::int64_t to_i(const std::string& s) { return std::stoll(s); }

}  // namespace

TEST_CASE("results: a typed value and its status round trip", "[results]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        result_store rs(s);

        auto [ec0, none] = co_await rs.async_get_result("job-1", nothrow);
        CHECK_FALSE(ec0);
        CHECK_FALSE(none.has_value());
        auto [ec1, no_value] = co_await rs.async_get_value<report>("job-1", nothrow);
        CHECK_FALSE(ec1);
        CHECK_FALSE(no_value.has_value());

        json::value started = {{"worker", "w-1"}};
        auto [ec2] = co_await rs.async_set_status("job-1", result_status::running, started,
                                                   nothrow);
        CHECK_FALSE(ec2);
        auto [ec3, running] = co_await rs.async_get_result("job-1", nothrow);
        REQUIRE_FALSE(ec3);
        REQUIRE(running.has_value());
        CHECK(running->status == result_status::running);
        CHECK(running->metadata == started);
        CHECK_FALSE(running->has_value);

        const report r = make_report("daily", 100);
        json::value done_meta = {{"worker", "w-1"}, {"duration_ms", 42}};
        redcoord::diagnostics diag;
        auto [ec4] = co_await rs.async_store_result("job-1", result_status::succeeded, r,
                                                     done_meta, diag, nothrow);
        INFO(diag.message());
        CHECK_FALSE(ec4);
        auto [ec5, info] = co_await rs.async_get_result("job-1", nothrow);
        REQUIRE_FALSE(ec5);
        REQUIRE(info.has_value());
        CHECK(info->status == result_status::succeeded);
        CHECK(info->metadata == done_meta);
        CHECK(info->has_value);
        CHECK(info->value_bytes > 0);
        CHECK(info->created <= info->updated);
        CHECK(info->updated.time_since_epoch().count() > 0);

        auto [ec6, back] = co_await rs.async_get_value<report>("job-1", nothrow);
        REQUIRE_FALSE(ec6);
        REQUIRE(back.has_value());
        CHECK(*back == r);

        // A status without metadata keeps the stored metadata; the hash's fields are as
        // documented.
        auto [ec7] = co_await rs.async_set_status("job-1", result_status::revoked, nothrow);
        CHECK_FALSE(ec7);
        const auto status_field =
            co_await command(conn, "HGET", "redcoord:result:{job-1}", "status");
        CHECK(status_field == "revoked");
        const auto meta_field =
            co_await command(conn, "HGET", "redcoord:result:{job-1}", "metadata");
        CHECK(json::parse(meta_field) == done_meta);
        const auto created_field =
            co_await command(conn, "HGET", "redcoord:result:{job-1}", "created_ms");
        CHECK(to_i(created_field) > 0);

        // Another type: a plain string, and a value that does not convert.
        auto [ec8] = co_await rs.async_store_result("job-2", result_status::failed,
                                                     std::string("boom"), nothrow);
        CHECK_FALSE(ec8);
        auto [ec9, text] = co_await rs.async_get_value<std::string>("job-2", nothrow);
        CHECK_FALSE(ec9);
        CHECK(text == std::optional<std::string>("boom"));
        auto [ec10, wrong] = co_await rs.async_get_value<report>("job-2", diag, nothrow);
        CHECK(ec10 == redcoord::error::decode_failed);
        CHECK_FALSE(wrong.has_value());
        CHECK(diag.message().find("result 'job-2'") != std::string::npos);
        CHECK(diag.message().find("does not convert") != std::string::npos);
        // The same without diagnostics: the error code alone.
        auto [ec11, wrong2] = co_await rs.async_get_value<report>("job-2", nothrow);
        CHECK(ec11 == redcoord::error::decode_failed);
        CHECK_FALSE(wrong2.has_value());
    });
}

TEST_CASE("results: TTLs are 21 days, 7 days and 7200 s by default, or as configured",
          "[results]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        result_store rs(s);
        auto [ec0] = co_await rs.async_store_result("t-1", result_status::succeeded, 7, nothrow);
        REQUIRE_FALSE(ec0);
        const auto hash_ttl = to_i(co_await command(conn, "PTTL", "redcoord:result:{t-1}"));
        const auto value_ttl = to_i(co_await command(conn, "PTTL", "redcoord:result:{t-1}:value"));
        CHECK(hash_ttl > 21LL * 24 * 3600 * 1000 - 60000);
        CHECK(hash_ttl <= 21LL * 24 * 3600 * 1000);
        CHECK(value_ttl > 7LL * 24 * 3600 * 1000 - 60000);
        CHECK(value_ttl <= 7LL * 24 * 3600 * 1000);

        auto [ec] = co_await rs.async_set_state("t-1:progress", 50, std::nullopt, nothrow);
        REQUIRE_FALSE(ec);
        const auto state_ttl =
            to_i(co_await command(conn, "PTTL", "redcoord:state:{t-1:progress}"));
        CHECK(state_ttl > 7200 * 1000 - 60000);
        CHECK(state_ttl <= 7200 * 1000);
        const auto progress_text = co_await command(conn, "GET", "redcoord:state:{t-1:progress}");
        CHECK(progress_text == "50");
        auto [ec2, progress] = co_await rs.async_get_state<int>("t-1:progress", nothrow);
        CHECK_FALSE(ec2);
        CHECK(progress == std::optional<int>(50));
        const std::optional<std::chrono::milliseconds> short_ttl = 5s;
        auto [ec3] = co_await rs.async_set_state("t-1:short", 1, short_ttl, nothrow);
        CHECK_FALSE(ec3);
        const auto short_pttl = to_i(co_await command(conn, "PTTL", "redcoord:state:{t-1:short}"));
        CHECK(short_pttl <= 5000);

        result_options custom;
        custom.result_ttl = 1h;
        custom.value_ttl = 10min;
        custom.state_ttl = 30s;
        result_store rc(s, custom);
        auto [sec2] = co_await rc.async_store_result("t-2", result_status::succeeded, 7, nothrow);
        REQUIRE_FALSE(sec2);
        const auto h2 = to_i(co_await command(conn, "PTTL", "redcoord:result:{t-2}"));
        const auto v2 = to_i(co_await command(conn, "PTTL", "redcoord:result:{t-2}:value"));
        CHECK(h2 > 3600 * 1000 - 60000);
        CHECK(h2 <= 3600 * 1000);
        CHECK(v2 > 600 * 1000 - 60000);
        CHECK(v2 <= 600 * 1000);
        auto [ec4] = co_await rc.async_set_state("t-2:s", 1, std::nullopt, nothrow);
        CHECK_FALSE(ec4);
        const auto s2 = to_i(co_await command(conn, "PTTL", "redcoord:state:{t-2:s}"));
        CHECK(s2 > 0);
        CHECK(s2 <= 30 * 1000);

        // A status write renews the hash's TTL but leaves the value's alone.
        auto [sec3] = co_await rc.async_set_status("t-2", result_status::revoked, nothrow);
        CHECK_FALSE(sec3);
        const auto h3 = to_i(co_await command(conn, "PTTL", "redcoord:result:{t-2}"));
        const auto v3 = to_i(co_await command(conn, "PTTL", "redcoord:result:{t-2}:value"));
        CHECK(h3 > 3600 * 1000 - 60000);
        CHECK(v3 <= 600 * 1000);
    });
}

TEST_CASE("results: the stored value is a gzip stream zlib reads", "[results]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        result_store rs(s);
        const report r = make_report("big", 5000);
        auto [ec] = co_await rs.async_store_result("z-1", result_status::succeeded, r, nothrow);
        REQUIRE_FALSE(ec);
        const std::string raw = co_await command(conn, "GET", "redcoord:result:{z-1}:value");
        REQUIRE(raw.size() > 2);
        CHECK(static_cast<unsigned char>(raw[0]) == 0x1f);
        CHECK(static_cast<unsigned char>(raw[1]) == 0x8b);
        const std::string json_text = json::serialize(json::value_from(r));
        CHECK(raw.size() < json_text.size());  // compressed
        const auto inflated = gunzip(raw);
        REQUIRE(inflated.has_value());
        CHECK(json::parse(*inflated) == json::value_from(r));
        const auto value_bytes =
            to_i(co_await command(conn, "HGET", "redcoord:result:{z-1}", "value_bytes"));
        CHECK(value_bytes == static_cast<std::int64_t>(raw.size()));
    });
}

TEST_CASE("results: a corrupt or truncated value is corrupt_data", "[results]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        result_store rs(s);
        auto [ec] = co_await rs.async_store_result("c-1", result_status::succeeded,
                                                    make_report("x", 300), nothrow);
        REQUIRE_FALSE(ec);
        const std::string raw = co_await command(conn, "GET", "redcoord:result:{c-1}:value");

        // Truncated: the first half of the stream.
        co_await command(conn, "SET", "redcoord:result:{c-1}:value", raw.substr(0, raw.size() / 2));
        redcoord::diagnostics diag;
        auto [ec1, v1] = co_await rs.async_get_value<report>("c-1", diag, nothrow);
        CHECK(ec1 == redcoord::error::corrupt_data);
        CHECK(diag.message().find("c-1") != std::string::npos);
        CHECK_FALSE(v1.has_value());

        // Without its trailer (the CRC and length).
        co_await command(conn, "SET", "redcoord:result:{c-1}:value", raw.substr(0, raw.size() - 4));
        auto [ec2, v2] = co_await rs.async_get_value<report>("c-1", nothrow);
        CHECK(ec2 == redcoord::error::corrupt_data);

        // Garbage, and a gzip header followed by garbage.
        co_await command(conn, "SET", "redcoord:result:{c-1}:value", "not compressed at all");
        auto [ec3, v3] = co_await rs.async_get_value<report>("c-1", nothrow);
        CHECK(ec3 == redcoord::error::corrupt_data);
        std::string bad = raw;
        for (std::size_t i = 12; i < bad.size() - 8; ++i) bad[i] = static_cast<char>(bad[i] ^ 0x5a);
        co_await command(conn, "SET", "redcoord:result:{c-1}:value", bad);
        auto [ec4, v4] = co_await rs.async_get_value<report>("c-1", nothrow);
        CHECK(ec4 == redcoord::error::corrupt_data);

        // A valid stream whose text is not JSON is decode_failed.
        co_await command(conn, "SET", "redcoord:result:{c-1}:value",
                         redcoord::detail::gzip_compress("{not json"));
        auto [ec5, v5] = co_await rs.async_get_value<report>("c-1", nothrow);
        CHECK(ec5 == redcoord::error::decode_failed);

        // A value that inflates past max_value_bytes is refused.
        result_options small;
        small.max_value_bytes = 100;
        result_store rsmall(s, small);
        co_await command(conn, "SET", "redcoord:result:{c-1}:value",
                         redcoord::detail::gzip_compress(std::string(1000, ' ') + "1"));
        auto [ec6, v6] = co_await rsmall.async_get_value<int>("c-1", nothrow);
        CHECK(ec6 == redcoord::error::corrupt_data);
        CHECK(redcoord::error_category().message(
                  static_cast<int>(redcoord::error::corrupt_data)) != "unknown redcoord error");
    });
}

TEST_CASE("results: async_wait completes when another connection stores the result",
          "[results]") {
    redcoord::test::redis_server srv;
    redcoord::test::run_async([&](asio::io_context& ioc) -> asio::awaitable<void> {
        side_connection a(ioc.get_executor(), srv), b(ioc.get_executor(), srv);
        session sa(a.conn, {.node_id = "node-a"}), sb(b.conn, {.node_id = "node-b"});
        result_store ra(sa), rb(sb);
        auto ex = co_await asio::this_coro::executor;

        // Stored later by b: a waits by push, without polling.
        bool stored = false;
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
                asio::steady_timer t(ex);
                t.expires_after(300ms);
                co_await t.async_wait(asio::use_awaitable);
                co_await rb.async_set_status("w-1", result_status::running, asio::use_awaitable);
                t.expires_after(200ms);
                co_await t.async_wait(asio::use_awaitable);
                co_await rb.async_store_result("w-1", result_status::succeeded, 99,
                                               asio::use_awaitable);
                stored = true;
            },
            asio::detached);
        const auto start = std::chrono::steady_clock::now();
        redcoord::diagnostics diag;
        auto [ec, info] = co_await ra.async_wait("w-1", start + 20s, diag, nothrow);
        const auto took = std::chrono::steady_clock::now() - start;
        require_ok(ec, diag);
        CHECK(stored);
        CHECK(info.status == result_status::succeeded);
        CHECK(info.has_value);
        CHECK(took >= 450ms);
        CHECK(took < 5s);
        auto [ec2, v] = co_await ra.async_get_value<int>("w-1", nothrow);
        CHECK(v == std::optional<int>(99));

        // Already final: completes at once.
        auto [ec3, again] = co_await ra.async_wait("w-1", 5s, nothrow);
        CHECK_FALSE(ec3);
        CHECK(again.status == result_status::succeeded);

        // A failure is final too.
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
                asio::steady_timer t(ex);
                t.expires_after(100ms);
                co_await t.async_wait(asio::use_awaitable);
                json::value meta = {{"error", "disk full"}};
                co_await rb.async_set_status("w-2", result_status::failed, meta,
                                             asio::use_awaitable);
            },
            asio::detached);
        auto [ec4, failed] = co_await ra.async_wait("w-2", 10s, nothrow);
        REQUIRE_FALSE(ec4);
        CHECK(failed.status == result_status::failed);
        CHECK(failed.metadata.at("error") == "disk full");
    });
}

TEST_CASE("results: async_wait times out at its deadline", "[results]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        result_store rs(s);
        auto [ec0] = co_await rs.async_set_status("late", result_status::running, nothrow);
        REQUIRE_FALSE(ec0);
        const auto start = std::chrono::steady_clock::now();
        redcoord::diagnostics diag;
        auto [ec, info] = co_await rs.async_wait("late", 300ms, diag, nothrow);
        const auto took = std::chrono::steady_clock::now() - start;
        CHECK(ec == redcoord::error::timeout);
        CHECK(diag.message().find("late") != std::string::npos);
        CHECK(took >= 290ms);
        CHECK(took < 3s);
        // A deadline already passed still looks once.
        auto [ec2, i2] = co_await rs.async_wait("late", std::chrono::steady_clock::now(),
                                                nothrow);
        CHECK(ec2 == redcoord::error::timeout);
    });
}

TEST_CASE("results: bad input", "[results]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        result_options zero;
        zero.result_ttl = 0ms;
        CHECK_THROWS_AS(result_store(s, zero), redcoord::error_with_diagnostics);
        result_options neg;
        neg.value_ttl = -1ms;
        CHECK_THROWS_AS(result_store(s, neg), redcoord::error_with_diagnostics);
        result_options st;
        st.state_ttl = 0ms;
        CHECK_THROWS_AS(result_store(s, st), redcoord::error_with_diagnostics);
        result_options big;
        big.max_value_bytes = 0;
        CHECK_THROWS_AS(result_store(s, big), redcoord::error_with_diagnostics);

        result_store rs(s);
        redcoord::diagnostics id_diag;
        auto [ec1] = co_await rs.async_set_status("", result_status::running, id_diag, nothrow);
        CHECK(ec1 == redcoord::error::invalid_argument);
        CHECK(id_diag.message().find("result id") != std::string::npos);
        auto [ec2] = co_await rs.async_store_result("", result_status::succeeded, 1, nothrow);
        CHECK(ec2 == redcoord::error::invalid_argument);
        auto [ec3, i3] = co_await rs.async_get_result("", nothrow);
        CHECK(ec3 == redcoord::error::invalid_argument);
        auto [ec4, v4] = co_await rs.async_get_value<int>("", nothrow);
        CHECK(ec4 == redcoord::error::invalid_argument);
        auto [ec5, i5] = co_await rs.async_wait("", 1s, nothrow);
        CHECK(ec5 == redcoord::error::invalid_argument);
        auto [ec6] = co_await rs.async_set_status("x", static_cast<result_status>(42), nothrow);
        CHECK(ec6 == redcoord::error::invalid_argument);

        result_options small;
        small.max_value_bytes = 10;
        result_store rsmall(s, small);
        redcoord::diagnostics diag;
        const std::string too_big(100, 'a');
        auto [ec7] = co_await rsmall.async_store_result("x", result_status::succeeded, too_big,
                                                         diag, nothrow);
        CHECK(ec7 == redcoord::error::invalid_argument);
        CHECK(diag.message().find("max_value_bytes") != std::string::npos);
        const auto exists = co_await command(conn, "EXISTS", "redcoord:result:{x}");
        CHECK(exists == "0");

        // An unknown status in the hash is decode_failed.
        co_await command(conn, "HSET", "redcoord:result:{odd}", "status", "weird");
        auto [ec8, i8] = co_await rs.async_get_result("odd", nothrow);
        CHECK(ec8 == redcoord::error::decode_failed);

        auto [state_ec, none] = co_await rs.async_get_state<int>("", nothrow);
        CHECK(state_ec == redcoord::error::invalid_argument);
        CHECK(redcoord::parse_result_status("succeeded") == result_status::succeeded);
        CHECK_FALSE(redcoord::parse_result_status("done").has_value());
    });
}
