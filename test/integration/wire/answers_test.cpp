// The same question gets the same answer: a lease whose session is gone says session_closed to
// release and extend alike, a lease lost otherwise says not_held, and a fenced write with a
// negative token is invalid input, not a stale one.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <string>

#include "async_test.hpp"
#include "bad_input.hpp"
#include "connection_helpers.hpp"
#include "lease_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using redcoord::diagnostics;
using redcoord::lease;
using redcoord::lock_provider;
using redcoord::session;
using redcoord::test::check_names;
using redcoord::test::command;
using redcoord::test::must_acquire;
using redcoord::test::nothrow;
using redcoord::test::require_ok;
using redcoord::test::with_connection;

TEST_CASE("answers: once the session is destroyed, release and extend both say session_closed",
          "[answers][lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        auto s = std::make_unique<session>(conn);
        lease l;
        {
            lock_provider locks(*s);
            l = co_await must_acquire(locks, "orders", {.ttl = 10s});
        }
        s.reset();
        CHECK(l.get_status() == lease::status::lost);
        CHECK(l.lost_reason() == redcoord::error::session_closed);

        diagnostics diag;
        auto [rec] = co_await l.async_release(diag, nothrow);
        CHECK(rec == redcoord::error::session_closed);
        check_names(diag.message(), {"release", "'orders'", "session is closed"});
        auto [xec] = co_await l.async_extend(10s, diag, nothrow);
        CHECK(xec == redcoord::error::session_closed);
        check_names(diag.message(), {"extend", "'orders'", "session is closed"});
        // Asked again, the same answers.
        auto [rec2] = co_await l.async_release(diag, nothrow);
        CHECK(rec2 == redcoord::error::session_closed);
    });
}

TEST_CASE("answers: a lease lost while the session lives says not_held to release and extend",
          "[answers][lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        lock_provider locks(s);
        auto l = co_await must_acquire(locks, "orders", {.ttl = 10s});
        // Taken away behind the holder's back: the next extend finds it gone.
        co_await command(conn, "DEL", "redcoord:lock:{orders}");
        diagnostics diag;
        auto [xec] = co_await l.async_extend(10s, diag, nothrow);
        CHECK(xec == redcoord::error::not_held);
        check_names(diag.message(), {"extend", "'orders'", "no longer held"});
        CHECK(l.get_status() == lease::status::lost);
        CHECK(l.lost_reason() == redcoord::error::lease_lost);
        auto [xec2] = co_await l.async_extend(10s, diag, nothrow);
        CHECK(xec2 == redcoord::error::not_held);
        check_names(diag.message(), {"no longer held", "lost"});
        auto [rec] = co_await l.async_release(diag, nothrow);
        CHECK(rec == redcoord::error::not_held);
        check_names(diag.message(), {"'orders'", "lost"});

        // A released lease: extend says not_held too.
        auto l2 = co_await must_acquire(locks, "orders", {.ttl = 10s});
        auto [rec2] = co_await l2.async_release(diag, nothrow);
        require_ok(rec2, diag);
        auto [xec3] = co_await l2.async_extend(10s, diag, nothrow);
        CHECK(xec3 == redcoord::error::not_held);
        check_names(diag.message(), {"released"});
    });
}

TEST_CASE("answers: a fenced write with a negative token is invalid_argument naming it",
          "[answers][lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        diagnostics diag;
        auto [ec] = co_await redcoord::async_fenced_set(s, "account", "v", -1, diag, nothrow);
        CHECK(ec == redcoord::error::invalid_argument);
        check_names(diag.message(), {"'account'", "token", "-1", "negative"});
        {
            const auto awaited = co_await command(conn, "EXISTS", "account");
            CHECK(awaited == "0");
        }
        {
            const auto awaited = co_await command(conn, "EXISTS", "{account}:fence");
            CHECK(awaited == "0");
        }

        // Tokens from zero up are written; an older one is then stale.
        auto [ec2] = co_await redcoord::async_fenced_set(s, "account", "v5", 5, diag, nothrow);
        require_ok(ec2, diag);
        auto [ec3] = co_await redcoord::async_fenced_set(s, "account", "v4", 4, diag, nothrow);
        CHECK(ec3 == redcoord::error::stale_fencing_token);
        check_names(diag.message(), {"'account'", "4"});
        {
            const auto awaited = co_await command(conn, "GET", "account");
            CHECK(awaited == "v5");
        }
        // Without diagnostics, the same code.
        auto [ec4] = co_await redcoord::async_fenced_set(s, "account", "v", -7, nothrow);
        CHECK(ec4 == redcoord::error::invalid_argument);
    });
}

}  // namespace
