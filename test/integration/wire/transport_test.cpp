// The transports other than plain TCP against a real redis-server: TLS (with the server's
// self-signed certificate, and refused when the certificate cannot be trusted) and Unix-domain
// sockets, each configured by hand and by connection string.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <tuple>

#include "async_test.hpp"
#include "connection_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::test::redis_options;
using redcoord::test::redis_server;
using redcoord::test::run_async;

using redcoord::test::command;
using redcoord::test::nothrow;
using redcoord::test::require_ok;
using redcoord::test::wait_until;
using redcoord::test::with_short_timeouts;
constexpr auto test_deadline = 30s;

// A TLS config for the fixture's TLS port, trusting its self-signed certificate.
redcoord::config tls_config_for(const redis_server& srv) {
    redcoord::config cfg;
    cfg.endpoints = {redcoord::endpoint{"127.0.0.1", srv.tls_port()}};
    cfg.use_tls = true;
    cfg.tls_ca_file = srv.ca_file();
    return with_short_timeouts(cfg);
}

asio::awaitable<void> ping_set_get(redcoord::connection& conn, std::string_view key) {
    const auto pong = co_await command(conn, "PING");
    CHECK(pong == "PONG");
    co_await command(conn, "SET", key, "over the wire");
    const auto value = co_await command(conn, "GET", key);
    CHECK(value == "over the wire");
}

// Connects with cfg and checks PING, SET and GET; with `restart`, restarts that server and
// checks them again once the connection is back. The key is left for the caller to inspect.
void check_round_trip(const redcoord::config& cfg, std::string_view key,
                      redis_server* restart = nullptr) {
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            redcoord::connection conn(ioc.get_executor());
            conn.async_run(cfg, asio::detached);
            co_await ping_set_get(conn, key);
            CHECK(conn.get_usage().connects == 1);
            if (restart) {
                restart->restart();
                co_await wait_until([&] { return conn.get_usage().connects == 2; });
                co_await ping_set_get(conn, key);
            }
            conn.cancel();
        },
        test_deadline);
}

// async_run with one connection attempt, which is expected to fail.
// message: set to the run diagnostics' message when given.
error_code failed_run(redcoord::config cfg, std::string* message = nullptr) {
    cfg.abort_connect = true;
    cfg.connect_retry = 1;
    error_code ec;
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            redcoord::connection conn(ioc.get_executor());
            std::tie(ec) = co_await conn.async_run(cfg, nothrow);
            INFO("run diagnostics: " << conn.run_diagnostics().message());
            CHECK_FALSE(conn.run_diagnostics().empty());
            if (message) *message = conn.run_diagnostics().message();
        },
        test_deadline);
    return ec;
}

}  // namespace

TEST_CASE("tls: requests over TLS trusting the server's certificate",
          "[integration][tls][single_server]") {
    redis_server srv(redis_options{.tls = true});
    redcoord::config cfg;
    SECTION("config fields") { cfg = tls_config_for(srv); }
    SECTION("rediss:// URL with sslCaFile") {
        cfg = with_short_timeouts(
            redcoord::parse_config("rediss://127.0.0.1:" + std::to_string(srv.tls_port()) +
                                   "?sslCaFile=" + srv.ca_file()));
        CHECK(cfg.use_tls);
        CHECK(cfg.tls_verify);
        CHECK(cfg.tls_ca_file == srv.ca_file());
    }
    SECTION("comma form with ssl=true and sslCaFile") {
        cfg = with_short_timeouts(
            redcoord::parse_config("127.0.0.1:" + std::to_string(srv.tls_port()) +
                                   ",ssl=true,sslCaFile=" + srv.ca_file()));
        CHECK(cfg.use_tls);
    }
    SECTION("the certificate's DNS name given for verification") {
        cfg = tls_config_for(srv);
        cfg.tls_server_name = "localhost";
    }
    check_round_trip(cfg, "tls:k");
    CHECK(srv.cli_tls({"GET", "tls:k"}) == "over the wire");
}

TEST_CASE("tls: with password and database", "[integration][tls][single_server]") {
    redis_server srv(redis_options{.password = "pw", .tls = true});
    auto cfg = tls_config_for(srv);
    cfg.password = "pw";
    cfg.database = 2;
    check_round_trip(cfg, "tls:db-key");
    CHECK(srv.cli({"-n", "2", "GET", "tls:db-key"}) == "over the wire");
}

