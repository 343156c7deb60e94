// Blocking commands against a real redis-server: they run on side connections, so they never
// hold up the shared one; cancelling a blocked command unblocks its side connection.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "async_test.hpp"
#include "connection_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::test::redis_server;
using redcoord::test::run_async;
using popped = std::optional<std::pair<std::string, std::string>>;  // BLPOP's reply

using redcoord::test::command;
using redcoord::test::config_for;
using redcoord::test::nothrow;
using redcoord::test::require_ok;
using redcoord::test::wait_until;
using redcoord::test::with_connection;
constexpr auto test_deadline = 30s;

// The server's count of clients blocked in a command, as INFO reports it (of every master of a
// cluster).
int blocked_clients(const redis_server& srv) {
    int total = 0;
    for (const auto& info : redcoord::test::cli_on_each_node(srv, {"INFO", "clients"})) {
        constexpr std::string_view field = "blocked_clients:";
        const auto at = info.find(field);
        REQUIRE(at != std::string::npos);
        total += std::stoi(info.substr(at + field.size()));
    }
    return total;
}

asio::awaitable<void> wait_blocked_clients(const redis_server& srv, int count) {
    co_await wait_until([&] { return blocked_clients(srv) == count; });
}

// A BLPOP started with a callback, so the test goes on while it blocks. Completion appends
// `name` to `log`. Must not move while the BLPOP runs.
struct blpop_call {
    redcoord::request req;
    popped reply{std::pair<std::string, std::string>{"not", "completed"}};
    redcoord::diagnostics diag;
    std::optional<error_code> result;

    blpop_call(std::string_view list, int seconds) { req.push("BLPOP", list, seconds); }

    void start(redcoord::connection& conn, std::vector<std::string>& log, std::string name,
               asio::cancellation_slot slot = {}) {
        REQUIRE(req.has_blocking_command());
        conn.async_exec(req, reply, diag,
                        asio::bind_cancellation_slot(
                            slot, [this, &log, name = std::move(name)](error_code ec, std::size_t) {
                                result = ec;
                                log.push_back(name);
                            }));
    }

    asio::awaitable<void> wait() {
        co_await wait_until([this] { return result.has_value(); });
    }

    void require_popped(std::string_view list, std::string_view value) const {
        INFO(diag.message());
        REQUIRE(result);
        REQUIRE_FALSE(*result);
        REQUIRE(reply);
        CHECK(reply->first == list);
        CHECK(reply->second == value);
    }
};

}  // namespace

TEST_CASE("blocking: BLPOP does not hold up later requests", "[integration][blocking]") {
    with_connection([](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
        co_await command(conn, "SET", "bl:k", "v");
        std::vector<std::string> log;
        blpop_call blpop("bl:empty", 2);
        blpop.start(conn, log, "BLPOP");
        co_await wait_blocked_clients(srv, 1);

        const auto value = co_await command(conn, "GET", "bl:k");
        log.push_back("GET");
        CHECK(value == "v");
        co_await blpop.wait();

        CHECK(log == std::vector<std::string>{"GET", "BLPOP"});
        INFO(blpop.diag.message());
        CHECK_FALSE(*blpop.result);
        CHECK_FALSE(blpop.reply);  // timed out on the server: a null reply
        CHECK(conn.get_usage().blocking_connections == 1);
    });
}

TEST_CASE("blocking: BLPOP gets an element another request pushes", "[integration][blocking]") {
    with_connection([](redcoord::connection& conn, redis_server&) -> asio::awaitable<void> {
        std::vector<std::string> log;
        blpop_call blpop("bl:list", 10);
        blpop.start(conn, log, "BLPOP");
        co_await command(conn, "RPUSH", "bl:list", "element");
        co_await blpop.wait();
        blpop.require_popped("bl:list", "element");
        const auto left = co_await command(conn, "LLEN", "bl:list");
        CHECK(left == "0");
        CHECK(conn.get_usage().blocking_connections == 1);
    });
}

TEST_CASE("blocking: cancelling a blocked BLPOP unblocks its side connection",
          "[integration][blocking]") {
    with_connection([](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
        std::vector<std::string> log;
        asio::cancellation_signal signal;
        blpop_call forever("bl:forever", 0);
        forever.start(conn, log, "cancelled", signal.slot());
        co_await wait_blocked_clients(srv, 1);
        CHECK_FALSE(forever.result);

        signal.emit(asio::cancellation_type::terminal);
        co_await forever.wait();
        CHECK(*forever.result == asio::error::operation_aborted);
        // CLIENT UNBLOCK ended the command on the server.
        co_await wait_blocked_clients(srv, 0);
        // The side connection reads the unblocked command's reply before this round trip ends.
        co_await command(conn, "PING");

        // The side connection is free again: the next BLPOP reuses it, and the element goes to
        // it, not to the cancelled one.
        blpop_call next("bl:forever", 0);
        next.start(conn, log, "next");
        co_await wait_blocked_clients(srv, 1);
        co_await command(conn, "RPUSH", "bl:forever", "element");
        co_await next.wait();
        next.require_popped("bl:forever", "element");
        CHECK(log == std::vector<std::string>{"cancelled", "next"});
        CHECK(conn.get_usage().blocking_connections == 1);
    });
}

TEST_CASE("blocking: concurrent BLPOPs use their own side connections", "[integration][blocking]") {
    with_connection([](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
        std::vector<std::string> log;
        blpop_call one("bl:one", 0), two("bl:two", 0);
        one.start(conn, log, "one");
        two.start(conn, log, "two");
        co_await wait_blocked_clients(srv, 2);
        CHECK(conn.get_usage().blocking_connections == 2);

        co_await command(conn, "RPUSH", "bl:two", "second");
        co_await two.wait();
        two.require_popped("bl:two", "second");
        CHECK_FALSE(one.result);

        co_await command(conn, "RPUSH", "bl:one", "first");
        co_await one.wait();
        one.require_popped("bl:one", "first");
        CHECK(log == std::vector<std::string>{"two", "one"});
    });
}

TEST_CASE("blocking: a BLPOP made before async_run starts",
          "[integration][blocking]") {
    redis_server srv;
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            redcoord::connection conn(ioc.get_executor());
            std::vector<std::string> log;
            blpop_call blpop("bl:early", 10);
            blpop.start(conn, log, "BLPOP");
            srv.cli({"RPUSH", "bl:early", "waiting"});
            CHECK_FALSE(blpop.result);

            conn.async_run(config_for(srv), asio::detached);
            co_await blpop.wait();
            blpop.require_popped("bl:early", "waiting");
            CHECK(conn.get_usage().blocking_connections == 1);
            conn.cancel();
        },
        test_deadline);
}
