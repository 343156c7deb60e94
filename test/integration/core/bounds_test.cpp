// Bounds of what the API takes, against a real redis-server: durations (TTLs, waits, timeouts,
// intervals) up to redcoord::max_duration and no further, renewal intervals that a lease can
// outlive, node ids and prefixes without control characters; and waiters that do not spin on a
// lock someone wrote with an enormous PX.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "async_test.hpp"
#include "bad_input.hpp"
#include "connection_helpers.hpp"
#include "exception_helpers.hpp"
#include "lease_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::acquire_options;
using redcoord::diagnostics;
using redcoord::lease;
using redcoord::lock_options;
using redcoord::lock_provider;
using redcoord::max_duration;
using redcoord::rw_lock_provider;
using redcoord::semaphore_options;
using redcoord::semaphore_provider;
using redcoord::session;
using redcoord::session_options;
using redcoord::test::check_bad_config;
using redcoord::test::check_names;
using redcoord::test::command;
using redcoord::test::must_acquire;
using redcoord::test::must_release;
using redcoord::test::nothrow;
using redcoord::test::require_ok;
using redcoord::test::script_calls;
using redcoord::test::with_connection;
using std::chrono::milliseconds;

constexpr milliseconds just_over = max_duration + 1ms;
// About 1000 years: sent + ttl overflows a steady_clock time point (nanoseconds).
constexpr milliseconds millennium{31'536'000'000'000};

std::string ms(milliseconds d) { return std::to_string(d.count()); }

// Checks an acquisition refused as invalid_argument, its message naming every one of parts.
void check_refused(error_code ec, const lease& l, const diagnostics& diag,
                   const std::vector<std::string>& parts) {
    CHECK(ec == redcoord::error::invalid_argument);
    CHECK_FALSE(l);
    check_names(diag.message(), parts);
}

TEST_CASE("bounds: a TTL above max_duration is refused, naming the field, value and maximum",
          "[bounds]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        lock_provider locks(s);
        semaphore_provider permits(s);
        rw_lock_provider rw(s);
        const std::string max_ms = ms(max_duration);
        for (const auto ttl : {just_over, millennium}) {
            INFO("ttl " << ttl.count() << " ms");
            acquire_options ao;
            ao.ttl = ttl;
            diagnostics diag;
            auto [ec, l] = co_await locks.async_acquire("big", ao, diag, nothrow);
            check_refused(ec, l, diag, {"'big'", "ttl", ms(ttl), "max_duration", max_ms});
            auto [ec2, p] = co_await permits.async_acquire("big", 2, ao, diag, nothrow);
            check_refused(ec2, p, diag, {"'big'", "ttl", ms(ttl), "max_duration"});
            auto [ec3, w] = co_await rw.async_acquire_write("big", ao, diag, nothrow);
            check_refused(ec3, w, diag, {"'big'", "ttl", ms(ttl), "max_duration"});
            // Nothing reached Redis.
            {
                const auto awaited = co_await command(conn, "EXISTS", "redcoord:lock:{big}");
                CHECK(awaited == "0");
            }

            // Extending a held lease, and a lock by name.
            auto held = co_await must_acquire(locks, "held", {.ttl = 10s});
            auto [xec] = co_await held.async_extend(ttl, diag, nothrow);
            CHECK(xec == redcoord::error::invalid_argument);
            check_names(diag.message(), {"'held'", "ttl", ms(ttl), "max_duration"});
            CHECK(held.is_held());
            CHECK(held.ttl() == 10s);
            auto [nec, extended] =
                co_await locks.async_extend("held", held.owner(), ttl, diag, nothrow);
            CHECK(nec == redcoord::error::invalid_argument);
            CHECK_FALSE(extended);
            check_names(diag.message(), {"'held'", "ttl", ms(ttl), "max_duration"});
            co_await must_release(held);
        }
    });
}

TEST_CASE("bounds: a lease of exactly max_duration is held until then and released",
          "[bounds]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        lock_provider locks(s);
        const auto before = std::chrono::steady_clock::now();
        auto l = co_await must_acquire(locks, "decade", {.ttl = max_duration});
        CHECK(l.ttl() == max_duration);
        CHECK(l.get_status() == lease::status::held);
        // Not lost at once (a deadline that overflowed into the past would be).
        CHECK(l.valid_until() > before + max_duration / 2);
        const auto pttl = std::stoll(co_await command(conn, "PTTL", "redcoord:lock:{decade}"));
        CHECK(pttl > (max_duration / 2).count());
        CHECK(pttl <= max_duration.count());

        // Extending to the maximum works too, and so does a semaphore permit.
        diagnostics diag;
        auto [xec] = co_await l.async_extend(max_duration, diag, nothrow);
        require_ok(xec, diag);
        CHECK(l.is_held());
        semaphore_provider permits(s);
        acquire_options ao;
        ao.ttl = max_duration;
        auto [pec, p] = co_await permits.async_acquire("decade", 1, ao, diag, nothrow);
        require_ok(pec, diag);
        CHECK(p.valid_until() > before + max_duration / 2);
        co_await must_release(p);

        co_await must_release(l);
        {
            const auto awaited = co_await command(conn, "EXISTS", "redcoord:lock:{decade}");
            CHECK(awaited == "0");
        }
    });
}

