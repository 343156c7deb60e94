// The key layout as operators see it: every key the library writes starts with the session's
// prefix, none of them lives forever (each has a TTL once the work that made it is done), and
// fencing tokens keep growing when a lock's counter has expired.
#include <redcoord/redcoord.hpp>

#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "connection_helpers.hpp"
#include "lease_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using redcoord::keyspace;
using redcoord::session;
using redcoord::test::command;
using redcoord::test::eventually_async;
using redcoord::test::must_acquire;
using redcoord::test::must_release;
using redcoord::test::nothrow;
using redcoord::test::require_ok;
using redcoord::test::with_connection;

// Every key of the server, with its PTTL (-1: no TTL), found by SCAN.
asio::awaitable<std::vector<std::pair<std::string, std::int64_t>>> all_keys(
    redcoord::connection& conn) {
    std::vector<std::pair<std::string, std::int64_t>> out;
    std::string cursor = "0";
    do {
        redcoord::request req;
        req.push("SCAN", cursor, "COUNT", 1000);
        redcoord::response<std::pair<std::string, std::vector<std::string>>> page;
        redcoord::diagnostics diag;
        auto [ec, n] = co_await conn.async_exec(req, page, diag, nothrow);
        require_ok(ec, diag);
        cursor = std::get<0>(page).first;
        for (auto& k : std::get<0>(page).second) out.emplace_back(std::move(k), 0);
    } while (cursor != "0");
    for (auto& [k, ttl] : out) ttl = std::stoll(co_await command(conn, "PTTL", k));
    co_return out;
}

std::int64_t to_int(const std::string& s) { return std::stoll(s); }

TEST_CASE("key layout: locks, read-write locks, semaphores and leaderships taken and released "
          "leave only keys under the prefix, each with a TTL",
          "[integration][keys]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        redcoord::session_options so;
        so.prefix = "app:";
        so.node_id = "n1";
        session s(conn, so);

        redcoord::lock_provider locks(s);
        auto l = co_await must_acquire(locks, "orders:42", {});
        co_await must_release(l);
        redcoord::lock_options fair;
        fair.fair = true;
        redcoord::lock_provider fair_locks(s, fair);
        auto lf = co_await must_acquire(fair_locks, "fair", {});
        co_await must_release(lf);

        redcoord::rw_lock_provider rw(s);
        {
            redcoord::diagnostics d;
            auto [ec, w] = co_await rw.async_acquire_write("table", {}, d, nothrow);
            require_ok(ec, d);
            co_await must_release(w);
            auto [ec2, r] = co_await rw.async_acquire_read("table", {}, d, nothrow);
            require_ok(ec2, d);
            co_await must_release(r);
        }

        redcoord::semaphore_provider sem(s);
        {
            redcoord::diagnostics d;
            auto [ec, p] = co_await sem.async_acquire("pool", 2, {}, d, nothrow);
            require_ok(ec, d);
            co_await must_release(p);
        }

        redcoord::leader_election election(s);
        {
            auto [ec, lead] = co_await election.async_campaign("scheduler", nothrow);
            REQUIRE_FALSE(ec);
            auto [ec2] = co_await election.async_resign(lead, nothrow);
            REQUIRE_FALSE(ec2);
        }

        const auto keys = co_await all_keys(conn);
        // The fencing counters at least (lock, fair lock, rw, semaphore, leadership).
        CHECK(keys.size() >= 5);
        for (const auto& [k, ttl] : keys) {
            INFO("key " << k << " PTTL " << ttl);
            CHECK(k.starts_with("app:"));
            CHECK(ttl > 0);
        }
        // The counter of the lock is its companion: the main key with a suffix, in the slot of
        // the name's hash tag.
        const auto fence = std::string("app:lock:{orders:42}:fence");
        CHECK(s.keys().lock("orders:42") == "app:lock:{orders:42}");
        CHECK(to_int(co_await command(conn, "EXISTS", fence)) == 1);
        // It expires a day after its token, in server time: between now and a day from now.
        const auto pttl = to_int(co_await command(conn, "PTTL", fence));
        CHECK(pttl > 0);
        CHECK(pttl <= 24 * 3600 * 1000);
    });
}

