// Checkpoints against a real redis-server: typed save and load under the documented keys with
// their TTL, the latest by sequence, retention, resuming from another connection, removal,
// and bad input.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <limits>
#include <map>
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
using redcoord::checkpoint;
using redcoord::checkpoint_store;
using redcoord::diagnostics;
using redcoord::session;
using redcoord::test::command;
using redcoord::test::config_for;
using redcoord::test::nothrow;
using redcoord::test::require_ok;
using redcoord::test::side_connection;
using redcoord::test::with_connection;

struct import_state {
    std::string file;
    std::int64_t offset = 0;
    std::map<std::string, int> counts;
    bool operator==(const import_state&) const = default;
};

void tag_invoke(const json::value_from_tag&, json::value& jv, const import_state& s) {
    jv = {{"file", s.file}, {"offset", s.offset}, {"counts", json::value_from(s.counts)}};
}

import_state tag_invoke(const json::value_to_tag<import_state>&, const json::value& jv) {
    const auto& o = jv.as_object();
    import_state s;
    s.file = json::value_to<std::string>(o.at("file"));
    s.offset = json::value_to<std::int64_t>(o.at("offset"));
    s.counts = json::value_to<std::map<std::string, int>>(o.at("counts"));
    return s;
}

checkpoint<import_state> make_checkpoint(std::string task, std::int64_t seq, double progress) {
    checkpoint<import_state> cp;
    cp.task_id = std::move(task);
    cp.sequence = seq;
    cp.progress = progress;
    cp.data.file = "orders.csv";
    cp.data.offset = seq * 1000;
    cp.data.counts = {{"ok", static_cast<int>(seq)}, {"bad", 1}};
    return cp;
}

asio::awaitable<void> must_save(checkpoint_store& store, const checkpoint<import_state>& cp) {
    diagnostics diag;
    auto [ec] = co_await store.async_save(cp, diag, nothrow);
    require_ok(ec, diag);
}

TEST_CASE("checkpoint: save and load the latest, typed, under the documented keys",
          "[checkpoint]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        checkpoint_store store(s);
        const auto before = std::chrono::system_clock::now();
        const auto cp1 = make_checkpoint("import-42", 1, 0.25);
        co_await must_save(store, cp1);
        const auto cp2 = make_checkpoint("import-42", 2, 0.5);
        co_await must_save(store, cp2);

        diagnostics diag;
        auto [ec, latest] = co_await store.async_load_latest<import_state>("import-42", diag,
                                                                            nothrow);
        require_ok(ec, diag);
        REQUIRE(latest);
        CHECK(latest->task_id == "import-42");
        CHECK(latest->sequence == 2);
        CHECK(latest->progress == 0.5);
        CHECK(latest->data == cp2.data);
        CHECK(latest->saved_at >= std::chrono::time_point_cast<std::chrono::milliseconds>(before));

        const auto text = co_await command(conn, "GET", "redcoord:checkpoint:{import-42}:2");
        const auto stored = json::parse(text).as_object();
        CHECK(stored.at("task_id") == "import-42");
        CHECK(stored.at("sequence") == 2);
        CHECK(stored.at("data") == json::value_from(cp2.data));
        const auto pttl = std::stoll(co_await command(conn, "PTTL",
                                                      "redcoord:checkpoint:{import-42}:1"));
        CHECK(pttl > 0);
        CHECK(pttl <= 7LL * 24 * 3600 * 1000);
        const auto index =
            co_await command(conn, "ZCARD", "redcoord:checkpoint:{import-42}:index");
        CHECK(index == "2");

        // An older sequence saved later does not become the latest.
        const auto cp0 = make_checkpoint("import-42", 0, 0.1);
        co_await must_save(store, cp0);
        auto [ec2, still] = co_await store.async_load_latest<import_state>("import-42", nothrow);
        REQUIRE_FALSE(ec2);
        REQUIRE(still);
        CHECK(still->sequence == 2);

        // A task without checkpoints.
        auto [ec3, none] = co_await store.async_load_latest<import_state>("unknown", nothrow);
        REQUIRE_FALSE(ec3);
        CHECK_FALSE(none);
    });
}

TEST_CASE("checkpoint: only the latest `retention` checkpoints are kept", "[checkpoint]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        checkpoint_store store(s, {.ttl = 1h, .retention = 3});
        for (int seq = 1; seq <= 8; ++seq) {
            const auto cp = make_checkpoint("batch", seq, seq / 8.0);
            co_await must_save(store, cp);
        }
        for (int seq = 1; seq <= 8; ++seq) {
            const auto e = co_await command(conn, "EXISTS",
                                            "redcoord:checkpoint:{batch}:" + std::to_string(seq));
            INFO("sequence " << seq);
            CHECK(e == (seq > 5 ? "1" : "0"));
        }
        const auto pttl =
            std::stoll(co_await command(conn, "PTTL", "redcoord:checkpoint:{batch}:8"));
        CHECK(pttl > 0);
        CHECK(pttl <= 3600 * 1000);
        const auto index = co_await command(conn, "ZCARD", "redcoord:checkpoint:{batch}:index");
        CHECK(index == "3");

        // The latest gone by hand: the one before it is the latest still stored.
        co_await command(conn, "DEL", "redcoord:checkpoint:{batch}:8");
        auto [ec, latest] = co_await store.async_load_latest<import_state>("batch", nothrow);
        REQUIRE_FALSE(ec);
        REQUIRE(latest);
        CHECK(latest->sequence == 7);
        CHECK(latest->data.offset == 7000);
    });
}