TEST_CASE("tls: the connection comes back after a restart", "[integration][tls][single_server]") {
    redis_server srv(redis_options{.password = "pw", .tls = true});
    auto cfg = tls_config_for(srv);
    cfg.password = "pw";
    check_round_trip(cfg, "tls:restarted", &srv);
    CHECK(srv.cli_tls({"GET", "tls:restarted"}) == "over the wire");
}

TEST_CASE("tls: a certificate that cannot be trusted fails the handshake",
          "[integration][tls][single_server]") {
    redis_server srv(redis_options{.tls = true});
    auto cfg = tls_config_for(srv);
    SECTION("system CAs, which do not know the self-signed certificate") {
        cfg.tls_ca_file.clear();
    }
    SECTION("a name the certificate does not carry") {
        cfg.tls_server_name = "not-the-server.example";
    }
    REQUIRE(cfg.tls_verify);
    const auto ec = failed_run(cfg);
    INFO(ec.message());
    CHECK(ec);
    CHECK(ec != asio::error::operation_aborted);
    CHECK(ec != redcoord::error::connect_timeout);
    CHECK_THAT(ec.message(), Catch::Contains("certificate verify failed"));
}

TEST_CASE("tls: an unreadable CA file fails async_run", "[integration][tls][single_server]") {
    redis_server srv(redis_options{.tls = true});
    auto cfg = tls_config_for(srv);
    cfg.tls_ca_file = srv.dir() + "/no-such-ca.pem";
    CHECK(failed_run(cfg));
}

TEST_CASE("tls: verification off accepts the untrusted certificate",
          "[integration][tls][single_server]") {
    redis_server srv(redis_options{.tls = true});
    auto cfg = tls_config_for(srv);
    cfg.tls_ca_file.clear();
    cfg.tls_verify = false;
    check_round_trip(cfg, "tls:unverified");
}

TEST_CASE("unix: requests over a Unix-domain socket", "[integration][unix][single_server]") {
    redis_server srv(redis_options{.unix_socket = true});
    redcoord::config cfg;
    SECTION("config.unix_socket") {
        cfg = with_short_timeouts(redcoord::config{});
        cfg.unix_socket = srv.unix_path();
    }
    SECTION("unix:// URL") {
        cfg = with_short_timeouts(redcoord::parse_config("unix://" + srv.unix_path()));
        CHECK(cfg.unix_socket == srv.unix_path());
    }
    check_round_trip(cfg, "unix:k");
    CHECK(srv.cli_unix({"GET", "unix:k"}) == "over the wire");
}

TEST_CASE("unix: database from the unix:// URL query", "[integration][unix][single_server]") {
    redis_server srv(redis_options{.unix_socket = true});
    const auto cfg =
        with_short_timeouts(redcoord::parse_config("unix://" + srv.unix_path() + "?db=5"));
    CHECK(cfg.database == 5);
    check_round_trip(cfg, "unix:db-key");
    CHECK(srv.cli_unix({"-n", "5", "GET", "unix:db-key"}) == "over the wire");
}

TEST_CASE("unix: the connection comes back after a restart", "[integration][unix][single_server]") {
    redis_server srv(redis_options{.unix_socket = true});
    auto cfg = with_short_timeouts(redcoord::config{});
    cfg.unix_socket = srv.unix_path();
    check_round_trip(cfg, "unix:restarted", &srv);
    CHECK(srv.cli_unix({"GET", "unix:restarted"}) == "over the wire");
}

TEST_CASE("unix: a socket path nobody listens on fails async_run",
          "[integration][unix][single_server]") {
    redis_server srv(redis_options{.unix_socket = true});
    auto cfg = with_short_timeouts(redcoord::config{});
    cfg.unix_socket = srv.dir() + "/nobody-here.sock";
    std::string message;
    const auto ec = failed_run(cfg, &message);
    CHECK(ec);
    CHECK(ec != redcoord::error::connect_timeout);
    // The message names the socket it tried, not a TCP endpoint.
    CHECK_THAT(message, Catch::Contains("connect to " + cfg.unix_socket));
    CHECK_THAT(message, !Catch::Contains("127.0.0.1"));
}
