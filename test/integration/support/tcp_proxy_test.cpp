// The fault proxy (test/support/tcp_proxy.hpp) between redcoord::connection and a real
// redis-server: plain forwarding, delays that keep the order of the bytes, blackholes in either
// direction, and resets. The tests assert what arrives, in which order, and which error a
// request gets; the one duration checked is a lower bound the proxy guarantees (bytes are held
// at least the delay), which a slow machine cannot break.
#include "tcp_proxy.hpp"

#include <redcoord/redcoord.hpp>

#include <boost/asio/awaitable.hpp>

#include <catch2/catch.hpp>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "async_test.hpp"
#include "connection_helpers.hpp"
#include "proxy_helpers.hpp"
#include "redis_server.hpp"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::test::command;
using redcoord::test::config_for;
using redcoord::test::direction;
using redcoord::test::eventually;
using redcoord::test::eventually_async;
using redcoord::test::nothrow;
using redcoord::test::ping_ok;
using redcoord::test::redis_server;
using redcoord::test::tcp_proxy;
using redcoord::test::with_proxy;
using steady = std::chrono::steady_clock;

// One command with its own deadline; its error.
asio::awaitable<error_code> exec_within(redcoord::connection& conn, std::chrono::milliseconds limit,
                                        std::string_view name, std::string_view arg1,
                                        std::string_view arg2) {
    redcoord::request::config rc;
    rc.timeout = limit;
    redcoord::request req(rc);
    req.push(name, arg1, arg2);
    redcoord::ignore_t ignored;
    auto [ec, n] = co_await conn.async_exec(req, ignored, nothrow);
    co_return ec;
}

// An INCR started at once (its request is queued before this returns); `reply` once done.
struct pending_incr {
    redcoord::request req;
    long long reply = 0;
    std::optional<error_code> ec;
};

std::shared_ptr<pending_incr> start_incr(redcoord::connection& conn, std::string_view key) {
    auto p = std::make_shared<pending_incr>();
    p->req.push("INCR", key);
    conn.async_exec(p->req, p->reply, [p](error_code ec, std::size_t) { p->ec = ec; });
    return p;
}

TEST_CASE("tcp proxy: commands pass through to the server", "[tcp-proxy][single_server]") {
    with_proxy([](redcoord::connection& conn, redcoord::connection& direct, tcp_proxy& proxy,
                  redis_server&) -> asio::awaitable<void> {
        {
            const auto awaited = co_await command(conn, "PING");
            CHECK(awaited == "PONG");
        }
        co_await command(conn, "SET", "through", "proxy");
        {
            const auto awaited = co_await command(direct, "GET", "through");
            CHECK(awaited == "proxy");
        }
        CHECK(proxy.accepted() >= 1);
        CHECK(proxy.open_connections() >= 1);
        CHECK(proxy.held_bytes() == 0);
    });
}

TEST_CASE("tcp proxy: with a delay each way replies arrive in order, and bytes never overtake "
          "earlier ones when the delay is shortened",
          "[tcp-proxy][single_server]") {
    with_proxy([](redcoord::connection& conn, redcoord::connection&, tcp_proxy& proxy,
                  redis_server&) -> asio::awaitable<void> {
        proxy.set_delay(300ms);

        // A round trip holds the bytes at least 300 ms each way.
        const auto sent = steady::now();
        {
            const auto awaited = co_await ping_ok(conn);
            REQUIRE(awaited);
        }
        CHECK(steady::now() - sent >= 600ms);

        // Ten pipelined INCRs: each gets the count of its place in the pipeline.
        std::vector<std::shared_ptr<pending_incr>> incrs;
        for (int i = 0; i < 10; ++i) incrs.push_back(start_incr(conn, "counter"));
        co_await eventually([&] { return incrs.back()->ec.has_value(); }, 20s, "the INCR replies");
        for (int i = 0; i < 10; ++i) {
            INFO("INCR " << i);
            CHECK_FALSE(*incrs[i]->ec);
            CHECK(incrs[i]->reply == i + 1);
        }

        // A long delay for the first INCR, none for the second: the second still reaches the
        // server after the first.
        proxy.set_delay(1500ms, direction::to_server);
        auto first = start_incr(conn, "order");
        co_await eventually([&] { return proxy.held_bytes(direction::to_server) > 0; }, 10s,
                            "the first INCR held by the proxy");
        proxy.set_delay(0ms);
        auto second = start_incr(conn, "order");
        co_await eventually([&] { return first->ec && second->ec; }, 20s, "both INCR replies");
        CHECK_FALSE(*first->ec);
        CHECK_FALSE(*second->ec);
        CHECK(first->reply == 1);
        CHECK(second->reply == 2);
    });
}

