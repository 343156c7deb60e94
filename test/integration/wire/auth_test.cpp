// The connection's handshake against a real redis-server: AUTH with a password or an ACL user,
// the errors a refused AUTH gives, CLIENT SETNAME and SELECT.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

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
using redcoord::test::config_for;
using redcoord::test::nothrow;
using redcoord::test::require_ok;
constexpr auto test_deadline = 30s;

// Runs `body(conn)` with a connection kept up by async_run in the background.
template <class Body>
void with_connection(const redcoord::config& cfg, Body body) {
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            redcoord::connection conn(ioc.get_executor());
            conn.async_run(cfg, asio::detached);
            co_await body(conn);
            conn.cancel();
        },
        test_deadline);
}

struct run_failure {
    error_code ec;
    redcoord::diagnostics diag;
    std::optional<error_code> request_ec;  // of a request made before async_run
};

// async_run with one connection attempt, which is expected to fail.
run_failure failed_run(redcoord::config cfg) {
    cfg.abort_connect = true;
    cfg.connect_retry = 1;
    run_failure out;
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            redcoord::connection conn(ioc.get_executor());
            redcoord::request ping;
            ping.push("PING");
            conn.async_exec(ping, [&](error_code ec, std::size_t) { out.request_ec = ec; });
            std::tie(out.ec) = co_await conn.async_run(cfg, nothrow);
            out.diag = conn.run_diagnostics();
            // The request's completion was queued, not run, when async_run completed.
            co_await asio::post(ioc, asio::use_awaitable);
        },
        test_deadline);
    return out;
}

}  // namespace

TEST_CASE("auth: the right password is accepted", "[integration][auth]") {
    redis_server srv(redis_options{.password = "s3cret"});
    redcoord::config cfg;
    SECTION("config.password") {
        cfg = config_for(srv);
        cfg.password = "s3cret";
    }
    SECTION("password in a redis:// URL") {
        cfg = redcoord::parse_config(redcoord::test::url_for(srv, ":s3cret"));
        CHECK(cfg.password == "s3cret");
        CHECK(cfg.username.empty());
    }
    with_connection(cfg, [&](redcoord::connection& conn) -> asio::awaitable<void> {
        const auto pong = co_await command(conn, "PING");
        CHECK(pong == "PONG");
        co_await command(conn, "SET", "auth:k", "v");
        const auto value = co_await command(conn, "GET", "auth:k");
        CHECK(value == "v");
        const auto user = co_await command(conn, "ACL", "WHOAMI");
        CHECK(user == "default");
    });
    CHECK(srv.cli({"GET", "auth:k"}) == "v");
}

TEST_CASE("auth: a wrong password fails async_run with auth_failed",
          "[integration][auth]") {
    redis_server srv(redis_options{.password = "s3cret"});
    auto cfg = config_for(srv);
    cfg.password = "not-the-password";
    const auto r = failed_run(cfg);
    INFO("run_diagnostics: " << r.diag.message());
    CHECK(r.ec == redcoord::error::auth_failed);
    CHECK_THAT(r.diag.server_message(), Catch::Contains("WRONGPASS"));
    // A request waiting for the connection fails with the same error.
    REQUIRE(r.request_ec);
    CHECK(*r.request_ec == redcoord::error::auth_failed);
}

TEST_CASE("auth: no password on a server that wants one fails with auth_failed",
          "[integration][auth]") {
    redis_server srv(redis_options{.password = "s3cret"});
    const auto r = failed_run(config_for(srv));
    INFO("run_diagnostics: " << r.diag.message());
    CHECK(r.ec == redcoord::error::auth_failed);
    CHECK_THAT(r.diag.server_message(), Catch::Contains("NOAUTH"));
}

TEST_CASE("auth: an unknown ACL user fails with auth_failed and the server's text",
          "[integration][auth]") {
    redis_server srv(redis_options{.password = "s3cret", .acl = {{"alice", "wonderland"}}});
    auto cfg = config_for(srv);
    cfg.username = "mallory";
    cfg.password = "wonderland";
    const auto r = failed_run(cfg);
    INFO("run_diagnostics: " << r.diag.message());
    CHECK(r.ec == redcoord::error::auth_failed);
    CHECK_THAT(r.diag.server_message(), Catch::Contains("WRONGPASS"));
}

