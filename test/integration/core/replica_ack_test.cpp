// Replica acknowledgement against a real master and a real replica (replicaof): WAIT runs on
// the connection whose writes it confirms, and session_options::replica_ack confirms grants and
// renewals with it. A replica stopped with SIGSTOP acknowledges nothing.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <thread>

#include "async_test.hpp"
#include "connection_helpers.hpp"
#include "lease_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::lease;
using redcoord::lock_provider;
using redcoord::session;
using redcoord::test::command;
using redcoord::test::config_for;
using redcoord::test::eventually;
using redcoord::test::must_acquire;
using redcoord::test::nothrow;
using redcoord::test::redis_options;
using redcoord::test::redis_server;
using redcoord::test::require_ok;
using redcoord::test::run_async;

redis_options replica_of(const redis_server& master) {
    redis_options o;
    o.extra_config = {"replicaof 127.0.0.1 " + std::to_string(master.port())};
    return o;
}

// A master and one replica of it, linked (the master lists the replica as online).
struct replicated_servers {
    redis_server master;
    redis_server replica{replica_of(master)};

    replicated_servers() {
        const auto until = std::chrono::steady_clock::now() + 30s;
        while (master.cli({"INFO", "replication"}).find("state=online") == std::string::npos) {
            if (std::chrono::steady_clock::now() >= until)
                FAIL("the replica did not link: " << master.cli({"INFO", "replication"}));
            std::this_thread::sleep_for(10ms);
        }
    }
};

// Runs body(conn, servers) with a connection to the master.
template <class Body>
void with_replica(Body body, redcoord::config cfg_changes(redcoord::config) = nullptr) {
    replicated_servers servers;
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            redcoord::connection conn(ioc.get_executor());
            auto cfg = config_for(servers.master);
            if (cfg_changes) cfg = cfg_changes(std::move(cfg));
            conn.async_run(cfg, asio::detached);
            co_await body(conn, servers);
            conn.cancel();
        },
        60s);
}

redcoord::session_options with_replica_ack(int replicas, std::chrono::milliseconds timeout) {
    redcoord::session_options so;
    so.replica_ack.replicas = replicas;
    so.replica_ack.timeout = timeout;
    return so;
}

asio::awaitable<std::string> wait_replicas(redcoord::connection& conn, int replicas,
                                           int timeout_ms) {
    co_return co_await command(conn, "WAIT", replicas, timeout_ms);
}

TEST_CASE("replica_ack: WAIT runs on the connection whose writes it confirms",
          "[replica_ack][single_server]") {
    with_replica([](redcoord::connection& conn, replicated_servers& srv) -> asio::awaitable<void> {
        co_await command(conn, "SET", "k", "1");
        {
            const auto awaited = co_await wait_replicas(conn, 1, 10000);
            CHECK(awaited == "1");
        }

        // A paused replica acknowledges nothing new. On a connection without writes of its
        // own, WAIT would count it anyway (every replica has acknowledged "nothing").
        srv.replica.pause();
        co_await command(conn, "SET", "k", "2");
        {
            const auto awaited = co_await wait_replicas(conn, 1, 200);
            CHECK(awaited == "0");
        }
        CHECK(conn.get_usage().blocking_connections == 0);

        srv.replica.resume();
        {
            const auto awaited = co_await wait_replicas(conn, 1, 10000);
            CHECK(awaited == "1");
        }
        CHECK(conn.get_usage().blocking_connections == 0);
    });
}

// Health checks every 200 ms and requests that time out after 500 ms: a WAIT of 1500 ms must
// neither fail the connection for its silence nor time out.
redcoord::config impatient(redcoord::config cfg) {
    cfg.health_check_interval = 200ms;
    cfg.request_timeout = 500ms;
    return cfg;
}

TEST_CASE("replica_ack: a WAIT in flight keeps the connection up and its pipeline in order",
          "[replica_ack][single_server]") {
    with_replica(
        [](redcoord::connection& conn, replicated_servers& srv) -> asio::awaitable<void> {
            co_await command(conn, "SET", "k", "1");
            srv.replica.pause();
            co_await command(conn, "SET", "k", "2");

            redcoord::request wait;
            wait.push("WAIT", 1, 1500);
            std::string acked;
            redcoord::diagnostics wait_diag;
            std::optional<error_code> wait_ec;
            conn.async_exec(wait, acked, wait_diag, [&](error_code ec, std::size_t) {
                wait_ec = ec;
            });
            // Queued behind the WAIT: answered after it, with what the connection wrote. Its
            // own deadline counts while it waits: it needs one longer than the WAIT's.
            redcoord::request::config get_cfg;
            get_cfg.timeout = 10s;
            redcoord::request get(get_cfg);
            get.push("GET", "k");
            std::string value;
            redcoord::diagnostics get_diag;
            auto [ec, n] = co_await conn.async_exec(get, value, get_diag, nothrow);
            require_ok(ec, get_diag);
            CHECK(value == "2");
            REQUIRE(wait_ec.has_value());
            INFO(wait_ec->message() << ": " << wait_diag.message());
            CHECK_FALSE(*wait_ec);
            CHECK(acked == "0");
            CHECK(conn.get_usage().connection_losses == 0);
            CHECK(conn.get_usage().blocking_connections == 0);
        },
        &impatient);
}

