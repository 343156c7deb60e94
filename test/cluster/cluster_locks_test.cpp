// Locks and leases on a real loopback Redis Cluster: batches split per slot, mutual exclusion
// across masters and through a slot migration, and leases through a master failover.
#include "async_test.hpp"
#include "cluster_helpers.hpp"
#include "connection_helpers.hpp"
#include "lease_helpers.hpp"
#include "redis_cluster.hpp"

#include <redcoord/redcoord.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using redcoord::test::cluster_config;
using redcoord::test::nothrow;
using redcoord::test::redis_cluster;

namespace {

// EVALSHA calls every master has run so far (INFO commandstats).
std::int64_t evalsha_calls(const redis_cluster& c) {
    std::int64_t total = 0;
    for (auto port : c.master_ports()) {
        const auto info = c.cli(c.index_of_port(port), {"INFO", "commandstats"});
        const auto at = info.find("cmdstat_evalsha:calls=");
        if (at == std::string::npos) continue;
        total += std::stoll(info.substr(at + 22));
    }
    return total;
}

// Tries to acquire the locks n0 .. n<count-1>, started in one turn so that their attempts leave
// in one batch; each must be granted, and its key must live on its slot's master.
boost::asio::awaitable<std::vector<redcoord::lease>> try_acquire_in_one_turn(
    boost::asio::io_context& ioc, redcoord::lock_provider& locks, const redis_cluster& c,
    int count) {
    int acquired = 0;
    std::vector<redcoord::lease> held(static_cast<std::size_t>(count));
    std::string failure;
    for (int i = 0; i < count; ++i)
        boost::asio::co_spawn(
            ioc,
            [&, i]() -> boost::asio::awaitable<void> {
                redcoord::diagnostics d;
                auto [ec, l] = co_await locks.async_try_acquire("n" + std::to_string(i),
                                                                {.ttl = 10s}, d, nothrow);
                if (ec && failure.empty()) failure = redcoord::test::describe(ec, d);
                if (!ec && l.is_held()) ++acquired;
                held[static_cast<std::size_t>(i)] = std::move(l);
            },
            boost::asio::detached);
    co_await redcoord::test::wait_until([&] { return acquired == count || !failure.empty(); });
    INFO(failure);
    CHECK(acquired == count);
    for (int i = 0; i < count; ++i) {
        const std::string key = "redcoord:lock:{n" + std::to_string(i) + "}";
        CHECK(c.cli(c.index_of_slot(redis_cluster::key_slot(key)), {"EXISTS", key}) == "1");
    }
    co_return held;
}

}  // namespace

TEST_CASE("a lock batch on several masters sends one EVALSHA per master", "[redis_cluster]") {
    redis_cluster c;
    redcoord::test::run_async([&](boost::asio::io_context& ioc) -> boost::asio::awaitable<void> {
        redcoord::connection conn(ioc.get_executor());
        conn.async_run(cluster_config(c), boost::asio::detached);
        // No statistics reports: each is an EVALSHA per lock seen, 5 s after the first
        // acquisition, which a slow run reaches within the counted calls.
        redcoord::session s(conn, {.statistics_interval = std::chrono::milliseconds(0)});
        redcoord::lock_provider locks(s);
        // The script gets loaded on every master first.
        {
            auto warm = co_await redcoord::test::must_acquire(locks, "warm", {.ttl = 10s});
            co_await redcoord::test::must_release(warm);
        }
        constexpr int count = 24;
        std::set<int> slots;
        std::set<std::size_t> masters;
        for (int i = 0; i < count; ++i) {
            const int slot = redis_cluster::key_slot("redcoord:lock:{n" + std::to_string(i) + "}");
            slots.insert(slot);
            masters.insert(c.index_of_slot(slot));
        }
        REQUIRE(masters.size() == 3);
        REQUIRE(slots.size() > masters.size());
        const auto before = evalsha_calls(c);
        // Their attempts leave in one batch, split by master (each call declares the keys of
        // one slot and reaches those of its master's other slots).
        auto held = co_await try_acquire_in_one_turn(ioc, locks, c, count);
        CHECK(evalsha_calls(c) - before == static_cast<std::int64_t>(masters.size()));
        for (auto& l : held) co_await redcoord::test::must_release(l);
        co_await s.async_close(nothrow);
        conn.cancel();
    });
}

