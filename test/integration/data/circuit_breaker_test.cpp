// The circuit breaker against a real redis-server: state shared by two connections, the
// sliding failure window, exactly one half-open trial among concurrent callers, the trial's
// outcome, typed results, and bad input.
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
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::circuit_breaker;
using redcoord::circuit_breaker_options;
using redcoord::circuit_state;
using redcoord::circuit_status;
using redcoord::diagnostics;
using redcoord::session;
using redcoord::test::code_of;
using redcoord::test::command;
using redcoord::test::config_for;
using redcoord::test::message_of;
using redcoord::test::nothrow;
using redcoord::test::require_ok;
using redcoord::test::side_connection;
using redcoord::test::sleep_for;
using redcoord::test::wait_for;
using redcoord::test::with_connection;

struct quote {
    std::string symbol;
    double price = 0;
};

void tag_invoke(const boost::json::value_from_tag&, boost::json::value& jv, const quote& q) {
    jv = {{"symbol", q.symbol}, {"price", q.price}};
}

// One call whose op fails (throws).
asio::awaitable<std::exception_ptr> fail_once(circuit_breaker& cb, std::string name) {
    auto op = []() -> asio::awaitable<void> {
        throw std::runtime_error("downstream failed");
        co_return;
    };
    auto [ep] = co_await cb.async_execute(std::move(name), op, nothrow);
    co_return ep;
}

asio::awaitable<circuit_status> state_of(circuit_breaker& cb, std::string name) {
    diagnostics diag;
    auto [ec, st] = co_await cb.async_state(std::move(name), diag, nothrow);
    require_ok(ec, diag);
    co_return st;
}

// Waits (bounded) until the open circuit's recovery timeout has passed.
asio::awaitable<bool> wait_recovered(circuit_breaker& cb, std::string name) {
    for (int i = 0; i < 2000; ++i) {
        auto st = co_await state_of(cb, name);
        if (st.state == circuit_state::open && st.retry_after.count() == 0) co_return true;
        co_await sleep_for(5ms);
    }
    co_return false;
}

TEST_CASE("circuit: failures on one connection open the circuit for the other", "[circuit]") {
    redcoord::test::redis_server srv;
    redcoord::test::run_async([&](asio::io_context& ioc) -> asio::awaitable<void> {
        side_connection a(ioc.get_executor(), srv), b(ioc.get_executor(), srv);
        session sa(a.conn, {.node_id = "node-a"}), sb(b.conn, {.node_id = "node-b"});
        circuit_breaker cba(sa), cbb(sb);  // defaults: 5 failures within 60 s, 30 s recovery

        for (int i = 0; i < 4; ++i) {
            auto ep = co_await fail_once(cba, "payments");
            CHECK(message_of(ep) == "downstream failed");
        }
        auto st = co_await state_of(cbb, "payments");
        CHECK(st.state == circuit_state::closed);
        CHECK(st.failures == 4);

        // Successes do not clear the window; the fifth failure opens it.
        int ran = 0;
        auto ok_op = [&]() -> asio::awaitable<int> {
            ++ran;
            co_return 1;
        };
        auto [ep0, one] = co_await cbb.async_execute("payments", ok_op, nothrow);
        REQUIRE_FALSE(ep0);
        CHECK(one == 1);
        auto ep5 = co_await fail_once(cbb, "payments");
        CHECK(message_of(ep5) == "downstream failed");

        st = co_await state_of(cba, "payments");
        CHECK(st.state == circuit_state::open);
        CHECK(st.failures == 5);
        CHECK(st.retry_after.count() > 0);
        const auto stored =
            co_await command(a.conn, "HGET", "redcoord:circuit:{payments}", "state");
        CHECK(stored == "open");

        // Node A, which saw 4 of the failures, now fails fast without calling.
        auto [ep, v] = co_await cba.async_execute("payments", ok_op, nothrow);
        CHECK(code_of(ep) == redcoord::error::circuit_open);
        CHECK(message_of(ep).find("'payments' is open") != std::string::npos);
        CHECK(ran == 1);

        // Another circuit is not affected.
        auto [ep2, v2] = co_await cba.async_execute("search", ok_op, nothrow);
        CHECK_FALSE(ep2);
        CHECK(ran == 2);

        // Reset closes it for everyone.
        auto [rec] = co_await cbb.async_reset("payments", nothrow);
        REQUIRE_FALSE(rec);
        auto [ep3, v3] = co_await cba.async_execute("payments", ok_op, nothrow);
        CHECK_FALSE(ep3);
        CHECK(ran == 3);
    });
}

