// Idempotent operations against a real redis-server: one run among 50 concurrent callers on
// one or two connections, stored results with their TTL, failed runs retried, void
// operations, expiry, and bad input.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>

#include "async_test.hpp"
#include "connection_helpers.hpp"
#include "exception_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::diagnostics;
using redcoord::idempotency;
using redcoord::session;
using redcoord::test::code_of;
using redcoord::test::command;
using redcoord::test::config_for;
using redcoord::test::message_of;
using redcoord::test::nothrow;
using redcoord::test::run_concurrently;
using redcoord::test::side_connection;
using redcoord::test::sleep_for;
using redcoord::test::wait_for;
using redcoord::test::with_connection;

struct payment {
    std::string id;
    long long amount_cents = 0;
    bool operator==(const payment&) const = default;
};

void tag_invoke(const json::value_from_tag&, json::value& jv, const payment& p) {
    jv = {{"id", p.id}, {"amount_cents", p.amount_cents}};
}

payment tag_invoke(const json::value_to_tag<payment>&, const json::value& jv) {
    const auto& o = jv.as_object();
    payment p;
    p.id = json::value_to<std::string>(o.at("id"));
    p.amount_cents = json::value_to<long long>(o.at("amount_cents"));
    return p;
}

payment make_payment(std::string id, long long cents) {
    payment p;
    p.id = std::move(id);
    p.amount_cents = cents;
    return p;
}

TEST_CASE("idempotency: 50 concurrent callers run the operation once and share its result",
          "[idempotency]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        idempotency idem(s);
        constexpr int callers = 50;
        int runs = 0, ok = 0;
        const bool finished =
            co_await run_concurrently(callers, [&](int) -> asio::awaitable<void> {
                auto charge = [&]() -> asio::awaitable<payment> {
                    ++runs;
                    co_await sleep_for(100ms);
                    co_return make_payment("pay-1", 1999);
                };
                const std::optional<std::chrono::milliseconds> ttl = 1h;
                auto [ep, p] = co_await idem.async_once("charge:order-7", charge, ttl,
                                                        nothrow);
                if (!ep && p == make_payment("pay-1", 1999)) ++ok;
            });
        REQUIRE(finished);
        CHECK(runs == 1);
        CHECK(ok == callers);

        // Stored under the documented key with its TTL; the in-flight marker is gone.
        const auto text =
            co_await command(conn, "GET", "redcoord:idempotency:{charge:order-7}");
        CHECK(json::parse(text) == json::value_from(make_payment("pay-1", 1999)));
        const auto pttl =
            std::stoll(co_await command(conn, "PTTL", "redcoord:idempotency:{charge:order-7}"));
        CHECK(pttl > 0);
        CHECK(pttl <= 3600 * 1000);
        const auto marker =
            co_await command(conn, "EXISTS", "redcoord:idempotency:{charge:order-7}:running");
        CHECK(marker == "0");

        // A later caller gets the stored result without running its operation.
        auto again = [&]() -> asio::awaitable<payment> {
            ++runs;
            co_return make_payment("pay-2", 1);
        };
        payment p = co_await idem.async_once<payment>("charge:order-7", again, std::nullopt,
                                                      asio::use_awaitable);
        CHECK(p.id == "pay-1");
        CHECK(runs == 1);
    });
}

TEST_CASE("idempotency: callers on two connections run the operation once", "[idempotency]") {
    redcoord::test::redis_server srv;
    redcoord::test::run_async([&](asio::io_context& ioc) -> asio::awaitable<void> {
        side_connection a(ioc.get_executor(), srv), b(ioc.get_executor(), srv);
        session sa(a.conn, {.node_id = "node-a"}), sb(b.conn, {.node_id = "node-b"});
        idempotency ia(sa), ib(sb);
        constexpr int callers = 40;
        int runs = 0, ok = 0;
        const bool finished =
            co_await run_concurrently(callers, [&](int i) -> asio::awaitable<void> {
                idempotency* idem = i % 2 ? &ib : &ia;
                auto op = [&]() -> asio::awaitable<int> {
                    ++runs;
                    co_await sleep_for(100ms);
                    co_return 12345;
                };
                auto [ep, v] = co_await idem->async_once("import:file-9", op, std::nullopt,
                                                         nothrow);
                if (!ep && v == 12345) ++ok;
            });
        REQUIRE(finished);
        CHECK(runs == 1);
        CHECK(ok == callers);
    });
}