TEST_CASE("key layout: a dead node's record expires with the node registry",
          "[integration][keys]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        redcoord::session_options so;
        so.prefix = "app:";
        so.node_id = "alive";
        session s(conn, so);
        redcoord::membership_options mo;
        mo.heartbeat_interval = 200ms;
        mo.heartbeat_grace = 200ms;
        redcoord::membership members(s, mo);
        auto [ec] = co_await members.async_join("alive", nothrow);
        REQUIRE_FALSE(ec);
        // A node that registered and then vanished without leaving.
        const std::string registry = s.keys().registry();
        CHECK(registry == "app:nodes:{registry}");
        co_await command(conn, "SADD", registry, "ghost");
        const std::string dead = keyspace::companion(registry, "dead");
        CHECK(dead == "app:nodes:{registry}:dead");
        const bool marked = co_await eventually_async(
            [&]() -> asio::awaitable<bool> {
                co_return to_int(co_await command(conn, "HEXISTS", dead, "ghost")) == 1;
            },
            20s);
        REQUIRE(marked);
        const auto pttl = to_int(co_await command(conn, "PTTL", dead));
        CHECK(pttl > 0);
        auto [ec2] = co_await members.async_leave("alive", nothrow);
        CHECK_FALSE(ec2);
        const auto keys = co_await all_keys(conn);
        for (const auto& [k, ttl] : keys) {
            INFO("key " << k << " PTTL " << ttl);
            CHECK(k.starts_with("app:"));
            CHECK(ttl > 0);
        }
    });
}

TEST_CASE("key layout: a fencing token stays greater than every earlier one after the counter "
          "expired, and a held lock's renewals keep its counter",
          "[integration][keys][fencing]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "n1"});
        redcoord::lock_provider locks(s);
        const std::string fence = keyspace::companion(s.keys().lock("acct"), "fence");

        auto first = co_await must_acquire(locks, "acct", {});
        const auto t1 = first.fencing_token();
        CHECK(to_int(co_await command(conn, "GET", fence)) == t1);
        co_await must_release(first);

        // The counter expires (here at once, as it would a day later).
        co_await command(conn, "PEXPIRE", fence, "1");
        co_await redcoord::test::sleep_for(5ms);
        CHECK(to_int(co_await command(conn, "EXISTS", fence)) == 0);

        redcoord::acquire_options short_ttl;
        short_ttl.ttl = 600ms;
        auto second = co_await must_acquire(locks, "acct", short_ttl);
        const auto t2 = second.fencing_token();
        CHECK(t2 > t1);
        // A fenced store that saw the first token accepts the second and refuses the first.
        redcoord::diagnostics d;
        auto [ec1] = co_await redcoord::async_fenced_set(s, "store", "a", t1, d, nothrow);
        CHECK_FALSE(ec1);
        auto [ec2] = co_await redcoord::async_fenced_set(s, "store", "b", t2, d, nothrow);
        CHECK_FALSE(ec2);
        auto [ec3] = co_await redcoord::async_fenced_set(s, "store", "c", t1, d, nothrow);
        CHECK(ec3 == redcoord::error::stale_fencing_token);

        // While held, a renewal moves a counter's expiry that came close back to a day.
        co_await command(conn, "PEXPIRE", fence, "60000");
        const auto renewals = second.renewals();
        const bool renewed = co_await redcoord::test::eventually(
            [&] { return second.renewals() > renewals; }, 20s);
        REQUIRE(renewed);
        CHECK(to_int(co_await command(conn, "PTTL", fence)) > 60000);
        CHECK(to_int(co_await command(conn, "GET", fence)) == t2);
        co_await must_release(second);
    });
}

}  // namespace