TEST_CASE("circuit: failures older than the sampling window are not counted", "[circuit]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        circuit_breaker cb(s, {.failure_threshold = 3, .sampling_duration = 300ms});
        co_await fail_once(cb, "window");
        co_await fail_once(cb, "window");
        auto st = co_await state_of(cb, "window");
        CHECK(st.failures == 2);
        // Wait (bounded) until both have left the window.
        bool aged = false;
        for (int i = 0; i < 2000 && !aged; ++i) {
            st = co_await state_of(cb, "window");
            aged = st.failures == 0;
            if (!aged) co_await sleep_for(5ms);
        }
        REQUIRE(aged);
        co_await fail_once(cb, "window");
        co_await fail_once(cb, "window");
        st = co_await state_of(cb, "window");
        CHECK(st.state == circuit_state::closed);
        CHECK(st.failures == 2);
        co_await fail_once(cb, "window");
        st = co_await state_of(cb, "window");
        CHECK(st.state == circuit_state::open);
    });
}

TEST_CASE("circuit: exactly one half-open trial among 20 concurrent callers", "[circuit]") {
    redcoord::test::redis_server srv;
    redcoord::test::run_async([&](asio::io_context& ioc) -> asio::awaitable<void> {
        side_connection a(ioc.get_executor(), srv), b(ioc.get_executor(), srv);
        session sa(a.conn, {.node_id = "node-a"}), sb(b.conn, {.node_id = "node-b"});
        const circuit_breaker_options opts{.failure_threshold = 2,
                                           .recovery_timeout = 300ms};
        circuit_breaker cba(sa, opts), cbb(sb, opts);
        co_await fail_once(cba, "inventory");
        co_await fail_once(cba, "inventory");
        const bool recovered = co_await wait_recovered(cbb, "inventory");
        REQUIRE(recovered);

        constexpr int callers = 20;
        int ran = 0, rejected = 0, other = 0, done = 0;
        auto ex = co_await asio::this_coro::executor;
        for (int i = 0; i < callers; ++i) {
            circuit_breaker* cb = i % 2 ? &cbb : &cba;
            asio::co_spawn(
                ex,
                [&, cb]() -> asio::awaitable<void> {
                    // The trial lasts until every other caller has been turned away.
                    auto op = [&]() -> asio::awaitable<std::string> {
                        ++ran;
                        co_await wait_for([&] { return rejected + other == callers - 1; });
                        co_return std::string("in stock");
                    };
                    auto [ep, v] = co_await cb->async_execute("inventory", op, nothrow);
                    if (code_of(ep) == redcoord::error::circuit_open)
                        ++rejected;
                    else if (ep || v != "in stock")
                        ++other;
                    ++done;
                },
                asio::detached);
        }
        const bool finished = co_await wait_for([&] { return done == callers; });
        REQUIRE(finished);
        CHECK(ran == 1);
        CHECK(rejected == callers - 1);
        CHECK(other == 0);
        // The trial succeeded: closed, failures forgotten.
        auto st = co_await state_of(cba, "inventory");
        CHECK(st.state == circuit_state::closed);
        CHECK(st.failures == 0);
    });
}