TEST_CASE("auth: an ACL user with its password", "[integration][auth]") {
    redis_server srv(redis_options{.password = "s3cret", .acl = {{"alice", "wonderland"}}});
    redcoord::config cfg;
    SECTION("config.username and config.password") {
        cfg = config_for(srv);
        cfg.username = "alice";
        cfg.password = "wonderland";
    }
    SECTION("user and password in a redis:// URL") {
        cfg = redcoord::parse_config(redcoord::test::url_for(srv, "alice:wonderland"));
    }
    with_connection(cfg, [&](redcoord::connection& conn) -> asio::awaitable<void> {
        const auto user = co_await command(conn, "ACL", "WHOAMI");
        CHECK(user == "alice");
    });
}

TEST_CASE("auth: the ACL user with a wrong password is refused",
          "[integration][auth]") {
    redis_server srv(redis_options{.password = "s3cret", .acl = {{"alice", "wonderland"}}});
    auto cfg = config_for(srv);
    cfg.username = "alice";
    cfg.password = "s3cret";  // the default user's password, not alice's
    const auto r = failed_run(cfg);
    INFO("run_diagnostics: " << r.diag.message());
    CHECK(r.ec == redcoord::error::auth_failed);
    CHECK_THAT(r.diag.server_message(), Catch::Contains("WRONGPASS"));
}

TEST_CASE("auth: the client name is set with the handshake", "[integration][auth]") {
    redis_server srv;
    auto cfg = config_for(srv);
    SECTION("a name of our own") {
        cfg.client_name = "auth-test-client";
        with_connection(cfg, [&](redcoord::connection& conn) -> asio::awaitable<void> {
            const auto name = co_await command(conn, "CLIENT", "GETNAME");
            CHECK(name == "auth-test-client");
        });
    }
    SECTION("the default name") {
        with_connection(cfg, [&](redcoord::connection& conn) -> asio::awaitable<void> {
            const auto name = co_await command(conn, "CLIENT", "GETNAME");
            CHECK(name == "redcoord");
        });
    }
    SECTION("no name") {
        cfg.client_name.clear();
        with_connection(cfg, [&](redcoord::connection& conn) -> asio::awaitable<void> {
            redcoord::request req;
            req.push("CLIENT", "GETNAME");
            std::optional<std::string> name;
            redcoord::diagnostics diag;
            auto [ec, n] = co_await conn.async_exec(req, name, diag, nothrow);
            require_ok(ec, diag);
            CHECK_FALSE(name);
        });
    }
}

TEST_CASE("auth: a client name the server refuses fails with handshake_failed",
          "[integration][auth]") {
    redis_server srv;
    auto cfg = config_for(srv);
    cfg.client_name = "has a space";
    const auto r = failed_run(cfg);
    INFO("run_diagnostics: " << r.diag.message());
    CHECK(r.ec == redcoord::error::handshake_failed);
    CHECK_THAT(r.diag.server_message(), Catch::Contains("cannot contain spaces"));
}

TEST_CASE("auth: SELECT the configured database", "[integration][auth][single_server]") {
    redis_server srv(redis_options{.password = "s3cret"});
    redcoord::config cfg;
    SECTION("config.database") {
        cfg = config_for(srv);
        cfg.password = "s3cret";
        cfg.database = 3;
    }
    SECTION("database in a redis:// URL path") {
        cfg = redcoord::parse_config("redis://:s3cret@127.0.0.1:" + std::to_string(srv.port()) +
                                     "/3");
        CHECK(cfg.database == 3);
    }
    with_connection(cfg, [&](redcoord::connection& conn) -> asio::awaitable<void> {
        co_await command(conn, "SET", "auth:db-key", "in-db-3");
    });
    CHECK(srv.cli({"-n", "3", "GET", "auth:db-key"}) == "in-db-3");
    CHECK(srv.cli({"-n", "0", "EXISTS", "auth:db-key"}) == "0");
}

TEST_CASE("auth: a database the server does not have fails with handshake_failed",
          "[integration][auth][single_server]") {
    redis_server srv(redis_options{.extra_config = {"databases 4"}});
    auto cfg = config_for(srv);
    cfg.database = 7;
    const auto r = failed_run(cfg);
    INFO("run_diagnostics: " << r.diag.message());
    CHECK(r.ec == redcoord::error::handshake_failed);
    CHECK_THAT(r.diag.server_message(), Catch::Contains("out of range"));
}