TEST_CASE("bounds: a wait above max_duration is refused, naming it", "[bounds]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        lock_provider locks(s);
        semaphore_provider permits(s);
        rw_lock_provider rw(s);
        for (const auto wait : {just_over, millennium, milliseconds(-1)}) {
            INFO("wait " << wait.count() << " ms");
            acquire_options ao;
            ao.wait = wait;
            diagnostics diag;
            auto [ec, l] = co_await locks.async_acquire("w", ao, diag, nothrow);
            check_refused(ec, l, diag, {"'w'", "wait", ms(wait)});
            auto [ec2, p] = co_await permits.async_acquire("w", 1, ao, diag, nothrow);
            check_refused(ec2, p, diag, {"'w'", "wait", ms(wait)});
            auto [ec3, r] = co_await rw.async_acquire_read("w", ao, diag, nothrow);
            check_refused(ec3, r, diag, {"'w'", "wait", ms(wait)});
            if (wait > max_duration) check_names(diag.message(), {"max_duration"});
        }
        // The queue's blocking wait too.
        redcoord::reliable_queue q(s);
        diagnostics diag;
        auto [qec, item] = co_await q.async_dequeue("jobs", "c", just_over, diag, nothrow);
        CHECK(qec == redcoord::error::invalid_argument);
        check_names(diag.message(), {"timeout", ms(just_over), "max_duration"});
        {
            const auto awaited = co_await command(conn, "EXISTS", "redcoord:lock:{w}");
            CHECK(awaited == "0");
        }
    });
}

// Checks that Primitive(owner, o), with o's duration option set just over max_duration, is
// bad_config naming the option, the value and the maximum.
template <class Primitive, class Owner, class Options>
void check_over_max(Owner& owner, milliseconds Options::*field, const std::string& name) {
    Options o;
    o.*field = just_over;
    check_bad_config([&] { Primitive p(owner, o); }, name, {ms(just_over), "max_duration"});
}

TEST_CASE("bounds: option durations above max_duration are bad_config naming the field",
          "[bounds]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        check_over_max<lock_provider>(s, &lock_options::default_ttl,
                                      "default_ttl");
        check_over_max<lock_provider>(s, &lock_options::retry_delay, "retry_delay");
        check_over_max<rw_lock_provider>(s, &lock_options::fair_waiter_timeout,
                                         "fair_waiter_timeout");
        check_over_max<semaphore_provider>(s, &semaphore_options::default_ttl, "default_ttl");
        check_over_max<redcoord::leader_election>(s, &redcoord::leader_options::leadership_timeout,
                                                  "leadership_timeout");
        check_over_max<redcoord::membership>(s, &redcoord::membership_options::heartbeat_interval,
                                             "heartbeat_interval");
        check_over_max<redcoord::membership>(s, &redcoord::membership_options::registry_ttl,
                                             "registry_ttl");
        check_over_max<session>(conn, &session_options::renew_retry_delay, "renew_retry_delay");
        check_over_max<session>(conn, &session_options::clock_drift_floor, "clock_drift_floor");
        check_over_max<redcoord::shared_state>(s, &redcoord::state_options::default_ttl,
                                               "default_ttl");
        check_over_max<redcoord::circuit_breaker>(
            s, &redcoord::circuit_breaker_options::recovery_timeout, "recovery_timeout");

        // A default wait (retry_delay * max_retries) beyond it, even when the product overflows.
        for (const auto& [delay, retries] : {std::pair{max_duration / 2, 3},
                                             std::pair{milliseconds(1000h), 2'000'000'000}}) {
            lock_options o;
            o.retry_delay = delay;
            o.max_retries = retries;
            check_bad_config([&] { lock_provider p(s, o); }, "max_retries",
                             {"retry_delay", "max_duration"});
        }
        // The maximum itself is fine.
        lock_options at_max;
        at_max.default_ttl = max_duration;
        lock_provider fine(s, at_max);
        CHECK(fine.options().default_ttl == max_duration);
        co_return;
    });
}

