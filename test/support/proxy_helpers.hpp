// Helpers for the tests that put a tcp_proxy (network faults) between a connection and its
// server: configs for slow networks, and a fixture with one connection through the proxy and
// one straight to the server.
#pragma once

#include <redcoord/redcoord.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>

#include "async_test.hpp"
#include "connection_helpers.hpp"
#include "redis_server.hpp"
#include "tcp_proxy.hpp"

namespace redcoord::test {

// cfg, pointed at the proxy instead of the server.
inline redcoord::config through(const tcp_proxy& proxy, redcoord::config cfg) {
    cfg.endpoints = {redcoord::endpoint{"127.0.0.1", proxy.port()}};
    return cfg;
}

// For a connection over a slow or broken network: a request waits out delays of seconds (10 s),
// so does a connection attempt, and no health-check PING declares a slow connection dead.
inline redcoord::config patient_config(const redis_server& srv) {
    using namespace std::chrono_literals;
    auto cfg = quiet_config(srv);
    cfg.connect_timeout = 10s;
    cfg.request_timeout = 10s;
    return cfg;
}

// True when PING through conn answers PONG.
inline boost::asio::awaitable<bool> ping_ok(redcoord::connection& conn) {
    redcoord::request req;
    req.push("PING");
    std::string pong;
    auto [ec, n] = co_await conn.async_exec(req, pong, nothrow);
    co_return !ec && pong == "PONG";
}

// Runs body(conn, direct, proxy, srv) with a fresh server, a proxy in front of it, `conn`
// connected through the proxy (configured by cfg_of, then pointed at the proxy) and `direct`
// connected to the server itself (config_for). Both are kept up in the background; `conn` has
// answered a PING before the body starts, so the body may add faults at once.
template <class Body>
void with_proxy(Body body, redcoord::config (*cfg_of)(const redis_server&) = &quiet_config,
                std::chrono::milliseconds deadline = std::chrono::seconds(40)) {
    redis_server srv;
    // A cluster's clients go straight to every master, whatever stands in front of one of them.
    srv.require_single_server("with_proxy");
    tcp_proxy proxy(srv.port());
    run_async(
        [&](boost::asio::io_context& ioc) -> boost::asio::awaitable<void> {
            redcoord::connection conn(ioc.get_executor());
            conn.async_run(through(proxy, cfg_of(srv)), boost::asio::detached);
            side_connection direct(ioc.get_executor(), srv);
            REQUIRE(co_await ping_ok(conn));
            co_await body(conn, direct.conn, proxy, srv);
            conn.cancel();
        },
        deadline);
}

}  // namespace redcoord::test
