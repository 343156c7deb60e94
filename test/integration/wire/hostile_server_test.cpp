// Servers that misbehave, and a real one that refuses: replies sent unprompted, a handshake
// answered with the wrong thing, a server that trickles a byte at a time, a reply bigger than
// the connection keeps, and a refused subscription pipelined with other requests. The scripted
// servers speak just enough RESP3 over a loopback socket; the refusals come from a real
// redis-server and its ACLs.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <regex>
#include <string>

#include "async_test.hpp"
#include "connection_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::test::command;
using redcoord::test::eventually;
using redcoord::test::nothrow;
using redcoord::test::redis_server;
using redcoord::test::run_async;
using redcoord::test::sleep_for;

const std::string hello_map =
    "%3\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:5\r\n";

// A scripted server on a free loopback port. For each connection it reads the handshake and
// answers it with `on_handshake(nonce)`, then answers each later read with `on_request(data)`.
struct scripted_server {
    using reply_fn = std::function<std::string(const std::string& nonce)>;
    using request_fn = std::function<asio::awaitable<void>(tcp::socket&, const std::string&)>;

    tcp::acceptor acceptor;
    reply_fn on_handshake;
    request_fn on_request;
    int connections = 0;

    scripted_server(asio::io_context& ioc, reply_fn hs, request_fn rq)
        : acceptor(ioc, {asio::ip::make_address("127.0.0.1"), 0}),
          on_handshake(std::move(hs)),
          on_request(std::move(rq)) {
        asio::co_spawn(ioc, accept_loop(), asio::detached);
    }

    std::uint16_t port() const { return acceptor.local_endpoint().port(); }

    redcoord::config config() const {
        redcoord::config cfg;
        cfg.endpoints = {{"127.0.0.1", port()}};
        return redcoord::test::with_short_timeouts(std::move(cfg));
    }

    asio::awaitable<void> accept_loop() {
        for (;;) {
            auto [ec, sock] = co_await acceptor.async_accept(nothrow);
            if (ec) co_return;
            ++connections;
            asio::co_spawn(acceptor.get_executor(), serve(std::move(sock)), asio::detached);
        }
    }

    asio::awaitable<void> serve(tcp::socket sock) {
        std::string in;
        // The handshake ends with PING <nonce>.
        static const std::regex nonce_re("redcoord-handshake-[0-9]+");
        std::smatch m;
        for (;;) {
            auto [ec, n] = co_await asio::async_read_until(sock, asio::dynamic_buffer(in),
                                                           "\r\n", nothrow);
            if (ec) co_return;
            if (std::regex_search(in, m, nonce_re) &&
                in.find("\r\n", m.position() + m.length()) != std::string::npos)
                break;
        }
        const std::string reply = on_handshake(m.str());
        in.clear();
        if (reply.empty()) co_return;
        auto [wec, wn] = co_await asio::async_write(sock, asio::buffer(reply), nothrow);
        if (wec) co_return;
        char buf[4096];
        for (;;) {
            auto [ec, n] = co_await sock.async_read_some(asio::buffer(buf), nothrow);
            if (ec) co_return;
            co_await on_request(sock, std::string(buf, n));
        }
    }
};

std::string bulk(const std::string& s) {
    return "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n";
}

// (A co_await inside CHECK() is evaluated twice by g++ 12, sending the command twice: the
// replies are awaited outside it.)

// Answers every PING in the data with PONG.
asio::awaitable<void> pong(tcp::socket& sock, const std::string& data) {
    std::string out;
    for (auto at = data.find("PING"); at != std::string::npos; at = data.find("PING", at + 1))
        out += "+PONG\r\n";
    co_await asio::async_write(sock, asio::buffer(out), nothrow);
}

}  // namespace

