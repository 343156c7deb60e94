// Counting semaphores against a real redis-server: the key layout, permit counts, fencing
// tokens, contention, holders that died, and bad input.
#include <redcoord/redcoord.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "async_test.hpp"
#include "connection_helpers.hpp"
#include "lease_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::acquire_options;
using redcoord::lease;
using redcoord::semaphore_options;
using redcoord::semaphore_provider;
using redcoord::session;
using redcoord::test::check_reply;
using redcoord::test::command;
using redcoord::test::config_for;
using redcoord::test::eventually;
using redcoord::test::must_release;
using redcoord::test::nothrow;
using redcoord::test::require_ok;
using redcoord::test::sleep_for;
using redcoord::test::with_connection;

asio::awaitable<lease> must_acquire(semaphore_provider& sem, std::string name,
                                    std::int64_t permits, const acquire_options& opts) {
    redcoord::diagnostics diag;
    auto [ec, l] = co_await sem.async_acquire(name, permits, opts, diag, nothrow);
    require_ok(ec, diag);
    REQUIRE(l.is_held());
    co_return std::move(l);
}

asio::awaitable<std::int64_t> must_count(semaphore_provider& sem, std::string name,
                                         std::int64_t permits) {
    redcoord::diagnostics diag;
    auto [ec, n] = co_await sem.async_available(name, permits, diag, nothrow);
    require_ok(ec, diag);
    co_return n;
}

const std::string sem_key = "redcoord:semaphore:{pool}";
const std::string fence_key = "redcoord:semaphore:{pool}:fence";

TEST_CASE("semaphore: permits are counted, fenced and stored as documented", "[semaphore]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        semaphore_provider sem(s);
        auto n0 = co_await must_count(sem, "pool", 3);
        CHECK(n0 == 3);
        std::vector<lease> held;
        for (int i = 0; i < 3; ++i) held.push_back(co_await must_acquire(sem, "pool", 3, {}));
        // Each permit is a lease of its own, with a larger token than the one before.
        CHECK(held[0].fencing_token() < held[1].fencing_token());
        CHECK(held[1].fencing_token() < held[2].fencing_token());
        CHECK(held[0].fencing_token() > 0);
        CHECK(held[0].owner() != held[1].owner());
        CHECK(held[0].key() == sem_key);
        CHECK(held[0].resource() == "pool");
        CHECK(held[0].owner().starts_with("node-a:"));
        co_await check_reply(conn, "3", "ZCARD", sem_key);
        // The fencing counter holds the last token granted.
        const std::string last_fence = std::to_string(held[2].fencing_token());
        co_await check_reply(conn, last_fence, "GET", fence_key);
        auto n1 = co_await must_count(sem, "pool", 3);
        CHECK(n1 == 0);
        // A larger total leaves room.
        auto n2 = co_await must_count(sem, "pool", 5);
        CHECK(n2 == 2);

        auto [ec, none] = co_await sem.async_try_acquire("pool", 3, {}, nothrow);
        REQUIRE_FALSE(ec);
        CHECK_FALSE(none);

        co_await must_release(held[1]);
        co_await check_reply(conn, "2", "ZCARD", sem_key);
        auto n3 = co_await must_count(sem, "pool", 3);
        CHECK(n3 == 1);
        // Releasing twice is harmless.
        co_await must_release(held[1]);

        auto [ec2, again] = co_await sem.async_try_acquire("pool", 3, {}, nothrow);
        REQUIRE_FALSE(ec2);
        REQUIRE(again.is_held());
        CHECK(again.fencing_token() > held[2].fencing_token());
        co_await must_release(again);
        co_await must_release(held[0]);
        co_await must_release(held[2]);
        co_await check_reply(conn, "0", "EXISTS", sem_key);
        auto n4 = co_await must_count(sem, "pool", 3);
        CHECK(n4 == 3);
    });
}

