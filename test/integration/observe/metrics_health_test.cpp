// Metrics in the Prometheus text format, the coordination health check, and the status server
// that serves both over HTTP.
#include <redcoord/redcoord.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "bad_input.hpp"
#include "connection_helpers.hpp"
#include "http_helpers.hpp"
#include "lease_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
const redcoord::acquire_options defaults{};
using namespace std::chrono_literals;
using redcoord::health_status;
using redcoord::lock_provider;
using redcoord::session;
using redcoord::test::command;
using redcoord::test::must_acquire;
using redcoord::test::must_release;
using redcoord::test::nothrow;
using redcoord::test::with_connection;

// The value of the sample `name{labels}` in Prometheus text (-1 when absent).
double sample(const std::string& text, const std::string& series) {
    const auto at = text.find("\n" + series + " ");
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + series.size() + 2));
}

const redcoord::health_check_result* check_named(const redcoord::health_report& r,
                                                 const std::string& name) {
    for (const auto& c : r.checks)
        if (c.name == name) return &c;
    return nullptr;
}

TEST_CASE(
    "metrics: acquisitions, waits, holds, elections and requests in the Prometheus text "
    "format",
    "[metrics]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        redcoord::metrics m;
        const std::string before = m.prometheus_text();
        CHECK(sample(before, "redcoord_leases_held") == 0);
        CHECK(sample(before, "redcoord_lock_acquisitions_total{primitive=\"mutex\"}") == -1);

        m.attach(s);
        m.attach(s);  // counted once
        lock_provider locks(s);
        auto a = co_await must_acquire(locks, "orders", defaults);
        auto b = co_await must_acquire(locks, "invoices", defaults);
        std::string text = m.prometheus_text();
        CHECK(sample(text, "redcoord_lock_acquisitions_total{primitive=\"mutex\"}") == 2);
        CHECK(sample(text, "redcoord_lock_wait_duration_seconds_count{primitive=\"mutex\"}") == 2);
        CHECK(sample(text, "redcoord_leases_held") == 2);
        co_await must_release(a);
        co_await must_release(b);

        redcoord::leader_election election(s);
        auto [ec, term] = co_await election.async_campaign("scheduler", nothrow);
        REQUIRE_FALSE(ec);
        auto [rec] = co_await election.async_resign(term, nothrow);
        CHECK_FALSE(rec);

        text = m.prometheus_text();
        CHECK(sample(text, "redcoord_lock_hold_duration_seconds_count{primitive=\"mutex\"}") == 2);
        CHECK(sample(text, "redcoord_leases_held") == 0);
        CHECK(sample(text, "redcoord_elections_total{outcome=\"won\"}") == 1);
        CHECK(sample(text, "redcoord_elections_total{outcome=\"resigned\"}") == 1);
        const double requests = sample(
            text,
            "db_client_operation_duration_seconds_count{db_system_name=\"redis\",outcome=\"ok\"}");
        CHECK(requests >= 3);
        CHECK(text.find("# TYPE redcoord_lock_wait_duration_seconds histogram") !=
              std::string::npos);

        // Detached: nothing more is counted.
        m.detach(s);
        auto c = co_await must_acquire(locks, "orders", defaults);
        co_await must_release(c);
        text = m.prometheus_text();
        CHECK(sample(text, "redcoord_lock_acquisitions_total{primitive=\"mutex\"}") == 2);
    });
}

TEST_CASE("metrics: a queue's messages sent, consumed, in flight and waiting", "[metrics]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        redcoord::metrics m;
        m.attach(s);
        redcoord::reliable_queue q(s);
        for (int i = 0; i < 3; ++i) {
            auto [ec, id] =
                co_await q.async_enqueue("mail", "message " + std::to_string(i), nothrow);
            REQUIRE_FALSE(ec);
        }
        std::vector<redcoord::queue_item> taken;
        for (int i = 0; i < 2; ++i) {
            auto [ec, item] = co_await q.async_dequeue("mail", "worker-1", 0ms, nothrow);
            REQUIRE_FALSE(ec);
            REQUIRE(item);
            taken.push_back(std::move(*item));
        }
        auto [aec, acked] = co_await q.async_ack("mail", "worker-1", taken[0].raw, nothrow);
        REQUIRE_FALSE(aec);
        REQUIRE(acked);
        auto [cec] = co_await m.async_collect(nothrow);
        CHECK_FALSE(cec);
        const std::string text = m.prometheus_text();
        CHECK(sample(text,
                     "messaging_client_sent_messages_total{messaging_destination_name=\"mail\"}") ==
              3);
        CHECK(
            sample(
                text,
                "messaging_client_consumed_messages_total{messaging_destination_name=\"mail\"}") ==
            2);
        CHECK(sample(text, "redcoord_queue_acked_total{queue=\"mail\"}") == 1);
        CHECK(sample(text, "redcoord_queue_in_flight{queue=\"mail\"}") == 1);
        CHECK(sample(text, "redcoord_queue_depth{queue=\"mail\"}") == 1);
    });
}