TEST_CASE("hostile server: replies sent unprompted after HELLO never answer a request",
          "[integration][hostile][single_server]") {
    run_async([](asio::io_context& ioc) -> asio::awaitable<void> {
        // After HELLO's map: +OK and :1 nobody asked for, then the nonce's echo.
        scripted_server srv(
            ioc, [](const std::string& nonce) { return hello_map + "+OK\r\n:1\r\n" + bulk(nonce); },
            pong);
        redcoord::connection conn(ioc.get_executor());
        // A quiet health check: a loaded machine must not drop this connection on its own.
        auto cfg = srv.config();
        cfg.health_check_interval = 30s;
        conn.async_run(cfg, asio::detached);
        {
            const auto reply = co_await command(conn, "PING");
            CHECK(reply == "PONG");
        }
        {
            const auto reply = co_await command(conn, "PING");
            CHECK(reply == "PONG");
        }
        CHECK(conn.get_usage().connection_losses == 0);
        CHECK(conn.get_usage().unexpected_replies == 0);
        conn.cancel();
    });
}

TEST_CASE("hostile server: a reply while nothing awaits one replaces the connection",
          "[integration][hostile][single_server]") {
    run_async([](asio::io_context& ioc) -> asio::awaitable<void> {
        // Each PING gets PONG and then an extra +OK: never handed to the next request.
        scripted_server srv(
            ioc, [](const std::string& nonce) { return hello_map + bulk(nonce); },
            [](tcp::socket& sock, const std::string& data) -> asio::awaitable<void> {
                co_await pong(sock, data);
                co_await asio::async_write(sock, asio::buffer(std::string("+OK\r\n")), nothrow);
            });
        redcoord::connection conn(ioc.get_executor());
        // No health-check PING in flight: the extra +OK must find nothing awaiting a reply.
        auto cfg = srv.config();
        cfg.health_check_interval = 0ms;
        conn.async_run(cfg, asio::detached);
        {
            const auto reply = co_await command(conn, "PING");
            CHECK(reply == "PONG");
        }
        co_await eventually([&] { return conn.get_usage().connection_losses >= 1; }, 10s,
                            "the connection replaced");
        CHECK(conn.get_usage().unexpected_replies >= 1);
        CHECK(conn.run_diagnostics().message().find("'OK'") != std::string::npos);
        // The next request is answered by the next connection, with its own reply.
        {
            const auto reply = co_await command(conn, "PING");
            CHECK(reply == "PONG");
        }
        conn.cancel();
    });
}

TEST_CASE("hostile server: a HELLO answered with an integer is not a handshake",
          "[integration][hostile][single_server]") {
    run_async([](asio::io_context& ioc) -> asio::awaitable<void> {
        scripted_server srv(
            ioc, [](const std::string& nonce) { return ":1\r\n+OK\r\n" + bulk(nonce); }, pong);
        redcoord::connection conn(ioc.get_executor());
        auto cfg = srv.config();
        cfg.abort_connect = true;
        cfg.connect_retry = 1;
        auto [ec] = co_await conn.async_run(cfg, nothrow);
        CHECK(ec == redcoord::error::handshake_failed);
        CHECK(conn.run_diagnostics().message().find("HELLO 3 was answered with number") !=
              std::string::npos);
        CHECK(conn.get_usage().connects == 0);
    });
}

TEST_CASE("hostile server: one that trickles a byte at a time is declared dead",
          "[integration][hostile][single_server]") {
    run_async([](asio::io_context& ioc) -> asio::awaitable<void> {
        // Every request gets the start of a 1000-byte string, one byte each 50 ms: bytes keep
        // arriving, no reply ever completes.
        scripted_server srv(
            ioc, [](const std::string& nonce) { return hello_map + bulk(nonce); },
            [](tcp::socket& sock, const std::string&) -> asio::awaitable<void> {
                co_await asio::async_write(sock, asio::buffer(std::string("$1000\r\n")), nothrow);
                asio::steady_timer t(sock.get_executor());
                for (int i = 0; i < 1000; ++i) {
                    t.expires_after(50ms);
                    co_await t.async_wait(nothrow);
                    auto [ec, n] = co_await asio::async_write(sock, asio::buffer("x", 1), nothrow);
                    if (ec) co_return;
                }
            });
        redcoord::connection conn(ioc.get_executor());
        auto cfg = srv.config();
        cfg.health_check_interval = 200ms;
        cfg.request_timeout = 0ms;  // only the health check can end this
        conn.async_run(cfg, asio::detached);
        redcoord::request req;
        req.push("GET", "k");
        std::string value;
        redcoord::diagnostics diag;
        auto [ec, n] = co_await conn.async_exec(req, value, diag, nothrow);
        CHECK(ec == redcoord::error::connection_lost);
        CHECK(conn.get_usage().connection_losses >= 1);
        CHECK(conn.run_diagnostics().message().find("PING went unanswered") != std::string::npos);
        conn.cancel();
    });
}

