// The monitor's cluster-wide view: every kind of held thing (mutexes, read and write holds,
// semaphore permits, leaderships, fill leases) with holder node, owner, TTL, fencing token and
// waiters; and the lock statistics every session reports to Redis, summed over the cluster
// and per lock.
#include <redcoord/redcoord.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "connection_helpers.hpp"
#include "lease_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::held_kind;
using redcoord::held_lease;
using redcoord::lease;
using redcoord::lock_monitor;
using redcoord::lock_provider;
using redcoord::session;
using redcoord::test::eventually;
using redcoord::test::must_acquire;
using redcoord::test::must_release;
using redcoord::test::nothrow;
using redcoord::test::require_ok;
using redcoord::test::with_connection;

asio::awaitable<std::vector<held_lease>> must_list_held(lock_monitor& mon) {
    redcoord::diagnostics diag;
    auto [ec, held] = co_await mon.async_held_leases(diag, nothrow);
    require_ok(ec, diag);
    co_return std::move(held);
}

// The listed things of one kind and name.
std::vector<held_lease> of(const std::vector<held_lease>& all, held_kind k,
                           const std::string& name) {
    std::vector<held_lease> out;
    for (const auto& h : all)
        if (h.kind == k && h.name == name) out.push_back(h);
    return out;
}

// Checks that the listing shows `l` as Redis holds it.
void check_listed(const std::vector<held_lease>& all, held_kind k, const std::string& name,
                  const lease& l, const std::string& node) {
    INFO(redcoord::to_string(k) << " '" << name << "'");
    const auto found = of(all, k, name);
    auto it = std::find_if(found.begin(), found.end(),
                           [&](const held_lease& h) { return h.owner == l.owner(); });
    REQUIRE(it != found.end());
    CHECK(it->node == node);
    CHECK(it->fencing_token == l.fencing_token());
    CHECK(it->remaining_ttl > 0ms);
    CHECK(it->remaining_ttl <= l.ttl());
    CHECK(it->acquired_at > std::chrono::system_clock::time_point{});
}

TEST_CASE("lock monitor: every held thing is listed, with holder node, owner, TTL, fencing "
          "token and waiters",
          "[lock_monitor]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session a(conn, {.node_id = "node-a"});
        session b(conn, {.node_id = "node-b"});
        lock_provider locks_a(a), locks_b(b);
        redcoord::acquire_options ttl30;
        ttl30.ttl = 30s;

        auto mutex = co_await must_acquire(locks_a, "orders", ttl30);
        // A waiter of node-b: the lock's waiters flag is set by its attempt.
        redcoord::acquire_options waits;
        waits.wait = 20s;
        bool waiter_done = false;
        lease waited;
        asio::co_spawn(
            conn.get_executor(),
            [&]() -> asio::awaitable<void> {
                auto [ec, l] = co_await locks_b.async_acquire("orders", waits, nothrow);
                waited = std::move(l);
                waiter_done = true;
            },
            asio::detached);

        redcoord::rw_lock_provider rw(a);
        redcoord::diagnostics d;
        auto [ec1, writer] = co_await rw.async_acquire_write("table-w", ttl30, d, nothrow);
        require_ok(ec1, d);
        redcoord::rw_lock_provider rw_b(b);
        auto [ec2, reader1] = co_await rw.async_acquire_read("table-r", ttl30, d, nothrow);
        require_ok(ec2, d);
        auto [ec3, reader2] = co_await rw_b.async_acquire_read("table-r", ttl30, d, nothrow);
        require_ok(ec3, d);

        redcoord::semaphore_provider sem(a), sem_b(b);
        auto [ec4, permit1] = co_await sem.async_acquire("pool", 3, ttl30, d, nothrow);
        require_ok(ec4, d);
        auto [ec5, permit2] = co_await sem_b.async_acquire("pool", 3, ttl30, d, nothrow);
        require_ok(ec5, d);

        redcoord::leader_election election(b);
        auto [ec6, term] = co_await election.async_campaign("boss", nothrow);
        REQUIRE_FALSE(ec6);

        // A fill lease: a get-or-set whose factory runs until released.
        redcoord::cache cache(a);
        bool release_factory = false;
        bool fill_done = false;
        auto factory = [&]() -> asio::awaitable<int> {
            asio::steady_timer t(co_await asio::this_coro::executor);
            while (!release_factory) {
                t.expires_after(5ms);
                co_await t.async_wait(asio::use_awaitable);
            }
            co_return 7;
        };
        asio::co_spawn(
            conn.get_executor(),
            [&]() -> asio::awaitable<void> {
                auto [ep, v] = co_await cache.async_get_or_set(
                    "report", factory, std::optional<std::chrono::milliseconds>(60s),
                    asio::as_tuple(asio::use_awaitable));
                fill_done = true;
            },
            asio::detached);

        lock_monitor mon(a);
        std::vector<held_lease> held;
        // Until the waiter's attempt has marked the lock and the fill lease is taken.
        const bool ready = co_await redcoord::test::eventually_async(
            [&]() -> asio::awaitable<bool> {
                held = co_await must_list_held(mon);
                const auto m = of(held, held_kind::mutex, "orders");
                co_return !m.empty() && m[0].waiters >= 1 &&
                    !of(held, held_kind::fill, "report").empty();
            },
            20s);
        REQUIRE(ready);

        check_listed(held, held_kind::mutex, "orders", mutex, "node-a");
        CHECK(of(held, held_kind::mutex, "orders")[0].holds == 1);
        check_listed(held, held_kind::write, "table-w", writer, "node-a");
        CHECK(of(held, held_kind::read, "table-r").size() == 2);
        check_listed(held, held_kind::read, "table-r", reader1, "node-a");
        check_listed(held, held_kind::read, "table-r", reader2, "node-b");
        CHECK(of(held, held_kind::permit, "pool").size() == 2);
        check_listed(held, held_kind::permit, "pool", permit1, "node-a");
        check_listed(held, held_kind::permit, "pool", permit2, "node-b");
        check_listed(held, held_kind::leadership, "boss", term, "node-b");
        const auto fill = of(held, held_kind::fill, "report");
        REQUIRE(fill.size() == 1);
        CHECK(fill[0].node == "node-a");
        CHECK(fill[0].remaining_ttl > 0ms);
        // Nothing else: a read-write lock's companions are not mutexes, and so on.
        CHECK(held.size() == 1 + 1 + 2 + 2 + 1 + 1);

        // Released things leave the listing.
        release_factory = true;
        co_await must_release(mutex);
        const bool handed = co_await eventually([&] { return waiter_done; }, 20s);
        REQUIRE(handed);
        co_await must_release(waited);
        co_await must_release(writer);
        co_await must_release(reader1);
        co_await must_release(reader2);
        co_await must_release(permit1);
        co_await must_release(permit2);
        co_await must_release(term);
        const bool filled = co_await eventually([&] { return fill_done; }, 20s);
        REQUIRE(filled);
        auto after = co_await must_list_held(mon);
        CHECK(after.empty());
    });
}

