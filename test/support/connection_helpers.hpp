// Helpers shared by the integration tests: configs with short timeouts, one-shot commands,
// sleeps, polling waits, concurrent callers, and connections kept up in the background.
#pragma once

#include "async_test.hpp"
#include "redis_cluster.hpp"
#include "redis_server.hpp"
#include "short_timeouts.hpp"

#include <redcoord/redcoord.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/error_code.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace redcoord::test {

// Completion token that reports errors as a tuple instead of throwing.
inline constexpr auto nothrow = boost::asio::as_tuple(boost::asio::use_awaitable);

// The fixture as a connection string: "127.0.0.1:p1,127.0.0.1:p2,...,cluster=true" (the
// masters as seeds) when it is a cluster (REDCOORD_TEST_TOPOLOGY=cluster), else its port alone.
// Worker processes take it as their first argument (worker_support.hpp's config_for).
inline std::string server_address(const redis_server& srv) {
    if (const auto* c = srv.cluster()) return c->seeds() + ",cluster=true";
    return std::to_string(srv.port());
}

// A redis:// URL of the fixture with `userinfo` ("user:password", ":password") and `path`
// ("/3"): redis+cluster:// with every master on a cluster.
inline std::string url_for(const redis_server& srv, std::string_view userinfo,
                           std::string_view path = {}) {
    std::string hosts = "127.0.0.1:" + std::to_string(srv.port());
    std::string scheme = "redis://";
    if (const auto* c = srv.cluster()) {
        hosts = c->seeds();
        scheme = "redis+cluster://";
    }
    return scheme + std::string(userinfo) + "@" + hosts + std::string(path);
}

// A config for the fixture's plain port (for its masters on a cluster), with short timeouts
// so failures show quickly.
inline redcoord::config config_for(const redis_server& srv) {
    if (srv.cluster() != nullptr) {
        return with_short_timeouts(redcoord::parse_config(server_address(srv)));
    }
    redcoord::config cfg;
    cfg.endpoints = {redcoord::endpoint{"127.0.0.1", srv.port()}};
    return with_short_timeouts(std::move(cfg));
}

// These tests count every message, and a reconnect costs messages (pub/sub keeps none).
// The fixture's 200 ms health check has been seen to drop idle connections on a loaded
// machine, so the connections here check every 30 s; a restart is still seen at once (the
// socket closes).
inline redcoord::config quiet_config(const redis_server& srv) {
    using namespace std::chrono_literals;
    auto cfg = config_for(srv);
    cfg.health_check_interval = 30s;
    return cfg;
}

// Session options naming the node.
inline redcoord::session_options as_node(std::string node) {
    redcoord::session_options so;
    so.node_id = std::move(node);
    return so;
}

// Fails the test, showing the error and the diagnostics, unless ec is success.
inline void require_ok(boost::system::error_code ec, const redcoord::diagnostics& diag) {
    INFO(ec.message() << ": " << diag.message());
    REQUIRE_FALSE(ec);
}