TEST_CASE("bounds: a waiter on a lock held with an enormous PX waits without spinning",
          "[bounds]") {
    with_connection([](redcoord::connection& conn, auto& srv) -> asio::awaitable<void> {
        session s(conn);
        lock_provider locks(s);
        rw_lock_provider rw(s);
        // Written by another client, with a PX beyond max_duration: about 1000 years (in
        // nanoseconds it does not fit a steady_clock time point), and about as much as Redis
        // takes.
        const std::vector<std::string> pxs{ms(millennium), "4000000000000000000"};
        for (const auto& px : pxs) {
            INFO("PX " << px);
            co_await command(conn, "SET", "redcoord:lock:{stuck}", "someone else", "PX", px);
            co_await command(conn, "SET", "redcoord:lock:{stuck}:rw:writer", "someone", "PX", px);

            acquire_options ao;
            ao.wait = 1s;
            diagnostics diag;
            auto before = script_calls(srv);
            auto [ec, l] = co_await locks.async_acquire("stuck", ao, diag, nothrow);
            CHECK(ec == redcoord::error::acquire_timeout);
            auto calls = script_calls(srv) - before;
            INFO("script calls of the mutex's waiter: " << calls);
            CHECK(calls <= 20);

            before = script_calls(srv);
            auto [ec2, r] = co_await rw.async_acquire_read("stuck", ao, diag, nothrow);
            CHECK(ec2 == redcoord::error::acquire_timeout);
            calls = script_calls(srv) - before;
            INFO("script calls of the read lock's waiter: " << calls);
            CHECK(calls <= 20);
            // The holder's key is untouched.
            {
                const auto awaited = co_await command(conn, "GET", "redcoord:lock:{stuck}");
                CHECK(awaited == "someone else");
            }
        }
    });
}

TEST_CASE("bounds: node ids and prefixes with control characters are refused, shown escaped",
          "[bounds]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        const std::vector<std::pair<std::string, std::string>> node_ids{
            {"evil\nnode", "\"evil\\nnode\""},
            {"cr\rhere", "\"cr\\rhere\""},
            {std::string("nul\0x", 5), "\"nul\\x00x\""},
            {"bell\x07", "\"bell\\x07\""},
            {"del\x7f", "\"del\\x7f\""}};
        for (const auto& [id, shown] : node_ids) {
            INFO("node id " << shown);
            // clang 14 cannot capture a structured binding: an init-capture names it.
            check_bad_config(
                [&, &id = id] {
                    session_options o;
                    o.node_id = id;
                    session bad(conn, o);
                },
                "node_id", {shown, "control character"});
        }
        check_bad_config(
            [&] {
                session_options o;
                o.prefix = "app\n:";
                session bad(conn, o);
            },
            "prefix", {"\"app\\n:\""});
        // Printable bytes, UTF-8 included, are fine.
        session_options ok;
        ok.node_id = "node \xc3\xa9-1";
        session good(conn, ok);
        CHECK(good.node_id() == ok.node_id);
        co_return;
    });
}

TEST_CASE("bounds: a renewal interval a lease could not outlive is refused", "[bounds]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        for (const auto interval : {1000ms, 2000ms}) {
            INFO("extension_interval " << interval.count() << " ms");
            lock_options lo;
            lo.default_ttl = 1000ms;
            lo.extension_interval = interval;
            check_bad_config([&] { lock_provider p(s, lo); }, "extension_interval",
                             {"default_ttl", ms(interval)});
            check_bad_config([&] { rw_lock_provider p(s, lo); }, "extension_interval",
                             {"default_ttl"});
            semaphore_options so;
            so.default_ttl = 1000ms;
            so.extension_interval = interval;
            check_bad_config([&] { semaphore_provider p(s, so); }, "extension_interval",
                             {"default_ttl"});
            // Without the watchdog the interval is not used, and not refused.
            lo.enable_extension = false;
            lock_provider unused(s, lo);
        }

        // Per call: a TTL not longer than the interval, while the watchdog is on.
        lock_options lo;
        lo.extension_interval = 500ms;
        lock_provider locks(s, lo);
        rw_lock_provider rw(s, lo);
        semaphore_options so;
        so.extension_interval = 500ms;
        semaphore_provider permits(s, so);
        for (const auto ttl : {500ms, 400ms}) {
            INFO("ttl " << ttl.count() << " ms");
            acquire_options ao;
            ao.ttl = ttl;
            diagnostics diag;
            const std::vector<std::string> parts{"ttl", ms(ttl), "extension_interval", "500"};
            auto [ec, l] = co_await locks.async_acquire("short", ao, diag, nothrow);
            check_refused(ec, l, diag, parts);
            auto [ec2, p] = co_await permits.async_acquire("short", 1, ao, diag, nothrow);
            check_refused(ec2, p, diag, parts);
            auto [ec3, r] = co_await rw.async_acquire_read("short", ao, diag, nothrow);
            check_refused(ec3, r, diag, parts);
        }
        {
            const auto awaited = co_await command(conn, "EXISTS", "redcoord:lock:{short}");
            CHECK(awaited == "0");
        }

        // A TTL longer than the interval is fine, and so is extending to one; extending to a
        // TTL the interval does not fit in is refused.
        auto l = co_await must_acquire(locks, "short", {.ttl = 2s});
        diagnostics diag;
        auto [xec] = co_await l.async_extend(500ms, diag, nothrow);
        CHECK(xec == redcoord::error::invalid_argument);
        check_names(diag.message(), {"ttl", "500 ms", "extension_interval"});
        auto [xec2] = co_await l.async_extend(5s, diag, nothrow);
        require_ok(xec2, diag);
        co_await must_release(l);
    });
}

}  // namespace