TEST_CASE("a lock batch whose slot map is out of date for one of its slots takes every lock",
          "[redis_cluster]") {
    redcoord::test::redis_cluster_options o;
    o.replicas_per_master = 0;
    redis_cluster c(o);
    redcoord::test::run_async([&](boost::asio::io_context& ioc) -> boost::asio::awaitable<void> {
        redcoord::test::cluster_client client(ioc, c, "batcher");
        redcoord::lock_provider locks(client.session);
        {
            auto warm = co_await redcoord::test::must_acquire(locks, "warm", {.ttl = 10s});
            co_await redcoord::test::must_release(warm);
        }
        // The slot of n0 moves behind the client's back: its map still names the old master,
        // which the batch's call for that master reaches with n0's keys and others'.
        const int moved = redis_cluster::key_slot("redcoord:lock:{n0}");
        const auto from = c.index_of_slot(moved);
        std::size_t to = from;
        for (auto port : c.master_ports())
            if (c.index_of_port(port) != from) to = c.index_of_port(port);
        c.migrate_slot(moved, to);
        auto held = co_await try_acquire_in_one_turn(ioc, locks, c, 24);
        CHECK(c.index_of_slot(moved) == to);
        for (auto& l : held) co_await redcoord::test::must_release(l);
        co_await client.close();
    });
}

TEST_CASE("a lock batch reaches a key already moved to a migration's target", "[redis_cluster]") {
    redcoord::test::redis_cluster_options o;
    o.replicas_per_master = 0;
    redis_cluster c(o);
    auto slot_of = [](const std::string& name) {
        return redis_cluster::key_slot("redcoord:lock:{" + name + "}");
    };
    // "m" migrates; "low" is served by the same master from a lower slot, so a call of that
    // master's operations declares low's keys and reaches m's as undeclared ones.
    const std::string m = "m";
    const int slot = slot_of(m);
    const auto from = c.index_of_slot(slot);
    std::string low;
    for (int i = 0; low.empty(); ++i) {
        const std::string name = "low" + std::to_string(i);
        if (slot_of(name) < slot && c.index_of_slot(slot_of(name)) == from) low = name;
    }
    std::size_t to = from;
    for (auto port : c.master_ports())
        if (c.index_of_port(port) != from) to = c.index_of_port(port);
    redcoord::test::run_async([&](boost::asio::io_context& ioc) -> boost::asio::awaitable<void> {
        redcoord::test::cluster_client client(ioc, c, "batcher");
        redcoord::lock_provider locks(client.session);
        auto held = co_await redcoord::test::must_acquire(locks, m, {.ttl = 30s});
        // m's key moves to the target; the slot is still the source's (migrating).
        c.begin_migration(slot, to);
        c.migrate_keys(slot);
        CHECK(c.cli(to, {"CLUSTER", "COUNTKEYSINSLOT", std::to_string(slot)}) != "0");
        // One turn: the release of m and an attempt on low leave in one batch.
        bool released = false, got_low = false;
        std::string failure;
        redcoord::lease low_lease;
        boost::asio::co_spawn(
            ioc,
            [&]() -> boost::asio::awaitable<void> {
                redcoord::diagnostics d;
                auto [ec] = co_await held.async_release(d, nothrow);
                if (ec && failure.empty()) failure = "release: " + redcoord::test::describe(ec, d);
                released = !ec;
            },
            boost::asio::detached);
        boost::asio::co_spawn(
            ioc,
            [&]() -> boost::asio::awaitable<void> {
                redcoord::diagnostics d;
                auto [ec, l] = co_await locks.async_try_acquire(low, {.ttl = 30s}, d, nothrow);
                if (ec && failure.empty()) failure = "acquire: " + redcoord::test::describe(ec, d);
                got_low = !ec && l.is_held();
                low_lease = std::move(l);
            },
            boost::asio::detached);
        co_await redcoord::test::wait_until(
            [&] { return (released && got_low) || !failure.empty(); });
        INFO(failure);
        CHECK(released);
        CHECK(got_low);
        c.finish_migration(slot);
        // The release reached the key where it lived: on the target.
        CHECK(c.cli(to, {"EXISTS", "redcoord:lock:{" + m + "}"}) == "0");
        co_await redcoord::test::must_release(low_lease);
        co_await client.close();
    });
}