// The error and its diagnostics in one line, for failure messages.
inline std::string describe(boost::system::error_code ec, const redcoord::diagnostics& diag) {
    return ec.message() + ": " + diag.message();
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

// Masters behind the fixture: the cluster's, or the one server. get_usage() adds up the
// connections of a cluster's masters (connects, blocking_connections, ...).
inline std::uint64_t masters_of(const redis_server& srv) {
    if (const auto* c = srv.cluster()) return c->options().masters;
    return 1;
}

// Runs redis-cli `args` on the server, or on each master of the cluster (the nodes that started
// as masters: no failover happens in these tests), one output per node. For what a cluster
// answers node by node: DBSIZE, INFO, PUBSUB NUMSUB, SCRIPT EXISTS, CONFIG SET, ACL SETUSER...
// Blocks its thread for a redis-cli run per node.
inline std::vector<std::string> cli_on_each_node(const redis_server& srv,
                                                 const std::vector<std::string>& args) {
    const auto* c = srv.cluster();
    if (c == nullptr) return {srv.cli(args)};
    std::vector<std::string> out;
    for (std::size_t i = 0; i < c->options().masters; ++i) out.push_back(c->cli(i, args));
    return out;
}

// The number after "field:" or "field=" in INFO output (0 when absent), e.g.
// info_number(info, "cmdstat_evalsha:calls=").
inline std::uint64_t info_number(const std::string& info, std::string_view field) {
    const auto at = info.find(field);
    if (at == std::string::npos) return 0;
    return std::stoull(info.substr(at + field.size()));
}

// Keys the server holds (DBSIZE), on every master of a cluster.
inline std::uint64_t key_count(const redis_server& srv) {
    std::uint64_t total = 0;
    for (const auto& n : cli_on_each_node(srv, {"DBSIZE"})) total += std::stoull(n);
    return total;
}

// Calls of a command (as INFO commandstats names it: "evalsha", "get") the server, or every
// master of a cluster, has run so far.
inline std::uint64_t command_calls(const redis_server& srv, std::string_view name) {
    const std::string field = "cmdstat_" + std::string(name) + ":calls=";
    std::uint64_t total = 0;
    for (const auto& info : cli_on_each_node(srv, {"INFO", "commandstats"}))
        total += info_number(info, field);
    return total;
}

// Calls of EVALSHA and EVAL the server (every master of a cluster) has run so far: every lock
// script, renewals included, is one of them.
inline std::uint64_t script_calls(const redis_server& srv) {
    return command_calls(srv, "evalsha") + command_calls(srv, "eval");
}

// Clients subscribed to `channel` (PUBSUB NUMSUB, and SHARDNUMSUB on a cluster: a resource's
// wake-up channel is sharded there), on every master of a cluster: a cluster client
// subscribes classic channels on one master of its choosing.
inline std::int64_t subscriber_count(const redis_server& srv, const std::string& channel) {
    std::int64_t total = 0;
    auto add = [&](const std::vector<std::string>& replies) {
        for (const auto& reply : replies) {
            // "channel\ncount"
            const auto nl = reply.rfind('\n');
            if (nl != std::string::npos) total += std::stoll(reply.substr(nl + 1));
        }
    };
    add(cli_on_each_node(srv, {"PUBSUB", "NUMSUB", channel}));
    if (srv.cluster()) add(cli_on_each_node(srv, {"PUBSUB", "SHARDNUMSUB", channel}));
    return total;
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

// Sleeps for d.
inline boost::asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
    boost::asio::steady_timer t(co_await boost::asio::this_coro::executor);
    t.expires_after(d);
    co_await t.async_wait(boost::asio::use_awaitable);
}

// Waits until pred() holds, at most `limit`, looking every 2 ms; false when it did not.
inline boost::asio::awaitable<bool> wait_for(std::function<bool()> pred,
                                             std::chrono::milliseconds limit =
                                                 std::chrono::seconds(10)) {
    using namespace std::chrono_literals;
    const auto until = std::chrono::steady_clock::now() + limit;
    boost::asio::steady_timer t(co_await boost::asio::this_coro::executor);
    while (!pred()) {
        if (std::chrono::steady_clock::now() >= until) co_return false;
        t.expires_after(2ms);
        co_await t.async_wait(boost::asio::use_awaitable);
    }
    co_return true;
}

// Runs call(i) for every i in [0, count) as coroutines of their own, all at once, and waits
// until all have ended; false when they did not within wait_for's default limit.
template <class Call>
boost::asio::awaitable<bool> run_concurrently(int count, Call call) {
    int done = 0;
    auto ex = co_await boost::asio::this_coro::executor;
    for (int i = 0; i < count; ++i) {
        boost::asio::co_spawn(
            ex,
            [&call, &done, i]() -> boost::asio::awaitable<void> {
                co_await call(i);
                ++done;
            },
            boost::asio::detached);
    }
    const bool finished = co_await wait_for([&] { return done == count; });
    co_return finished;
}

// Waits until pred() holds, a few milliseconds at a time; false when `timeout` passes first.
inline boost::asio::awaitable<bool> eventually(std::function<bool()> pred,
                                               std::chrono::milliseconds timeout) {
    using namespace std::chrono_literals;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
        if (std::chrono::steady_clock::now() >= deadline) co_return false;
        co_await sleep_for(5ms);
    }
    co_return true;
}