TEST_CASE("health: a healthy deployment, its leaders and its nodes' clocks", "[health]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        redcoord::membership members(s);
        const std::string self = "node-a";
        auto [jec] = co_await members.async_join(self, nothrow);
        REQUIRE_FALSE(jec);
        redcoord::leader_election election(s);
        auto [ec, term] = co_await election.async_campaign("scheduler", nothrow);
        REQUIRE_FALSE(ec);

        const redcoord::health_options opts;  // named: see async_check_health
        auto [hec, report] = co_await redcoord::async_check_health(s, opts, nothrow);
        REQUIRE_FALSE(hec);
        INFO(report.to_json());
        CHECK(report.status == health_status::healthy);
        CHECK(report.latency > 0us);
        CHECK(report.probe_fencing_token > 0);
        REQUIRE(report.leaders.size() == 1);
        CHECK(report.leaders[0].name == "scheduler");
        CHECK(report.leaders[0].node == "node-a");
        CHECK(report.leaders[0].fencing_token == term.fencing_token());
        CHECK(report.maxmemory_policy == "noeviction");
        REQUIRE(report.clocks.size() == 1);
        CHECK(report.clocks[0].node == "node-a");
        for (const char* name :
             {"connection", "probe_lock", "leaders", "memory_policy", "clock_drift"}) {
            INFO(name);
            const auto* c = check_named(report, name);
            REQUIRE(c);
            CHECK(c->status == health_status::healthy);
        }
        // The probe lock was released.
        lock_provider locks(s);
        auto probe = co_await must_acquire(locks, "health-check:node-a", defaults);
        CHECK(probe.fencing_token() > report.probe_fencing_token);
        co_await must_release(probe);

        const auto json = boost::json::parse(report.to_json()).as_object();
        CHECK(json.at("status").as_string() == "healthy");
        CHECK(json.at("leaders").as_array().size() == 1);
        CHECK(json.at("checks").as_array().size() == 5);
    });
}

TEST_CASE("health: an evicting server and a drifting node clock are degraded",
          "[health][single_server]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        co_await command(conn, "CONFIG", "SET", "maxmemory-policy", "allkeys-lru");
        // A heartbeat written by a node whose clock is an hour ahead.
        const auto ahead = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch() + 1h)
                               .count();
        co_await command(conn, "SET", s.keys().heartbeat("fast-clock"),
                         "{\"node\":\"fast-clock\",\"timestamp\":" + std::to_string(ahead) +
                             ",\"ttl_ms\":30000}",
                         "PX", "30000");
        co_await command(conn, "SADD", s.keys().registry(), "fast-clock");
        redcoord::health_options o;
        o.leaders = false;
        auto [ec, report] = co_await redcoord::async_check_health(s, o, nothrow);
        REQUIRE_FALSE(ec);
        INFO(report.to_json());
        CHECK(report.status == health_status::degraded);
        REQUIRE(check_named(report, "memory_policy"));
        CHECK(check_named(report, "memory_policy")->status == health_status::degraded);
        REQUIRE(check_named(report, "clock_drift"));
        CHECK(check_named(report, "clock_drift")->status == health_status::degraded);
        CHECK(report.max_clock_drift > 59min);
        CHECK(check_named(report, "leaders") == nullptr);
        co_await command(conn, "CONFIG", "SET", "maxmemory-policy", "noeviction");
    });
}

TEST_CASE("health: a server that does not answer is unhealthy, bad options are named",
          "[health][single_server]") {
    with_connection([](redcoord::connection& conn, auto& srv) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        redcoord::health_options bad;
        bad.probe_ttl = 0ms;
        auto [bec, bad_report] = co_await redcoord::async_check_health(s, bad, nothrow);
        CHECK(bec == redcoord::error::invalid_argument);
        REQUIRE(bad_report.checks.size() == 1);
        CHECK(bad_report.checks[0].description.find("probe_ttl") != std::string::npos);

        co_await command(conn, "PING");
        srv.stop();
        const redcoord::health_options defaults_health;
        auto [ec, report] = co_await redcoord::async_check_health(s, defaults_health, nothrow);
        CHECK_FALSE(ec);
        CHECK(report.status == health_status::unhealthy);
        REQUIRE(check_named(report, "connection"));
        CHECK(check_named(report, "connection")->status == health_status::unhealthy);
    });
}

TEST_CASE("status server: /metrics and /health over HTTP, loopback only", "[metrics][health]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        redcoord::metrics m;
        m.attach(s);
        redcoord::status_server_options so;
        so.listen = "127.0.0.1:0";
        redcoord::status_server server(s, &m, so);
        const auto at = server.local_endpoint();
        CHECK(at.port() != 0);
        bool ended = false;
        boost::system::error_code run_ec;
        server.async_run([&](boost::system::error_code ec) {
            run_ec = ec;
            ended = true;
        });
        lock_provider locks(s);
        auto l = co_await must_acquire(locks, "orders", defaults);

        const auto metrics = co_await redcoord::test::http_get(at, "/metrics");
        CHECK(metrics.status == 200);
        CHECK(metrics.content_type.find("text/plain; version=0.0.4") == 0);
        CHECK(sample(metrics.body, "redcoord_lock_acquisitions_total{primitive=\"mutex\"}") == 1);
        CHECK(sample(metrics.body, "redcoord_leases_held") == 1);

        const auto health = co_await redcoord::test::http_get(at, "/health");
        CHECK(health.status == 200);
        CHECK(health.content_type == "application/json");
        CHECK(boost::json::parse(health.body).at("status").as_string() == "healthy");
        CHECK(health.body.find("password") == std::string::npos);

        const auto missing = co_await redcoord::test::http_get(at, "/nothing");
        CHECK(missing.status == 404);
        co_await must_release(l);

        server.stop();
        CHECK(co_await redcoord::test::wait_for([&] { return ended; }));
        CHECK(run_ec == asio::error::operation_aborted);

        for (const char* listen : {"0.0.0.0:0", "localhost:80", "127.0.0.1", "127.0.0.1:99999"}) {
            INFO(listen);
            redcoord::status_server_options bad;
            bad.listen = listen;
            redcoord::test::check_bad_config([&] { redcoord::status_server refused(s, &m, bad); },
                                             "listen");
        }
    });
}

}  // namespace