TEST_CASE("100 coroutines on 1,000 locks are never held twice, through slot migrations",
          "[redis_cluster]") {
    redis_cluster c;
    // 100 coroutines on 1,000 locks, every other acquisition on one of 20 hot locks (m0..m19).
    constexpr int names = 1000, hot = 20, workers = 100, rounds = 25;
    // The slots of the first ten names move to another master while the workers run.
    std::vector<int> moving;
    for (int i = 0; i < 10; ++i)
        moving.push_back(redis_cluster::key_slot("redcoord:lock:{m" + std::to_string(i) + "}"));
    std::atomic<int> phase{0};
    redcoord::test::side_thread migration(phase, [&] {
        for (int slot : moving) {
            const auto from = c.index_of_slot(slot);
            std::size_t to = from;
            for (auto p : c.master_ports())
                if (c.index_of_port(p) != from) to = c.index_of_port(p);
            c.migrate_slot(slot, to);
        }
    });

    redcoord::test::run_async(
        [&](boost::asio::io_context& ioc) -> boost::asio::awaitable<void> {
            // Two sessions on two connections: two processes, as far as the locks can tell.
            redcoord::connection conn_a(ioc.get_executor()), conn_b(ioc.get_executor());
            conn_a.async_run(cluster_config(c), boost::asio::detached);
            conn_b.async_run(cluster_config(c), boost::asio::detached);
            redcoord::session sa(conn_a, redcoord::test::as_node("a")),
                sb(conn_b, redcoord::test::as_node("b"));
            redcoord::lock_provider la(sa), lb(sb);
            std::map<std::string, int> inside;
            std::map<std::string, std::int64_t> last_token;
            int done = 0, overlaps = 0, stale = 0, errors = 0;
            std::string first_error;
            phase = 1;
            for (int w = 0; w < workers; ++w)
                boost::asio::co_spawn(
                    ioc,
                    [&, w]() -> boost::asio::awaitable<void> {
                        auto& locks = w % 2 ? la : lb;
                        for (int r = 0; r < rounds || !migration.done(); ++r) {
                            const int pick = w * 7 + r * 13;
                            const std::string name =
                                "m" + std::to_string(r % 2 ? pick % names : pick % hot);
                            redcoord::diagnostics d;
                            auto [ec, l] = co_await locks.async_acquire(
                                name, {.ttl = 5s, .wait = 20s}, d, nothrow);
                            if (ec) {
                                ++errors;
                                if (first_error.empty())
                                    first_error = redcoord::test::describe(ec, d);
                                continue;
                            }
                            if (++inside[name] > 1) ++overlaps;
                            if (l.fencing_token() <= last_token[name]) ++stale;
                            last_token[name] = l.fencing_token();
                            co_await redcoord::test::sleep_for(1ms);
                            --inside[name];
                            auto [rec] = co_await l.async_release(d, nothrow);
                            if (rec) {
                                ++errors;
                                if (first_error.empty())
                                    first_error = "release: " + redcoord::test::describe(rec, d);
                            }
                        }
                        ++done;
                    },
                    boost::asio::detached);
            co_await redcoord::test::wait_until([&] { return done == workers; });
            INFO(first_error);
            CHECK(errors == 0);
            CHECK(overlaps == 0);
            CHECK(stale == 0);
            co_await sa.async_close(nothrow);
            co_await sb.async_close(nothrow);
            conn_a.cancel();
            conn_b.cancel();
        },
        240s);
    migration.finish();
    for (int slot : moving) CHECK(c.port_of_slot(slot) != 0);
}

TEST_CASE("leases held when a master fails over are kept or reported lost, never silently",
          "[redis_cluster][failover]") {
    redcoord::test::redis_cluster_options o;
    o.node_timeout = 500ms;
    redis_cluster c(o);
    const auto masters = c.master_ports();
    const auto victim = c.index_of_port(masters[2]);
    redcoord::test::run_async(
        [&](boost::asio::io_context& ioc) -> boost::asio::awaitable<void> {
            redcoord::connection conn(ioc.get_executor());
            conn.async_run(cluster_config(c), boost::asio::detached);
            redcoord::session s(conn);
            redcoord::lock_provider locks(s);
            constexpr int count = 50;
            std::vector<redcoord::lease> held;
            std::vector<bool> on_victim;
            for (int i = 0; i < count; ++i) {
                const std::string name = "f" + std::to_string(i);
                held.push_back(co_await redcoord::test::must_acquire(locks, name, {.ttl = 10s}));
                on_victim.push_back(c.port_of_slot(redis_cluster::key_slot(
                                        "redcoord:lock:{" + name + "}")) == masters[2]);
            }
            const int on_victim_count =
                static_cast<int>(std::count(on_victim.begin(), on_victim.end(), true));
            CHECK(on_victim_count > 0);
            c.kill(victim);
            (void)c.wait_for_failover(victim);
            // A lease Redis lost (a grant the replica had not yet received) may look held for
            // a moment, but never longer than its TTL: within it, every lease is either held
            // with its key in Redis, or reported lost.
            int kept_elsewhere = 0, victim_kept = 0, victim_lost = 0, silent = 0;
            auto tally = [&] {
                kept_elsewhere = victim_kept = victim_lost = silent = 0;
                for (int i = 0; i < count; ++i) {
                    auto& l = held[static_cast<std::size_t>(i)];
                    const std::string key = "redcoord:lock:{f" + std::to_string(i) + "}";
                    const auto port = c.port_of_slot(redis_cluster::key_slot(key));
                    const bool in_redis = c.cli(c.index_of_port(port), {"EXISTS", key}) == "1";
                    if (!on_victim[static_cast<std::size_t>(i)])
                        kept_elsewhere += l.is_held() && in_redis;
                    else if (!l.is_held())
                        ++victim_lost;
                    else if (in_redis)
                        ++victim_kept;
                    else
                        ++silent;
                }
                return silent == 0;
            };
            const bool settled = co_await redcoord::test::eventually(tally, 15s);
            CHECK(settled);
            CHECK(kept_elsewhere == count - on_victim_count);
            CHECK(victim_kept + victim_lost == on_victim_count);
            CHECK(silent == 0);
            for (int i = 0; i < count; ++i) {
                auto& l = held[static_cast<std::size_t>(i)];
                if (on_victim[static_cast<std::size_t>(i)] && !l.is_held())
                    CHECK(l.lost_reason() == redcoord::error::lease_lost);
            }
            // The promoted master grants again.
            auto again = co_await redcoord::test::must_acquire(locks, "after-failover", {.ttl = 3s});
            co_await redcoord::test::must_release(again);
            co_await s.async_close(nothrow);
            conn.cancel();
        },
        120s);
}