// Waits until pred() holds, looking every few milliseconds; fails the test, naming `what`,
// when `bound` passes first.
inline boost::asio::awaitable<void> eventually(std::function<bool()> pred,
                                               std::chrono::milliseconds bound,
                                               std::string_view what) {
    using namespace std::chrono_literals;
    const auto until = std::chrono::steady_clock::now() + bound;
    while (!pred()) {
        if (std::chrono::steady_clock::now() >= until) FAIL("not reached in time: " << what);
        co_await sleep_for(5ms);
    }
}

// As eventually, for a condition that needs Redis to answer (asked every `poll`).
inline boost::asio::awaitable<bool> eventually_async(
    std::function<boost::asio::awaitable<bool>()> pred, std::chrono::milliseconds timeout,
    std::chrono::milliseconds poll = std::chrono::milliseconds(5)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (co_await pred()) co_return true;
        if (std::chrono::steady_clock::now() >= deadline) co_return false;
        co_await sleep_for(poll);
    }
}

// Checks one command's reply.
template <class... Args>
boost::asio::awaitable<void> check_reply(redcoord::connection& conn, std::string_view expected,
                                         std::string_view cmd, const Args&... args) {
    auto got = co_await command(conn, cmd, args...);
    INFO(cmd << " replied " << got);
    CHECK(got == expected);
}

// The server as a worker process's first argument: its port, or on a cluster the connection
// string of server_address.
inline std::string port_of(const redis_server& srv) { return server_address(srv); }

// A connection of its own to the server, kept up in the background while this lives: another
// node, as far as the primitives can tell.
struct side_connection {
    redcoord::connection conn;
    side_connection(boost::asio::any_io_executor ex, const redis_server& srv)
        : conn(std::move(ex)) {
        conn.async_run(config_for(srv), boost::asio::detached);
    }
    ~side_connection() { conn.cancel(); }
};

// `count` nodes, each a session on a side_connection of its own (node ids prefix + "0",
// prefix + "1", ...) with a T made from that session. Destroyed in reverse: the Ts, the
// sessions, then the connections.
template <class T>
struct session_group {
    std::vector<std::unique_ptr<side_connection>> conns;
    std::vector<std::unique_ptr<redcoord::session>> sessions;
    std::vector<std::unique_ptr<T>> parts;

    session_group(const boost::asio::any_io_executor& ex, const redis_server& srv, int count,
                  const std::string& prefix) {
        for (int i = 0; i < count; ++i) {
            conns.push_back(std::make_unique<side_connection>(ex, srv));
            redcoord::session_options so;
            so.node_id = prefix + std::to_string(i);
            sessions.push_back(std::make_unique<redcoord::session>(conns.back()->conn, so));
            parts.push_back(std::make_unique<T>(*sessions.back()));
        }
    }
};

// Runs `body(conn, srv)` with a connection to a fresh server, configured by cfg_of(srv) and
// kept up in the background.
template <class Body>
void with_connection_by(redcoord::config (*cfg_of)(const redis_server&), Body body,
                        std::chrono::milliseconds deadline) {
    redis_server srv;
    run_async(
        [&](boost::asio::io_context& ioc) -> boost::asio::awaitable<void> {
            redcoord::connection conn(ioc.get_executor());
            conn.async_run(cfg_of(srv), boost::asio::detached);
            co_await body(conn, srv);
            conn.cancel();
        },
        deadline);
}

// Runs `body(conn, srv)` with a connection to a fresh server, kept up in the background.
template <class Body>
void with_connection(Body body, std::chrono::milliseconds deadline = std::chrono::seconds(30)) {
    with_connection_by(&config_for, std::move(body), deadline);
}

// Runs body(conn, srv) with a quiet connection (quiet_config) to a fresh server.
template <class Body>
void with_quiet_connection(Body body) {
    with_connection_by(&quiet_config, std::move(body), std::chrono::seconds(60));
}

}  // namespace redcoord::test