TEST_CASE("semaphore: 20 coroutines share 3 permits", "[semaphore]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        semaphore_provider sem(s);
        constexpr int workers = 20, rounds = 3, permits = 3;
        int inside = 0, max_inside = 0, done = 0, over = 0;
        std::vector<std::int64_t> fences;
        auto ex = co_await asio::this_coro::executor;
        for (int w = 0; w < workers; ++w) {
            asio::co_spawn(
                ex,
                [&]() -> asio::awaitable<void> {
                    for (int r = 0; r < rounds; ++r) {
                        auto l = co_await must_acquire(sem, "pool", permits,
                                                       {.ttl = 10s, .wait = 60s});
                        fences.push_back(l.fencing_token());
                        ++inside;
                        max_inside = std::max(max_inside, inside);
                        if (inside > permits) ++over;
                        co_await sleep_for(2ms);
                        if (inside > permits) ++over;
                        --inside;
                        co_await must_release(l);
                    }
                    ++done;
                },
                asio::detached);
        }
        co_await eventually([&] { return done == workers; }, 100s, "all done");
        CHECK(over == 0);
        CHECK(max_inside >= 1);
        CHECK(max_inside <= permits);
        REQUIRE(fences.size() == static_cast<std::size_t>(workers * rounds));
        // Every permit had a token of its own, from the one counter, which holds the largest.
        std::set<std::int64_t> distinct(fences.begin(), fences.end());
        CHECK(distinct.size() == fences.size());
        CHECK(*distinct.begin() > 0);
        const std::string largest_fence = std::to_string(*distinct.rbegin());
        co_await check_reply(conn, largest_fence, "GET", fence_key);
        co_await check_reply(conn, "0", "ZCARD", sem_key);
        CHECK(s.held_leases() == 0);
        auto n = co_await must_count(sem, "pool", permits);
        CHECK(n == permits);
    }, 120s);
}

TEST_CASE("semaphore: a waiter is woken by a release on another session", "[semaphore]") {
    with_connection([](redcoord::connection& conn, auto& srv) -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        redcoord::connection conn2(ex);
        conn2.async_run(config_for(srv), asio::detached);
        {
            session s(conn);
            session s2(conn2);
            semaphore_provider sem(s), sem2(s2);
            auto held = co_await must_acquire(sem2, "pool", 1, {.ttl = 10s, .wait = 10s});
            std::optional<lease> got;
            asio::co_spawn(
                ex,
                [&]() -> asio::awaitable<void> {
                    got.emplace(co_await must_acquire(sem, "pool", 1, {.ttl = 10s, .wait = 30s}));
                },
                asio::detached);
            // Give the waiter time to be refused and subscribe (the test holds either way).
            co_await sleep_for(100ms);
            auto [ec, none] = co_await sem.async_try_acquire("pool", 1, {}, nothrow);
            REQUIRE_FALSE(ec);
            CHECK_FALSE(none);
            CHECK_FALSE(got);
            co_await must_release(held);
            co_await eventually([&] { return got.has_value(); }, 10s, "waiter granted");
            CHECK(got->is_held());
            CHECK(got->fencing_token() > held.fencing_token());
            co_await must_release(*got);
        }
        conn2.cancel();
    });
}

TEST_CASE("semaphore: a waiter that times out or is cancelled takes no permit", "[semaphore]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        semaphore_provider sem(s);
        auto held = co_await must_acquire(sem, "pool", 1, {.ttl = 10s});
        redcoord::diagnostics diag;
        auto [ec, none] = co_await sem.async_acquire("pool", 1, {.wait = 200ms}, diag, nothrow);
        CHECK(ec == redcoord::error::acquire_timeout);
        CHECK_FALSE(none);
        CHECK(diag.message().find("semaphore 'pool'") != std::string::npos);

        asio::cancellation_signal stop;
        std::optional<error_code> result;
        auto ex = co_await asio::this_coro::executor;
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
                auto [ec, l] = co_await sem.async_acquire(
                    "pool", 1, {.wait = 30s}, asio::bind_cancellation_slot(stop.slot(), nothrow));
                result = ec;
            },
            asio::detached);
        co_await sleep_for(50ms);
        stop.emit(asio::cancellation_type::terminal);
        co_await eventually([&] { return result.has_value(); }, 10s, "waiter cancelled");
        CHECK(*result == asio::error::operation_aborted);

        co_await check_reply(conn, "1", "ZCARD", sem_key);
        co_await must_release(held);
        auto n = co_await must_count(sem, "pool", 1);
        CHECK(n == 1);
    });
}