TEST_CASE("an acquisition in a slot paused mid-migration succeeds once the migration ends",
          "[redis_cluster]") {
    redis_cluster c;
    const std::string key = "redcoord:lock:{paused}";
    const std::string fence = key + ":fence";
    const int slot = redis_cluster::key_slot(key);
    const auto from = c.index_of_slot(slot);
    const std::size_t to = (from + 1) % 3;
    std::atomic<int> phase{0};
    redcoord::test::side_thread migration(phase, [&] {
        // Half moved: the fence is on the target, the slot still the source's. The
        // acquisition's two keys are split: TRYAGAIN on both sides until the end.
        c.begin_migration(slot, to);
        c.cli(from, {"MIGRATE", "127.0.0.1", std::to_string(c.port(to)), "", "0", "5000",
                     "KEYS", fence});
        phase = 2;
        std::this_thread::sleep_for(1500ms);
        c.finish_migration(slot);
        phase = 3;
    });
    redcoord::test::run_async([&](boost::asio::io_context& ioc) -> boost::asio::awaitable<void> {
        redcoord::connection conn(ioc.get_executor());
        conn.async_run(cluster_config(c), boost::asio::detached);
        redcoord::session s(conn);
        redcoord::lock_provider locks(s);
        auto first = co_await redcoord::test::must_acquire(locks, "paused", {.ttl = 10s});
        const auto token = first.fencing_token();
        co_await redcoord::test::must_release(first);
        phase = 1;
        co_await redcoord::test::wait_until([&] { return phase >= 2 || migration.done(); });
        auto again = co_await redcoord::test::must_acquire(locks, "paused", {.ttl = 10s});
        CHECK(again.fencing_token() > token);
        co_await redcoord::test::must_release(again);
        co_await s.async_close(nothrow);
        conn.cancel();
    });
    migration.finish();
    CHECK(c.port_of_slot(slot) == c.port(to));
}

TEST_CASE("a waiter is woken when the holder releases after a failover of the lock's master",
          "[redis_cluster][failover]") {
    redcoord::test::redis_cluster_options o;
    o.node_timeout = 500ms;
    redis_cluster c(o);
    const std::string name = "woken";
    const int slot = redis_cluster::key_slot("redcoord:lock:{" + name + "}");
    const auto victim = c.index_of_slot(slot);
    redcoord::test::run_async(
        [&](boost::asio::io_context& ioc) -> boost::asio::awaitable<void> {
            redcoord::test::cluster_client a(ioc, c, "holder"), b(ioc, c, "waiter");
            redcoord::lock_provider la(a.session), lb(b.session);
            // A long TTL: only a wake-up (or the gap event of the failover) can let the
            // waiter in before its own deadline, not the lease's expiry.
            auto held = co_await redcoord::test::must_acquire(la, name, {.ttl = 60s});
            // The holder's grant reached the replica before its master dies.
            CHECK(c.cli(victim, {"WAIT", "1", "5000"}) == "1");
            redcoord::test::background_acquisition waiter;
            waiter.start(ioc, lb, name, {.ttl = 10s, .wait = 40s});
            co_await redcoord::test::sleep_for(300ms);
            c.kill(victim);
            (void)c.wait_for_failover(victim);
            // Released on the promoted master.
            {
                redcoord::diagnostics d;
                auto [rec] = co_await held.async_release(d, nothrow);
                INFO(redcoord::test::describe(rec, d));
                CHECK_FALSE(rec);
            }
            co_await waiter.finish();
            INFO(waiter.failure);
            CHECK(waiter.acquired);
            CHECK(waiter.got.is_held());
            co_await redcoord::test::must_release(waiter.got);
            co_await a.close();
            co_await b.close();
        },
        120s);
}