TEST_CASE("lock monitor: the lock statistics of every session add up in Redis, in total and "
          "per lock",
          "[lock_monitor]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        redcoord::session_options oa;
        oa.node_id = "node-a";
        oa.statistics_interval = 50ms;
        auto ob = oa;
        ob.node_id = "node-b";
        session a(conn, oa), b(conn, ob);
        lock_provider locks_a(a), locks_b(b);

        constexpr int rounds = 20;
        for (int i = 0; i < rounds; ++i) {
            auto la = co_await must_acquire(locks_a, "hot", {});
            co_await must_release(la);
            auto lb = co_await must_acquire(locks_b, "hot", {});
            co_await must_release(lb);
        }
        auto cold = co_await must_acquire(locks_a, "cold", {});
        co_await must_release(cold);
        // A timeout, counted too.
        auto held = co_await must_acquire(locks_a, "busy", {});
        redcoord::acquire_options brief;
        brief.wait = 30ms;
        auto [tec, none] = co_await locks_b.async_acquire("busy", brief, nothrow);
        CHECK(tec == redcoord::error::acquire_timeout);
        co_await must_release(held);

        const auto local_a = a.get_lock_statistics();
        const auto local_b = b.get_lock_statistics();
        const auto expected = local_a.acquisitions + local_b.acquisitions;
        CHECK(expected == 2 * rounds + 2);

        lock_monitor mon(a);
        redcoord::lock_statistics total;
        const bool reported = co_await redcoord::test::eventually_async(
            [&]() -> asio::awaitable<bool> {
                auto [ec, st] = co_await mon.async_cluster_statistics(nothrow);
                REQUIRE_FALSE(ec);
                total = st;
                co_return st.acquisitions == expected && st.timeouts == 1;
            },
            20s);
        REQUIRE(reported);
        CHECK(total.contended_acquisitions ==
              local_a.contended_acquisitions + local_b.contended_acquisitions);
        CHECK(total.wait_max >= std::max(local_a.wait_max, local_b.wait_max));
        CHECK(total.wait_p50 <= total.wait_max);
        CHECK(total.wait_p99 <= total.wait_max);
        CHECK(total.wait_p50 <= total.wait_p99);

        auto [ec2, listed] = co_await mon.async_contention(nothrow);
        REQUIRE_FALSE(ec2);
        // (A variable of its own: clang 14 cannot capture a structured binding.)
        const auto per_lock = std::move(listed);
        auto find = [&](const std::string& name) {
            return std::find_if(per_lock.begin(), per_lock.end(),
                                [&](const auto& c) { return c.name == name; });
        };
        REQUIRE(find("hot") != per_lock.end());
        CHECK(find("hot")->stats.acquisitions == 2 * rounds);
        CHECK(find("hot")->kind == held_kind::mutex);
        REQUIRE(find("cold") != per_lock.end());
        CHECK(find("cold")->stats.acquisitions == 1);
        REQUIRE(find("busy") != per_lock.end());
        CHECK(find("busy")->stats.timeouts == 1);
        // The longest mean wait first.
        for (std::size_t i = 1; i < per_lock.size(); ++i)
            CHECK(per_lock[i - 1].stats.wait_mean >= per_lock[i].stats.wait_mean);

        // The statistics keys expire (7 days, sliding).
        const auto pttl = std::stoll(
            co_await redcoord::test::command(conn, "PTTL", "redcoord:stats:{locks}"));
        CHECK(pttl > 0);
    });
}

}  // namespace