TEST_CASE("circuit: a failed trial opens the circuit again", "[circuit]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        circuit_breaker cb(s, {.failure_threshold = 1, .recovery_timeout = 200ms});
        co_await fail_once(cb, "mail");
        auto st = co_await state_of(cb, "mail");
        CHECK(st.state == circuit_state::open);
        bool recovered = co_await wait_recovered(cb, "mail");
        REQUIRE(recovered);

        // The trial is under way: the state says half-open and others are turned away.
        bool in_trial = false, release = false, trial_done = false;
        std::exception_ptr trial_ep;
        auto ex = co_await asio::this_coro::executor;
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
                auto op = [&]() -> asio::awaitable<void> {
                    in_trial = true;
                    co_await wait_for([&] { return release; });
                    throw std::runtime_error("still down");
                };
                auto [ep] = co_await cb.async_execute("mail", op, nothrow);
                trial_ep = ep;
                trial_done = true;
            },
            asio::detached);
        const bool started = co_await wait_for([&] { return in_trial; });
        REQUIRE(started);
        st = co_await state_of(cb, "mail");
        CHECK(st.state == circuit_state::half_open);
        auto noop = []() -> asio::awaitable<void> { co_return; };
        auto [ep] = co_await cb.async_execute("mail", noop, nothrow);
        CHECK(code_of(ep) == redcoord::error::circuit_open);
        CHECK(message_of(ep).find("half-open") != std::string::npos);
        release = true;
        const bool finished = co_await wait_for([&] { return trial_done; });
        REQUIRE(finished);
        CHECK(message_of(trial_ep) == "still down");
        st = co_await state_of(cb, "mail");
        CHECK(st.state == circuit_state::open);

        // After the next recovery timeout a successful trial closes it.
        recovered = co_await wait_recovered(cb, "mail");
        REQUIRE(recovered);
        auto [ep2] = co_await cb.async_execute("mail", noop, nothrow);
        CHECK_FALSE(ep2);
        st = co_await state_of(cb, "mail");
        CHECK(st.state == circuit_state::closed);
    });
}

TEST_CASE("circuit: results of user types come back, and the throwing form throws", "[circuit]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        circuit_breaker cb(s);
        auto op = []() -> asio::awaitable<quote> {
            quote q;
            q.symbol = "ACME";
            q.price = 12.5;
            co_return q;
        };
        quote q = co_await cb.async_execute("quotes", op, asio::use_awaitable);
        CHECK(q.symbol == "ACME");
        CHECK(q.price == 12.5);
        bool threw = false;
        try {
            co_await fail_once(cb, "quotes");  // returns the exception; now the throwing form
            auto bad = []() -> asio::awaitable<int> {
                throw std::logic_error("boom");
                co_return 0;
            };
            co_await cb.async_execute("quotes", bad, asio::use_awaitable);
        } catch (const std::logic_error&) {
            threw = true;
        }
        CHECK(threw);
        auto st = co_await state_of(cb, "quotes");
        CHECK(st.failures == 2);
    });
}

TEST_CASE("circuit: bad input is invalid_argument, and bad options are bad_config", "[circuit]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        circuit_breaker cb(s);
        bool ran = false;
        auto op = [&]() -> asio::awaitable<void> {
            ran = true;
            co_return;
        };
        auto [ep] = co_await cb.async_execute("", op, nothrow);
        CHECK(code_of(ep) == redcoord::error::invalid_argument);
        CHECK(message_of(ep).find("circuit name") != std::string::npos);
        CHECK_FALSE(ran);
        diagnostics diag;
        auto [ec, st] = co_await cb.async_state("", diag, nothrow);
        CHECK(ec == redcoord::error::invalid_argument);
        CHECK(diag.message().find("circuit name") != std::string::npos);

        CHECK_THROWS_AS(circuit_breaker(s, {.failure_threshold = 0}),
                        redcoord::error_with_diagnostics);
        CHECK_THROWS_AS(circuit_breaker(s, {.recovery_timeout = -1ms}),
                        redcoord::error_with_diagnostics);
        CHECK_THROWS_AS(circuit_breaker(s, {.sampling_duration = 0ms}),
                        redcoord::error_with_diagnostics);
        CHECK_THROWS_AS(circuit_breaker(s, {.trial_timeout = 0ms}),
                        redcoord::error_with_diagnostics);
    });
}

}  // namespace
