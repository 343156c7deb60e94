// Redis Sentinel against real processes: a master started by the fixture and a sentinel
// monitoring it; the connection asks the sentinel for the master and connects there.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <chrono>
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
using redcoord::test::redis_server;
using redcoord::test::run_async;
using redcoord::test::sentinel_server;

using redcoord::test::nothrow;
using redcoord::test::with_short_timeouts;
constexpr auto test_deadline = 30s;

redcoord::endpoint local(std::uint16_t port) { return {"127.0.0.1", port}; }

// A config that asks the sentinel for `service`, with short timeouts so failures show quickly.
redcoord::config sentinel_config(const sentinel_server& sentinel, std::string service) {
    redcoord::config cfg;
    cfg.endpoints = {local(sentinel.port())};
    cfg.service_name = std::move(service);
    return with_short_timeouts(std::move(cfg));
}

// Connects with cfg and SETs `key` to `value` through the connection.
void set_through(const redcoord::config& cfg, std::string_view key, std::string_view value) {
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            redcoord::connection conn(ioc.get_executor());
            conn.async_run(cfg, asio::detached);
            redcoord::request req;
            req.push("SET", key, value);
            redcoord::diagnostics diag;
            auto [ec, n] = co_await conn.async_exec(req, redcoord::ignore, diag, nothrow);
            INFO(ec.message() << ": " << diag.message());
            CHECK_FALSE(ec);
            conn.cancel();
        },
        test_deadline);
}

}  // namespace

TEST_CASE("sentinel: the connection finds the master through a sentinel",
          "[integration][sentinel][single_server]") {
    redis_server master;
    sentinel_server sentinel("mymaster", master.port());
    redcoord::config cfg;
    SECTION("config fields") { cfg = sentinel_config(sentinel, "mymaster"); }
    SECTION("comma form with serviceName") {
        cfg = redcoord::parse_config("127.0.0.1:" + std::to_string(sentinel.port()) +
                                     ",serviceName=mymaster,connectTimeout=2000");
        CHECK(cfg.service_name == "mymaster");
    }
    SECTION("a sentinel that is down comes first in the list") {
        redis_server gone;
        gone.stop();  // keeps its port, now with nobody listening
        cfg = sentinel_config(sentinel, "mymaster");
        cfg.endpoints = {local(gone.port()), local(sentinel.port())};
    }
    set_through(cfg, "sentinel:k", "via sentinel");
    CHECK(master.cli({"GET", "sentinel:k"}) == "via sentinel");
}

TEST_CASE("sentinel: an unknown service fails with sentinel_unavailable",
          "[integration][sentinel][single_server]") {
    redis_server master;
    sentinel_server sentinel("mymaster", master.port());
    auto cfg = sentinel_config(sentinel, "no-such-service");
    cfg.abort_connect = true;
    cfg.connect_retry = 1;
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            redcoord::connection conn(ioc.get_executor());
            auto [ec] = co_await conn.async_run(cfg, nothrow);
            CHECK(ec == redcoord::error::sentinel_unavailable);
            CHECK_THAT(conn.run_diagnostics().message(), Catch::Contains("no-such-service"));
        },
        test_deadline);
}

TEST_CASE("sentinel: no sentinel reachable fails with sentinel_unavailable",
          "[integration][sentinel][single_server]") {
    redis_server gone;
    gone.stop();
    redcoord::config cfg;
    cfg.endpoints = {local(gone.port())};
    cfg.service_name = "mymaster";
    cfg.connect_retry = 2;
    cfg.reconnect_wait_max = 200ms;
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            redcoord::connection conn(ioc.get_executor());
            auto [ec] = co_await conn.async_run(cfg, nothrow);
            CHECK(ec == redcoord::error::sentinel_unavailable);
        },
        test_deadline);
}