TEST_CASE("hostile server: a reply past max_reply_size fails its request, the connection stays",
          "[integration][hostile]") {
    redis_server srv;
    run_async([&](asio::io_context& ioc) -> asio::awaitable<void> {
        redcoord::connection conn(ioc.get_executor());
        auto cfg = redcoord::test::quiet_config(srv);
        cfg.max_reply_size = 4 * 1024 * 1024;
        cfg.request_timeout = 30s;
        conn.async_run(cfg, asio::detached);
        // 300,000 elements: about 1.5 MB on the wire, more than 4 MiB as nodes.
        redcoord::request fill;
        for (int i = 0; i < 30; ++i)
            fill.push_range("RPUSH", "big", std::vector<std::string>(10000, "abc"));
        redcoord::ignore_t sink;
        co_await conn.async_exec(fill, sink, nothrow);

        redcoord::request big;
        big.push("LRANGE", "big", 0, -1);
        big.push("LLEN", "big");
        redcoord::generic_response all;
        redcoord::diagnostics diag;
        redcoord::request after;
        after.push("ECHO", "after");
        std::string echoed;
        auto [ec, n] = co_await conn.async_exec(big, all, diag, nothrow);
        co_await conn.async_exec(after, echoed, nothrow);
        CHECK(ec == redcoord::error::reply_too_large);
        CHECK(diag.message().find("max_reply_size") != std::string::npos);
        CHECK(echoed == "after");
        CHECK(conn.get_usage().replies_too_large == 1);
        CHECK(conn.get_usage().connection_losses == 0);
        conn.cancel();
    });
}

TEST_CASE("hostile server: a refused SUBSCRIBE gets its error, pipelined requests theirs",
          "[integration][hostile]") {
    redis_server srv;
    // A user that may run any command on any key but use no pub/sub channel (on every master of
    // a cluster).
    for (const auto& reply : redcoord::test::cli_on_each_node(
             srv, {"ACL", "SETUSER", "nopubsub", "on", ">pw", "~*", "+@all", "resetchannels"}))
        REQUIRE(reply == "OK");
    run_async([&](asio::io_context& ioc) -> asio::awaitable<void> {
        redcoord::connection conn(ioc.get_executor());
        auto cfg = redcoord::test::quiet_config(srv);
        cfg.username = "nopubsub";
        cfg.password = "pw";
        conn.async_run(cfg, asio::detached);
        {
            const auto reply = co_await command(conn, "PING");
            CHECK(reply == "PONG");
        }

        redcoord::request sub, b, c;
        sub.push("SUBSCRIBE", "x");
        b.push("ECHO", "b");
        c.push("ECHO", "c");
        redcoord::diagnostics sub_diag;
        std::string rb, rc;
        std::optional<error_code> sub_ec, b_ec, c_ec;
        // All three are written together, before any reply.
        conn.async_exec(sub, redcoord::ignore, sub_diag,
                        [&](error_code ec, std::size_t) { sub_ec = ec; });
        conn.async_exec(b, rb, [&](error_code ec, std::size_t) { b_ec = ec; });
        conn.async_exec(c, rc, [&](error_code ec, std::size_t) { c_ec = ec; });
        co_await eventually([&] { return sub_ec && b_ec && c_ec; }, 10s, "all three answered");
        CHECK(*sub_ec == redcoord::error::server_error);
        CHECK(sub_diag.message().find("NOPERM") != std::string::npos);
        CHECK_FALSE(*b_ec);
        CHECK(rb == "b");
        CHECK_FALSE(*c_ec);
        CHECK(rc == "c");
        // Nothing shifted, nothing to restore: the connection stays, and stays quiet.
        co_await sleep_for(300ms);
        CHECK(conn.get_usage().connection_losses == 0);
        CHECK(conn.get_usage().connects == redcoord::test::masters_of(srv));
        {
            const auto reply = co_await command(conn, "ECHO", "d");
            CHECK(reply == "d");
        }
        conn.cancel();
    });
}