TEST_CASE("checkpoint: another connection resumes from the latest checkpoint", "[checkpoint]") {
    redcoord::test::redis_server srv;
    redcoord::test::run_async([&](asio::io_context& ioc) -> asio::awaitable<void> {
        {
            side_connection a(ioc.get_executor(), srv);
            session sa(a.conn, {.node_id = "worker-1"});
            checkpoint_store store(sa);
            for (int seq = 1; seq <= 3; ++seq) {
                const auto cp = make_checkpoint("reindex", seq, seq / 10.0);
                co_await must_save(store, cp);
            }
        }
        side_connection b(ioc.get_executor(), srv);
        session sb(b.conn, {.node_id = "worker-2"});
        checkpoint_store store(sb);
        auto [ec, latest] = co_await store.async_load_latest<import_state>("reindex", nothrow);
        REQUIRE_FALSE(ec);
        REQUIRE(latest);
        CHECK(latest->sequence == 3);
        CHECK(latest->data.offset == 3000);

        auto [ec2, removed] = co_await store.async_remove("reindex", nothrow);
        REQUIRE_FALSE(ec2);
        CHECK(removed == 3);
        auto [ec3, gone] = co_await store.async_load_latest<import_state>("reindex", nothrow);
        REQUIRE_FALSE(ec3);
        CHECK_FALSE(gone);
        CHECK(redcoord::test::key_count(srv) == 0);
    });
}

TEST_CASE("checkpoint: data that does not convert is decode_failed", "[checkpoint]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        checkpoint_store store(s);
        checkpoint<int> cp;
        cp.task_id = "numbers";
        cp.sequence = 1;
        cp.data = 5;
        auto [ec] = co_await store.async_save(cp, nothrow);
        REQUIRE_FALSE(ec);
        auto [ec1, n] = co_await store.async_load_latest<int>("numbers", nothrow);
        REQUIRE_FALSE(ec1);
        REQUIRE(n);
        CHECK(n->data == 5);
        diagnostics diag;
        auto [ec2, bad] = co_await store.async_load_latest<import_state>("numbers", diag, nothrow);
        CHECK(ec2 == redcoord::error::decode_failed);
        CHECK_FALSE(bad);
        co_await command(conn, "SET", "redcoord:checkpoint:{numbers}:1", "[1, 2]");
        auto [ec3, bad2] = co_await store.async_load_latest<int>("numbers", diag, nothrow);
        CHECK(ec3 == redcoord::error::decode_failed);
        CHECK(diag.message().find("not a checkpoint") != std::string::npos);
    });
}

TEST_CASE("checkpoint: bad input is invalid_argument naming the field", "[checkpoint]") {
    with_connection([](redcoord::connection& conn, auto& srv) -> asio::awaitable<void> {
        session s(conn);
        checkpoint_store store(s);
        diagnostics diag;
        auto cp = make_checkpoint("", 1, 0.5);
        auto [ec] = co_await store.async_save(cp, diag, nothrow);
        CHECK(ec == redcoord::error::invalid_argument);
        CHECK(diag.message().find("task_id") != std::string::npos);

        cp = make_checkpoint("t", -1, 0.5);
        auto [ec2] = co_await store.async_save(cp, diag, nothrow);
        CHECK(ec2 == redcoord::error::invalid_argument);
        CHECK(diag.message().find("sequence -1") != std::string::npos);

        cp = make_checkpoint("t", 1, 1.5);
        auto [ec3] = co_await store.async_save(cp, diag, nothrow);
        CHECK(ec3 == redcoord::error::invalid_argument);
        CHECK(diag.message().find("progress") != std::string::npos);

        cp = make_checkpoint("t", 1, std::numeric_limits<double>::quiet_NaN());
        auto [ec4] = co_await store.async_save(cp, diag, nothrow);
        CHECK(ec4 == redcoord::error::invalid_argument);

        auto [ec5, v] = co_await store.async_load_latest<import_state>("", diag, nothrow);
        CHECK(ec5 == redcoord::error::invalid_argument);
        CHECK(diag.message().find("task_id") != std::string::npos);
        CHECK(redcoord::test::key_count(srv) == 0);

        CHECK_THROWS_AS(checkpoint_store(s, {.ttl = 0ms}), redcoord::error_with_diagnostics);
        CHECK_THROWS_AS(checkpoint_store(s, {.retention = 0}), redcoord::error_with_diagnostics);
    });
}

}  // namespace