TEST_CASE("semaphore: a holder whose session died frees its permit at its TTL", "[semaphore]") {
    with_connection([](redcoord::connection& conn, auto& srv) -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        redcoord::connection conn2(ex);
        conn2.async_run(config_for(srv), asio::detached);
        {
            std::optional<session> s2;
            s2.emplace(conn2);
            semaphore_provider sem2(*s2);
            auto l = co_await must_acquire(sem2, "pool", 1, {.ttl = 1s, .wait = 10s});
            s2.reset();
            CHECK(l.get_status() == lease::status::lost);
        }
        conn2.cancel();

        session s(conn);
        semaphore_provider sem(s);
        auto l = co_await must_acquire(sem, "pool", 1, {.ttl = 10s, .wait = 30s});
        CHECK(l.is_held());
        co_await check_reply(conn, "1", "ZCARD", sem_key);
        auto n = co_await must_count(sem, "pool", 1);
        CHECK(n == 0);
        co_await must_release(l);
    });
}

TEST_CASE("semaphore: a permit without watchdog lapses and is counted free", "[semaphore]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        semaphore_provider no_renewal(s, {.enable_extension = false});
        semaphore_provider sem(s);
        auto l = co_await must_acquire(no_renewal, "pool", 2, {.ttl = 300ms});
        auto [ec] = co_await l.async_wait_lost(nothrow);
        CHECK_FALSE(ec);
        // Lost by the client's conservative deadline; Redis lets it go at its TTL.
        const auto until = std::chrono::steady_clock::now() + 10s;
        for (;;) {
            auto n = co_await must_count(sem, "pool", 2);
            if (n == 2) break;
            if (std::chrono::steady_clock::now() >= until) FAIL("the lapsed permit still counts");
            co_await sleep_for(5ms);
        }
        redcoord::diagnostics diag;
        auto [ec2] = co_await l.async_release(diag, nothrow);
        CHECK(ec2 == redcoord::error::not_held);
        // Renewed permits stay.
        auto kept = co_await must_acquire(sem, "pool", 2, {.ttl = 300ms});
        co_await eventually([&] { return kept.renewals() >= 2; }, 10s, "permit renewed");
        auto n2 = co_await must_count(sem, "pool", 2);
        CHECK(n2 == 1);
        co_await must_release(kept);
    });
}

TEST_CASE("semaphore: bad input", "[semaphore]") {
    with_connection([](redcoord::connection& conn, auto& srv) -> asio::awaitable<void> {
        session s(conn);
        semaphore_provider sem(s);
        redcoord::diagnostics diag;
        {
            auto [ec, l] = co_await sem.async_acquire("", 3, {}, diag, nothrow);
            CHECK(ec == redcoord::error::invalid_argument);
            CHECK_FALSE(l);
            CHECK(diag.message().find("semaphore name") != std::string::npos);
        }
        const std::vector<std::int64_t> bad_permits{0, -1};
        for (std::int64_t permits : bad_permits) {
            {
                auto [ec, l] = co_await sem.async_acquire("pool", permits, {}, diag, nothrow);
                CHECK(ec == redcoord::error::invalid_argument);
                CHECK_FALSE(l);
                CHECK(diag.message().find("permits_total") != std::string::npos);
            }
            {
                auto [ec, l] = co_await sem.async_try_acquire("pool", permits, {}, diag, nothrow);
                CHECK(ec == redcoord::error::invalid_argument);
                CHECK(diag.message().find("permits_total") != std::string::npos);
            }
            {
                auto [ec, n] = co_await sem.async_available("pool", permits, diag, nothrow);
                CHECK(ec == redcoord::error::invalid_argument);
                CHECK(diag.message().find("permits_total") != std::string::npos);
            }
        }
        {
            auto [ec, n] = co_await sem.async_available("", 3, diag, nothrow);
            CHECK(ec == redcoord::error::invalid_argument);
            CHECK(diag.message().find("semaphore name") != std::string::npos);
        }
        {
            auto [ec, l] = co_await sem.async_acquire("pool", 3, {.ttl = -1ms}, diag, nothrow);
            CHECK(ec == redcoord::error::invalid_argument);
            CHECK(diag.message().find("ttl") != std::string::npos);
        }
        {
            auto [ec, l] = co_await sem.async_acquire("pool", 3, {.wait = -1ms}, diag, nothrow);
            CHECK(ec == redcoord::error::invalid_argument);
            CHECK(diag.message().find("wait") != std::string::npos);
        }
        bool threw = false;
        try {
            semaphore_provider bad(s, {.default_ttl = 0ms});
        } catch (const redcoord::error_with_diagnostics& e) {
            threw = e.code() == redcoord::error::bad_config;
        }
        CHECK(threw);
        CHECK(redcoord::test::key_count(srv) == 0);
    });
}

}  // namespace