TEST_CASE("idempotency: a failed operation is retried by a waiter or a later caller",
          "[idempotency]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        idempotency idem(s);

        // Alone: the failure reaches the caller, nothing is stored, the next caller runs it.
        int runs = 0;
        auto failing = [&]() -> asio::awaitable<std::string> {
            ++runs;
            throw std::runtime_error("gateway timeout");
            co_return std::string();
        };
        auto [ep, v] = co_await idem.async_once("refund:1", failing, std::nullopt, nothrow);
        CHECK(message_of(ep) == "gateway timeout");
        const auto stored =
            co_await command(conn, "EXISTS", "redcoord:idempotency:{refund:1}");
        CHECK(stored == "0");
        const auto marker =
            co_await command(conn, "EXISTS", "redcoord:idempotency:{refund:1}:running");
        CHECK(marker == "0");
        auto working = [&]() -> asio::awaitable<std::string> {
            ++runs;
            co_return std::string("refunded");
        };
        auto [ep2, v2] = co_await idem.async_once("refund:1", working, std::nullopt, nothrow);
        REQUIRE_FALSE(ep2);
        CHECK(v2 == "refunded");
        CHECK(runs == 2);

        // Concurrent: the first run fails while the others wait; one of them runs it again.
        constexpr int callers = 20;
        int runs2 = 0, ok = 0, failed = 0;
        const bool finished =
            co_await run_concurrently(callers, [&](int) -> asio::awaitable<void> {
                auto op = [&]() -> asio::awaitable<int> {
                    const int me = ++runs2;
                    co_await sleep_for(100ms);
                    if (me == 1) throw std::runtime_error("first attempt failed");
                    co_return 2;
                };
                auto [ep, v] = co_await idem.async_once("refund:2", op, std::nullopt,
                                                        nothrow);
                if (ep)
                    ++failed;
                else if (v == 2)
                    ++ok;
            });
        REQUIRE(finished);
        CHECK(runs2 == 2);
        CHECK(failed == 1);
        CHECK(ok == callers - 1);
    });
}

TEST_CASE("idempotency: void operations, and results that expire", "[idempotency]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        idempotency idem(s);
        int sent = 0;
        auto send_mail = [&]() -> asio::awaitable<void> {
            ++sent;
            co_return;
        };
        const std::optional<std::chrono::milliseconds> ttl = 200ms;
        auto [ep] = co_await idem.async_once("welcome-mail:u1", send_mail, ttl, nothrow);
        REQUIRE_FALSE(ep);
        auto [ep2] = co_await idem.async_once("welcome-mail:u1", send_mail, ttl, nothrow);
        REQUIRE_FALSE(ep2);
        CHECK(sent == 1);
        const auto text =
            co_await command(conn, "GET", "redcoord:idempotency:{welcome-mail:u1}");
        CHECK(text == "null");
        // Once the result has expired, the operation runs again.
        bool expired = false;
        for (int i = 0; i < 2000 && !expired; ++i) {
            const auto e =
                co_await command(conn, "EXISTS", "redcoord:idempotency:{welcome-mail:u1}");
            expired = e == "0";
            if (!expired) co_await sleep_for(5ms);
        }
        REQUIRE(expired);
        auto [ep3] = co_await idem.async_once("welcome-mail:u1", send_mail, ttl, nothrow);
        REQUIRE_FALSE(ep3);
        CHECK(sent == 2);
    });
}

TEST_CASE("idempotency: bad input is invalid_argument naming the field", "[idempotency]") {
    with_connection([](redcoord::connection& conn, auto& srv) -> asio::awaitable<void> {
        session s(conn);
        idempotency idem(s, {.max_value_bytes = 16});
        int runs = 0;
        auto op = [&]() -> asio::awaitable<std::string> {
            ++runs;
            co_return std::string(64, 'z');
        };
        auto [ep, v] = co_await idem.async_once("", op, std::nullopt, nothrow);
        CHECK(code_of(ep) == redcoord::error::invalid_argument);
        CHECK(message_of(ep).find("idempotency key") != std::string::npos);
        const std::optional<std::chrono::milliseconds> negative = -1s;
        auto [ep2, v2] = co_await idem.async_once("k", op, negative, nothrow);
        CHECK(code_of(ep2) == redcoord::error::invalid_argument);
        CHECK(message_of(ep2).find("ttl -1000 ms") != std::string::npos);
        CHECK(runs == 0);
        // A result over the limit is not stored; the next caller runs the operation again.
        auto [ep3, v3] = co_await idem.async_once("k", op, std::nullopt, nothrow);
        CHECK(code_of(ep3) == redcoord::error::invalid_argument);
        CHECK(message_of(ep3).find("max_value_bytes") != std::string::npos);
        CHECK(runs == 1);
        CHECK(redcoord::test::key_count(srv) == 0);  // neither a result nor an in-flight marker
        auto [ep4, v4] = co_await idem.async_once("k", op, std::nullopt, nothrow);
        CHECK(code_of(ep4) == redcoord::error::invalid_argument);
        CHECK(runs == 2);

        CHECK_THROWS_AS(idempotency(s, {.default_ttl = 0ms}), redcoord::error_with_diagnostics);
        CHECK_THROWS_AS(idempotency(s, {.in_flight_ttl = -5ms}),
                        redcoord::error_with_diagnostics);
        CHECK_THROWS_AS(idempotency(s, {.max_value_bytes = 0}),
                        redcoord::error_with_diagnostics);
    });
}

}  // namespace
