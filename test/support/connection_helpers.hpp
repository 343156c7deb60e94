// Helpers shared by the integration tests: configs with short timeouts, one-shot commands,
// polling waits and a connection kept up in the background.
#pragma once

#include "async_test.hpp"
#include "redis_server.hpp"

#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/error_code.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <string>
#include <string_view>

namespace redcoord::test {

// Completion token that reports errors as a tuple instead of throwing.
inline constexpr auto nothrow = boost::asio::as_tuple(boost::asio::use_awaitable);

// Short timeouts on top of whatever cfg says about the server, so failures show quickly.
inline redcoord::config with_short_timeouts(redcoord::config cfg) {
    using namespace std::chrono_literals;
    cfg.connect_timeout = 1s;
    cfg.request_timeout = 2s;
    cfg.health_check_interval = 200ms;
    cfg.reconnect_wait_min = 20ms;
    cfg.reconnect_wait_max = 200ms;
    return cfg;
}

// A config for the fixture's plain port, with short timeouts so failures show quickly.
inline redcoord::config config_for(const redis_server& srv) {
    redcoord::config cfg;
    cfg.endpoints = {redcoord::endpoint{"127.0.0.1", srv.port()}};
    return with_short_timeouts(std::move(cfg));
}

// Fails the test, showing the error and the diagnostics, unless ec is success.
inline void require_ok(boost::system::error_code ec, const redcoord::diagnostics& diag) {
    INFO(ec.message() << ": " << diag.message());
    REQUIRE_FALSE(ec);
}

// Runs one command on the connection, which must succeed, and returns its reply as a string.
template <class... Args>
boost::asio::awaitable<std::string> command(redcoord::connection& conn, std::string_view name,
                                            const Args&... args) {
    redcoord::request req;
    req.push(name, args...);
    std::string reply;
    redcoord::diagnostics diag;
    auto [ec, n] = co_await conn.async_exec(req, reply, diag, nothrow);
    require_ok(ec, diag);
    co_return reply;
}

// Waits, a few milliseconds at a time, until pred() holds.
inline boost::asio::awaitable<void> wait_until(std::function<bool()> pred) {
    using namespace std::chrono_literals;
    boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
    while (!pred()) {
        timer.expires_after(5ms);
        co_await timer.async_wait(boost::asio::use_awaitable);
    }
}

// Runs `body(conn, srv)` with a connection to a fresh server, kept up in the background.
template <class Body>
void with_connection(Body body, std::chrono::milliseconds deadline = std::chrono::seconds(30)) {
    redis_server srv;
    run_async(
        [&](boost::asio::io_context& ioc) -> boost::asio::awaitable<void> {
            redcoord::connection conn(ioc.get_executor());
            conn.async_run(config_for(srv), boost::asio::detached);
            co_await body(conn, srv);
            conn.cancel();
        },
        deadline);
}

}  // namespace redcoord::test