TEST_CASE("replica_ack: bad options are refused", "[replica_ack]") {
    asio::io_context ioc;
    redcoord::connection conn(ioc.get_executor());
    auto refused = [&](redcoord::session_options so, std::string_view field) {
        INFO(field);
        try {
            session s(conn, so);
            FAIL("accepted");
        } catch (const redcoord::error_with_diagnostics& e) {
            CHECK(e.code() == redcoord::error::bad_config);
            CHECK(e.get_diagnostics().message().find(field) != std::string::npos);
        }
    };
    refused(with_replica_ack(-1, 100ms), "replica_ack.replicas");
    refused(with_replica_ack(1, 0ms), "replica_ack.timeout");
    refused(with_replica_ack(1, -5ms), "replica_ack.timeout");
    // Off: the timeout does not matter.
    session off(conn, with_replica_ack(0, 0ms));
    CHECK(off.options().replica_ack.replicas == 0);
}

// Requests queued behind a WAIT that times out wait as long as it does.
redcoord::config patient(redcoord::config cfg) {
    cfg.request_timeout = 10s;
    return cfg;
}

TEST_CASE("replica_ack: a grant the replica did not acknowledge is released and reported",
          "[replica_ack][single_server]") {
    with_replica([](redcoord::connection& conn, replicated_servers& srv) -> asio::awaitable<void> {
        // Generous: a loaded machine's replica may take a while to acknowledge a grant.
        session s(conn, with_replica_ack(1, 1s));
        lock_provider locks(s);
        redcoord::acquire_options opts;
        opts.ttl = 10s;
        opts.wait = 0ms;

        auto held = co_await must_acquire(locks, "acked", opts);
        {
            const auto awaited = co_await command(conn, "EXISTS", held.key());
            CHECK(awaited == "1");
        }

        srv.replica.pause();
        redcoord::diagnostics diag;
        auto [ec, l] = co_await locks.async_acquire("unacked", opts, diag, nothrow);
        INFO(ec.message() << ": " << diag.message());
        CHECK(ec == redcoord::error::replicas_not_acknowledged);
        CHECK_FALSE(l);
        CHECK(diag.message().find("0 of 1") != std::string::npos);
        CHECK(diag.message().find("unacked") != std::string::npos);
        // Released before the failure was reported.
        {
            const auto awaited = co_await command(conn, "EXISTS", s.keys().lock("unacked"));
            CHECK(awaited == "0");
        }

        auto [ec2, l2] = co_await locks.async_try_acquire("unacked-try", opts, diag, nothrow);
        CHECK(ec2 == redcoord::error::replicas_not_acknowledged);
        CHECK_FALSE(l2);
        {
            const auto awaited = co_await command(conn, "EXISTS", s.keys().lock("unacked-try"));
            CHECK(awaited == "0");
        }

        CHECK(held.is_held());
        CHECK(conn.get_usage().connection_losses == 0);
    }, &patient);
}

TEST_CASE("replica_ack: unacknowledged renewals lose the lease by its deadline",
          "[replica_ack][single_server]") {
    with_replica([](redcoord::connection& conn, replicated_servers& srv) -> asio::awaitable<void> {
        session s(conn, with_replica_ack(1, 1s));
        lock_provider locks(s);
        redcoord::acquire_options opts;
        opts.ttl = 4500ms;
        auto l = co_await must_acquire(locks, "renewed", opts);
        co_await eventually([&] { return l.renewals() >= 1; }, 20s, "an acknowledged renewal");
        CHECK(l.is_held());

        // Redis goes on renewing it; the replica does not acknowledge, so it is not trusted.
        srv.replica.pause();
        co_await eventually([&] { return !l.is_held(); }, 20s, "the lease lost");
        CHECK(l.get_status() == lease::status::lost);
        CHECK(l.lost_reason() == redcoord::error::lease_lost);
        CHECK(conn.get_usage().connection_losses == 0);
    }, &patient);
}

}  // namespace