// EXISTS key through `conn` is "1".
asio::awaitable<bool> exists(redcoord::connection& conn, std::string_view key) {
    co_return co_await command(conn, "EXISTS", key) == "1";
}

TEST_CASE("tcp proxy: a blackhole holds the bytes: a request with a short timeout fails with "
          "error::timeout, and what was held is forwarded once lifted",
          "[tcp-proxy][single_server]") {
    direction dir = direction::both;
    SECTION("both directions") { dir = direction::both; }
    SECTION("towards the server only") { dir = direction::to_server; }
    SECTION("towards the client only") { dir = direction::to_client; }
    with_proxy([dir](redcoord::connection& conn, redcoord::connection& direct, tcp_proxy& proxy,
                     redis_server&) -> asio::awaitable<void> {
        std::function<asio::awaitable<bool>()> stored = [&] { return exists(direct, "k"); };
        proxy.blackhole(dir);
        {
            const auto awaited = co_await exec_within(conn, 300ms, "SET", "k", "v");
            CHECK(awaited == redcoord::error::timeout);
        }
        if (dir == direction::to_client) {
            // The server runs it; only the reply is held.
            {
                const auto awaited = co_await eventually_async(stored, 10s);
                CHECK(awaited);
            }
            co_await eventually([&] { return proxy.held_bytes(direction::to_client) > 0; }, 10s,
                                "the reply held by the proxy");
            CHECK(proxy.held_bytes(direction::to_server) == 0);
        } else {
            // The request is held: the server has not seen it.
            co_await eventually([&] { return proxy.held_bytes(direction::to_server) > 0; }, 10s,
                                "the request held by the proxy");
            {
                const auto awaited = co_await exists(direct, "k");
                CHECK_FALSE(awaited);
            }
        }

        // Once lifted, what was held is forwarded and the connection serves again.
        proxy.lift_blackhole(dir);
        co_await eventually([&] { return proxy.held_bytes() == 0; }, 10s, "the held bytes sent");
        {
            const auto awaited = co_await eventually_async(stored, 10s);
            CHECK(awaited);
        }
        {
            const auto awaited = co_await ping_ok(conn);
            CHECK(awaited);
        }
    });
}

// A plain socket connected to 127.0.0.1:port, with a receive timeout so a read cannot hang.
int raw_connect(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    timeval tv{};
    tv.tv_sec = 10;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    return fd;
}

TEST_CASE("tcp proxy: a reset sends an RST to the client, and the connection reconnects and "
          "works again",
          "[tcp-proxy][single_server]") {
    with_proxy(
        [](redcoord::connection& conn, redcoord::connection&, tcp_proxy& proxy,
           redis_server&) -> asio::awaitable<void> {
            // A plain client sees the reset as ECONNRESET, not as an orderly close.
            const auto before = proxy.accepted();
            const int fd = raw_connect(proxy.port());
            co_await eventually([&] { return proxy.accepted() > before; }, 10s,
                                "the proxy to accept");
            const auto connects = conn.get_usage().connects;
            proxy.reset_connections();
            char byte = 0;
            const auto got = ::recv(fd, &byte, 1, 0);
            const int err = errno;
            ::close(fd);
            CHECK(got == -1);
            CHECK(err == ECONNRESET);

            // The library's connection was reset too: it reconnects and serves.
            co_await eventually([&] { return conn.get_usage().connects > connects; }, 10s,
                                "a reconnect through the proxy");
            CHECK(conn.get_usage().connection_losses >= 1);
            std::function<asio::awaitable<bool>()> serves = [&] { return ping_ok(conn); };
            {
                const auto awaited = co_await eventually_async(serves, 10s);
                CHECK(awaited);
            }
        },
        &config_for);
}

}  // namespace
