// Mutex locks against a real redis-server, in one process: acquire and release, contention,
// the watchdog, lost leases, reentrancy, fair mode, and bad input.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "async_test.hpp"
#include "connection_helpers.hpp"
#include "lease_helpers.hpp"
#include "lock_fields.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::acquire_options;
using redcoord::lease;
using redcoord::lock_options;
using redcoord::lock_provider;
using redcoord::session;
using redcoord::test::command;
using redcoord::test::eventually;
using redcoord::test::eventually_async;
using redcoord::test::must_acquire;
using redcoord::test::must_release;
using redcoord::test::nothrow;
using redcoord::test::require_ok;
using redcoord::test::sleep_for;
using redcoord::test::wait_until;
using redcoord::test::with_connection;

// One field of a lock's stored value (owner, node, session, holds, watchdog); empty when not held.
asio::awaitable<std::string> lock_field(redcoord::connection& conn, const std::string& key,
                                        std::string_view field) {
    const auto stored = co_await command(conn, "GET", key);
    const auto f = redcoord::test::split_lock_value(stored);
    if (field == "owner") co_return f.owner;
    if (field == "node") co_return f.node;
    if (field == "session") co_return f.session;
    if (field == "holds") co_return f.holds;
    if (field == "watchdog") co_return f.watchdog;
    co_return std::string();
}

TEST_CASE("lock: acquire stores the documented value, and release deletes it", "[lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        lock_provider locks(s);
        auto l = co_await must_acquire(locks, "orders", {.ttl = 10s});
        CHECK(l.key() == "redcoord:lock:{orders}");
        CHECK(l.owner().starts_with("node-a:"));
        const auto first_fence = l.fencing_token();
        CHECK(first_fence > 0);
        auto owner = co_await lock_field(conn, "redcoord:lock:{orders}", "owner");
        CHECK(owner == l.owner());
        auto node = co_await lock_field(conn, "redcoord:lock:{orders}", "node");
        CHECK(node == "node-a");
        // The session's own id: 16 hex digits, another for another session of the same node.
        auto id = co_await lock_field(conn, "redcoord:lock:{orders}", "session");
        CHECK(id.size() == 16);
        CHECK(id.find_first_not_of("0123456789abcdef") == std::string::npos);
        {
            session s2(conn, {.node_id = "node-a"});
            lock_provider locks2(s2);
            auto other = co_await must_acquire(locks2, "orders-2", {.ttl = 10s});
            auto id2 = co_await lock_field(conn, "redcoord:lock:{orders-2}", "session");
            auto node2 = co_await lock_field(conn, "redcoord:lock:{orders-2}", "node");
            CHECK(node2 == "node-a");
            CHECK(id2.size() == 16);
            CHECK(id2 != id);
            co_await must_release(other);
        }
        auto pttl = std::stoll(co_await command(conn, "PTTL", "redcoord:lock:{orders}"));
        CHECK(pttl > 5000);
        CHECK(pttl <= 10000);
        // The fencing counter holds the token the lease reports.
        auto fence = co_await command(conn, "GET", "redcoord:lock:{orders}:fence");
        CHECK(fence == std::to_string(first_fence));
        co_await must_release(l);
        CHECK(l.get_status() == lease::status::released);
        auto exists = co_await command(conn, "EXISTS", "redcoord:lock:{orders}");
        CHECK(exists == "0");
        // Releasing twice is harmless.
        co_await must_release(l);
        // The next holder gets a larger fencing token.
        auto l2 = co_await must_acquire(locks, "orders", {});
        CHECK(l2.fencing_token() > first_fence);
        co_await must_release(l2);
    });
}

TEST_CASE("lock: try_acquire of a held lock gives an empty lease", "[lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        lock_provider locks(s);
        auto l = co_await must_acquire(locks, "job", {});
        auto [ec, other] = co_await locks.async_try_acquire("job", {}, nothrow);
        REQUIRE_FALSE(ec);
        CHECK_FALSE(other);
        co_await must_release(l);
        auto [ec2, again] = co_await locks.async_try_acquire("job", {}, nothrow);
        REQUIRE_FALSE(ec2);
        CHECK(again.is_held());
    });
}

TEST_CASE("lock: 50 coroutines increment a counter non-atomically under one lock", "[lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        lock_provider locks(s, {.default_ttl = 5s});
        constexpr int workers = 50, rounds = 20;
        int done = 0;
        std::int64_t last_fence = 0;
        bool fences_increase = true;
        auto ex = co_await asio::this_coro::executor;
        for (int w = 0; w < workers; ++w) {
            asio::co_spawn(
                ex,
                [&]() -> asio::awaitable<void> {
                    for (int r = 0; r < rounds; ++r) {
                        auto l = co_await must_acquire(locks, "counter", {.wait = 30s});
                        if (l.fencing_token() <= last_fence) fences_increase = false;
                        last_fence = l.fencing_token();
                        std::string cur;
                        {
                            redcoord::request req;
                            req.push("GET", "counter-value");
                            std::optional<std::string> reply;
                            auto [ec, n] = co_await conn.async_exec(req, reply, nothrow);
                            REQUIRE_FALSE(ec);
                            cur = reply.value_or("0");
                        }
                        co_await command(conn, "SET", "counter-value",
                                         std::to_string(std::stoll(cur) + 1));
                        co_await must_release(l);
                    }
                    ++done;
                },
                asio::detached);
        }
        co_await wait_until([&] { return done == workers; });
        auto total = co_await command(conn, "GET", "counter-value");
        CHECK(total == std::to_string(workers * rounds));
        CHECK(fences_increase);
        auto stats = s.get_lock_statistics();
        CHECK(stats.acquisitions == static_cast<std::uint64_t>(workers * rounds));
        CHECK(stats.contended_acquisitions > 0);
    });
}


// ---- Helpers of the tests below -------------------------------------------------------------

using redcoord::diagnostics;
using redcoord::error_with_diagnostics;
using redcoord::test::redis_server;
namespace rerror = redcoord;  // redcoord::error, the enum

bool mentions(const std::string& text, const std::string& what) {
    return text.find(what) != std::string::npos;
}

std::string lock_key(const std::string& name) { return "redcoord:lock:{" + name + "}"; }
std::string queue_key(const std::string& name) { return lock_key(name) + ":queue"; }
std::string channel_of(const std::string& name) { return lock_key(name) + ":released"; }

// A command whose reply is an integer.
template <class... Args>
asio::awaitable<std::int64_t> int_command(redcoord::connection& conn, std::string_view name,
                                          const Args&... args) {
    auto reply = co_await command(conn, name, args...);
    co_return std::stoll(reply);
}

asio::awaitable<bool> key_exists(redcoord::connection& conn, const std::string& key) {
    auto n = co_await int_command(conn, "EXISTS", key);
    co_return n == 1;
}

// Subscribers of a channel, as the server (every master of a cluster) counts them
// (PUBSUB NUMSUB, and SHARDNUMSUB on a cluster).
asio::awaitable<std::int64_t> subscribers(const redis_server& srv, const std::string& channel) {
    co_return redcoord::test::subscriber_count(srv, channel);
}

// EVALSHA calls the server (every master of a cluster) has run since it started (INFO
// commandstats).
asio::awaitable<std::int64_t> evalsha_calls(const redis_server& srv) {
    co_return static_cast<std::int64_t>(redcoord::test::command_calls(srv, "evalsha"));
}

// A second connection to the same server: another process, as far as the locks can tell.
struct side_connection {
    redcoord::connection conn;
    side_connection(asio::any_io_executor ex, const redis_server& srv) : conn(std::move(ex)) {
        conn.async_run(redcoord::test::config_for(srv), asio::detached);
    }
};

// An acquisition running in the background.
struct pending_acquire {
    bool done = false;
    error_code ec;
    lease l;
    diagnostics diag;
};

std::shared_ptr<pending_acquire> spawn_acquire(lock_provider& locks, std::string name,
                                               acquire_options opts,
                                               asio::cancellation_slot slot = {}) {
    auto p = std::make_shared<pending_acquire>();
    asio::co_spawn(
        locks.get_session().get_executor(),
        [&locks, name = std::move(name), opts, p, slot]() -> asio::awaitable<void> {
            auto [ec, l] = co_await locks.async_acquire(name, opts, p->diag,
                                                        asio::bind_cancellation_slot(slot, nothrow));
            p->ec = ec;
            p->l = std::move(l);
            p->done = true;
        },
        asio::detached);
    return p;
}

// An operation running in the background that completes with an error_code.
struct pending_op {
    bool done = false;
    error_code ec;
};

// Waits for the lease to be lost.
std::shared_ptr<pending_op> spawn_wait_lost(asio::any_io_executor ex, lease& l) {
    auto p = std::make_shared<pending_op>();
    asio::co_spawn(
        ex,
        [&l, p]() -> asio::awaitable<void> {
            auto [ec] = co_await l.async_wait_lost(nothrow);
            p->ec = ec;
            p->done = true;
        },
        asio::detached);
    return p;
}

// Work under a lease: a long timer wait bound to the given cancellation slot.
std::shared_ptr<pending_op> spawn_bound_sleep(asio::any_io_executor ex,
                                              asio::cancellation_slot slot,
                                              std::chrono::milliseconds d) {
    auto p = std::make_shared<pending_op>();
    asio::co_spawn(
        ex,
        [p, slot, d]() -> asio::awaitable<void> {
            asio::steady_timer t(co_await asio::this_coro::executor);
            t.expires_after(d);
            auto [ec] = co_await t.async_wait(asio::bind_cancellation_slot(slot, nothrow));
            p->ec = ec;
            p->done = true;
        },
        asio::detached);
    return p;
}

// Checks that f() throws error_with_diagnostics with error::bad_config naming `field`.
template <class F>
void require_bad_config(F f, const std::string& field) {
    bool thrown = false;
    try {
        f();
    } catch (const error_with_diagnostics& e) {
        thrown = true;
        INFO(field << ": " << e.what());
        CHECK(e.code() == rerror::error::bad_config);
        CHECK(mentions(e.get_diagnostics().message(), field));
    }
    INFO(field);
    CHECK(thrown);
}

// ---- 1. The lost signal ---------------------------------------------------------------------

// ---- Lock operations of one turn share a script call -------------------------------------------

// An acquisition started with a callback (its operation is queued at once, in this turn).
struct try_outcome {
    bool done = false;
    error_code ec;
    lease l;
    diagnostics diag;
};

std::shared_ptr<try_outcome> start_try(lock_provider& locks, const std::string& name) {
    auto out = std::make_shared<try_outcome>();
    locks.async_try_acquire(name, {}, out->diag, [out](error_code ec, lease l) {
        out->ec = ec;
        out->l = std::move(l);
        out->done = true;
    });
    return out;
}

TEST_CASE("lock: the lock operations of one turn share one script call and run in the order "
          "they were started",
          "[lock]") {
    with_connection([](redcoord::connection& conn, auto& srv) -> asio::awaitable<void> {
        // No statistics reports: each is an EVALSHA per lock seen, 5 s after the first
        // acquisition, which a slow run (the sanitizers) reaches within the counted calls.
        session s(conn, {.statistics_interval = 0ms});
        lock_provider locks(s);
        auto held = co_await must_acquire(locks, "order", {});
        const auto held_fence = held.fencing_token();
        const auto calls_before = co_await evalsha_calls(srv);
        // A try before the release finds the lock held; a try after it takes it.
        auto before = start_try(locks, "order");
        auto released = std::make_shared<pending_op>();
        held.async_release([released](error_code ec) {
            released->ec = ec;
            released->done = true;
        });
        auto after = start_try(locks, "order");
        co_await wait_until([&] { return before->done && released->done && after->done; });
        {
            const auto awaited = co_await evalsha_calls(srv);
            CHECK(awaited - calls_before == 1);
        }
        REQUIRE_FALSE(before->ec);
        CHECK_FALSE(before->l);
        CHECK_FALSE(released->ec);
        REQUIRE_FALSE(after->ec);
        CHECK(after->l.is_held());
        CHECK(after->l.fencing_token() > held_fence);

        // 64 locks in one turn: two calls (a batch carries 32 operations at most; on a cluster
        // each batch is one call per master it touches), and every lock is granted once: its
        // fencing counter holds the token its lease reports.
        std::int64_t expected_calls = 0;
        for (int first = 0; first < 64; first += 32) {
            std::set<std::size_t> masters;
            for (int i = first; i < first + 32; ++i) {
                const auto tag = "{many:" + std::to_string(i) + "}";
                masters.insert(srv.cluster() ? srv.cluster()->index_of_slot(
                                                   redcoord::test::redis_cluster::key_slot(tag))
                                             : 0);
            }
            expected_calls += static_cast<std::int64_t>(masters.size());
        }
        const auto calls_64 = co_await evalsha_calls(srv);
        std::vector<std::shared_ptr<try_outcome>> many;
        for (int i = 0; i < 64; ++i) many.push_back(start_try(locks, "many:" + std::to_string(i)));
        co_await wait_until([&] {
            return std::all_of(many.begin(), many.end(), [](const auto& o) { return o->done; });
        });
        {
            const auto awaited = co_await evalsha_calls(srv);
            CHECK(awaited - calls_64 == expected_calls);
        }
        for (std::size_t i = 0; i < many.size(); ++i) {
            INFO("many:" << i << ": " << many[i]->ec.message() << " " << many[i]->diag.message());
            REQUIRE_FALSE(many[i]->ec);
            CHECK(many[i]->l.is_held());
            CHECK(many[i]->l.fencing_token() > 0);
            const auto fence = co_await command(conn, "GET", many[i]->l.key() + ":fence");
            CHECK(fence == std::to_string(many[i]->l.fencing_token()));
            const auto owner = co_await lock_field(conn, many[i]->l.key(), "owner");
            CHECK(owner == many[i]->l.owner());
        }
        co_await must_release(after->l);
    });
}

TEST_CASE("lock: an operation that fails in a shared script call fails alone, with the "
          "server's error",
          "[lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        lock_provider locks(s);
        // A key of another type where the lock would be.
        co_await command(conn, "HSET", "redcoord:lock:{typed}", "field", "value");
        auto first = start_try(locks, "first");
        auto typed = start_try(locks, "typed");
        auto last = start_try(locks, "last");
        co_await wait_until([&] { return first->done && typed->done && last->done; });
        CHECK(typed->ec == rerror::error::server_error);
        CHECK(mentions(typed->diag.message(), "WRONGTYPE"));
        CHECK_FALSE(typed->l);
        for (auto* o : {first.get(), last.get()}) {
            INFO(o->ec.message() << " " << o->diag.message());
            REQUIRE_FALSE(o->ec);
            CHECK(o->l.is_held());
        }
        {
            const auto awaited = co_await command(conn, "HGET", "redcoord:lock:{typed}", "field");
            CHECK(awaited == "value");
        }
        co_await must_release(first->l);
        co_await must_release(last->l);
    });
}

TEST_CASE("lock: a force release by another session makes the holder's lease lost", "[lock]") {
    with_connection([](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        side_connection other(ex, srv);
        session s(conn, {.node_id = "holder"});
        session admin_session(other.conn, {.node_id = "admin"});
        lock_provider locks(s);
        lock_provider admin(admin_session);

        auto l = co_await must_acquire(locks, "lost-force", {.ttl = 600ms});
        auto lost = spawn_wait_lost(ex, l);
        auto work = spawn_bound_sleep(ex, l.cancellation_slot(), 30s);
        auto work2 = spawn_bound_sleep(ex, l.cancellation_slot(), 30s);

        auto [fec, released] = co_await admin.async_force_release("lost-force", nothrow);
        REQUIRE_FALSE(fec);
        CHECK(released);

        const bool told =
            co_await eventually([&] { return lost->done && work->done && work2->done; }, 3s);
        REQUIRE(told);
        CHECK_FALSE(lost->ec);
        CHECK(work->ec == asio::error::operation_aborted);
        CHECK(work2->ec == asio::error::operation_aborted);
        CHECK(l.get_status() == lease::status::lost);
        CHECK_FALSE(l.is_held());
        CHECK(l.lost_reason() == rerror::error::lease_lost);
        // Asked after the fact, it completes at once.
        auto [again] = co_await l.async_wait_lost(nothrow);
        CHECK_FALSE(again);

        diagnostics diag;
        auto [rec] = co_await l.async_release(diag, nothrow);
        CHECK(rec == rerror::error::not_held);
        INFO(diag.message());
        CHECK(mentions(diag.message(), "lost-force"));

        CHECK(s.get_lock_statistics().leases_lost == 1);
        CHECK(s.held_leases() == 0);
        // A second force release finds nothing.
        auto [fec2, released2] = co_await admin.async_force_release("lost-force", nothrow);
        REQUIRE_FALSE(fec2);
        CHECK_FALSE(released2);
    });
}

TEST_CASE("lock: a lock deleted and taken by another owner is lost for its holder", "[lock]") {
    with_connection([](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        side_connection other(ex, srv);
        session s(conn, {.node_id = "holder"});
        session thief_session(other.conn, {.node_id = "thief"});
        lock_provider locks(s);
        lock_provider thief(thief_session);

        auto l = co_await must_acquire(locks, "lost-taken", {.ttl = 600ms});
        auto lost = spawn_wait_lost(ex, l);
        auto work = spawn_bound_sleep(ex, l.cancellation_slot(), 30s);

        co_await command(other.conn, "DEL", lock_key("lost-taken"));
        auto [tec, taker] = co_await thief.async_try_acquire("lost-taken", {.ttl = 10s}, nothrow);
        REQUIRE_FALSE(tec);
        REQUIRE(taker.is_held());
        CHECK(taker.fencing_token() > l.fencing_token());

        const bool told = co_await eventually([&] { return lost->done && work->done; }, 3s);
        REQUIRE(told);
        CHECK_FALSE(lost->ec);
        CHECK(work->ec == asio::error::operation_aborted);
        CHECK(l.get_status() == lease::status::lost);
        CHECK(l.lost_reason() == rerror::error::lease_lost);

        diagnostics diag;
        auto [rec] = co_await l.async_release(diag, nothrow);
        CHECK(rec == rerror::error::not_held);
        INFO(diag.message());
        CHECK(mentions(diag.message(), "lost-taken"));
        // The loser neither renewed nor released the new holder's lock.
        auto owner = co_await lock_field(conn, lock_key("lost-taken"), "owner");
        CHECK(owner == taker.owner());
        CHECK(taker.is_held());
        co_await must_release(taker);
    });
}

// ---- 2. Without the watchdog ----------------------------------------------------------------

TEST_CASE("lock: without extension the lease is lost at its TTL and the key is gone", "[lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        session s(conn);
        lock_provider plain(s, {.enable_extension = false});
        lock_provider watched(s);

        auto l = co_await must_acquire(plain, "no-dog", {.ttl = 400ms});
        auto renewed = co_await must_acquire(watched, "with-dog", {.ttl = 900ms});
        auto lost = spawn_wait_lost(ex, l);
        auto wd = co_await lock_field(conn, lock_key("no-dog"), "watchdog");
        CHECK(wd == "0");

        const bool told = co_await eventually([&] { return lost->done; }, 3s);
        REQUIRE(told);
        CHECK_FALSE(lost->ec);
        CHECK(l.get_status() == lease::status::lost);
        CHECK(l.lost_reason() == rerror::error::lease_lost);
        CHECK(l.renewals() == 0);
        // Lost no later than Redis drops the key (the deadline is conservative).
        const bool gone = co_await eventually_async(
            [&]() -> asio::awaitable<bool> { co_return !co_await key_exists(conn, lock_key("no-dog")); },
            1s);
        CHECK(gone);
        diagnostics diag;
        auto [rec] = co_await l.async_release(diag, nothrow);
        CHECK(rec == rerror::error::not_held);

        // The same TTL with the watchdog outlives it.
        co_await sleep_for(800ms);
        CHECK(renewed.is_held());
        CHECK(renewed.renewals() > 0);
        const bool still = co_await key_exists(conn, lock_key("with-dog"));
        CHECK(still);
        co_await must_release(renewed);
    });
}

// ---- 3. Extension ---------------------------------------------------------------------------

TEST_CASE("lock: extend sets the TTL of a held lease, and extend by name checks the owner",
          "[lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        lock_provider locks(s, {.enable_extension = false});
        const std::string key = lock_key("ext");

        auto l = co_await must_acquire(locks, "ext", {.ttl = 1s});
        auto [ec] = co_await l.async_extend(5000ms, nothrow);
        REQUIRE_FALSE(ec);
        CHECK(l.ttl() == 5000ms);
        auto pttl = co_await int_command(conn, "PTTL", key);
        CHECK(pttl > 1000);
        CHECK(pttl <= 5000);
        // The lease is not marked lost at the TTL it was acquired with.
        co_await sleep_for(1200ms);
        CHECK(l.is_held());
        const bool exists = co_await key_exists(conn, key);
        CHECK(exists);

        auto [e1, mine] = co_await locks.async_extend("ext", l.owner(), 2500ms, nothrow);
        REQUIRE_FALSE(e1);
        CHECK(mine);
        pttl = co_await int_command(conn, "PTTL", key);
        CHECK(pttl > 1000);
        CHECK(pttl <= 2500);

        auto [e2, theirs] = co_await locks.async_extend("ext", "someone-else", 60000ms, nothrow);
        REQUIRE_FALSE(e2);
        CHECK_FALSE(theirs);
        pttl = co_await int_command(conn, "PTTL", key);
        CHECK(pttl <= 2500);

        auto [e3, missing] = co_await locks.async_extend("ext-missing", l.owner(), 1000ms, nothrow);
        REQUIRE_FALSE(e3);
        CHECK_FALSE(missing);
        const bool created = co_await key_exists(conn, lock_key("ext-missing"));
        CHECK_FALSE(created);

        // Extending a lease that Redis no longer holds tells so, and marks it lost.
        co_await command(conn, "DEL", key);
        auto [e4] = co_await l.async_extend(1000ms, nothrow);
        CHECK(e4 == rerror::error::not_held);
        CHECK(l.get_status() == lease::status::lost);
        const bool recreated = co_await key_exists(conn, key);
        CHECK_FALSE(recreated);
    });
}

// ---- 4. Scope guard and moves ---------------------------------------------------------------

TEST_CASE("lock: a lease destroyed while held releases, and a move transfers it", "[lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        lock_provider locks(s);
        const std::string key = lock_key("guard");
        {
            auto l = co_await must_acquire(locks, "guard", {.ttl = 10s});
            CHECK(s.held_leases() == 1);
        }
        const bool gone = co_await eventually_async(
            [&]() -> asio::awaitable<bool> { co_return !co_await key_exists(conn, key); }, 2s);
        REQUIRE(gone);
        CHECK(s.held_leases() == 0);
        // Free long before its 10 s TTL.
        auto [ec, again] = co_await locks.async_try_acquire("guard", {.ttl = 10s}, nothrow);
        REQUIRE_FALSE(ec);
        REQUIRE(again.is_held());

        const std::string owner = again.owner();
        const auto fence = again.fencing_token();
        lease moved(std::move(again));
        CHECK_FALSE(again);
        CHECK(moved.is_held());
        CHECK(moved.owner() == owner);
        CHECK(moved.fencing_token() == fence);
        // A release scheduled by the move would have run by the second round trip.
        co_await command(conn, "PING");
        co_await command(conn, "PING");
        auto held_by = co_await lock_field(conn, key, "owner");
        CHECK(held_by == owner);

        // Move assignment releases what the target held and takes the other lease.
        auto target = co_await must_acquire(locks, "guard-other", {.ttl = 10s});
        target = std::move(moved);
        CHECK_FALSE(moved);
        CHECK(target.is_held());
        CHECK(target.owner() == owner);
        const bool other_gone = co_await eventually_async(
            [&]() -> asio::awaitable<bool> {
                co_return !co_await key_exists(conn, lock_key("guard-other"));
            },
            2s);
        CHECK(other_gone);
        held_by = co_await lock_field(conn, key, "owner");
        CHECK(held_by == owner);
        CHECK(s.held_leases() == 1);
        co_await must_release(target);
        const bool released = co_await key_exists(conn, key);
        CHECK_FALSE(released);
    });
}

// ---- 5. Reentrancy --------------------------------------------------------------------------

TEST_CASE("lock: a reentrant acquisition counts holds, and the lock is free after as many releases",
          "[lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        lock_provider locks(s);
        const std::string key = lock_key("re");

        auto first = co_await must_acquire(locks, "re", {.ttl = 10s});
        auto second = co_await must_acquire(
            locks, "re", {.ttl = 10s, .owner = first.owner(), .reentrant = true});
        CHECK(second.owner() == first.owner());
        CHECK(second.fencing_token() == first.fencing_token());
        auto count = co_await lock_field(conn, key, "holds");
        CHECK(count == "2");

        co_await must_release(first);
        count = co_await lock_field(conn, key, "holds");
        CHECK(count == "1");
        auto [ec, other] = co_await locks.async_try_acquire("re", {}, nothrow);
        REQUIRE_FALSE(ec);
        CHECK_FALSE(other);
        CHECK(second.is_held());

        co_await must_release(second);
        const bool exists = co_await key_exists(conn, key);
        CHECK_FALSE(exists);
        auto [ec2, free_again] = co_await locks.async_try_acquire("re", {}, nothrow);
        REQUIRE_FALSE(ec2);
        CHECK(free_again.is_held());

        // A reentrant acquisition without the owner is refused.
        diagnostics diag;
        auto [ec3, none] = co_await locks.async_acquire("re", {.reentrant = true}, diag, nothrow);
        CHECK(ec3 == rerror::error::invalid_argument);
        CHECK_FALSE(none);
        INFO(diag.message());
        CHECK(mentions(diag.message(), "owner"));
    });
}

// The reference's ProcessOrderAsync -> ProcessPayment: the inner call takes the lock its caller
// holds again, through the context both were given, without an owner token passed by hand.
asio::awaitable<std::int64_t> process_payment(redcoord::lock_context locks, std::string order,
                                              std::int64_t outer_token) {
    auto l = co_await locks.async_acquire("order:" + order, {}, asio::use_awaitable);
    CHECK(l.fencing_token() == outer_token);
    const auto holds = l.owner() == locks.owner();
    CHECK(holds);
    co_await l.async_release(asio::use_awaitable);
    co_return l.fencing_token();
}

asio::awaitable<void> process_order(redcoord::lock_context locks, std::string order,
                                    redcoord::connection& conn) {
    auto l = co_await locks.async_acquire("order:" + order, {}, asio::use_awaitable);
    const auto inner = co_await process_payment(locks, order, l.fencing_token());
    CHECK(inner == l.fencing_token());
    // Still held by the outer hold after the inner release.
    const auto holds = co_await lock_field(conn, lock_key("order:" + order), "holds");
    CHECK(holds == "1");
    co_await l.async_release(asio::use_awaitable);
}

TEST_CASE("lock: an owner context carries one owner down a call chain, so a callee takes its "
          "caller's lock again, and two contexts exclude each other",
          "[lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        lock_provider locks(s);
        auto ctx = locks.new_context();
        CHECK_FALSE(ctx.owner().empty());
        co_await process_order(ctx, "42", conn);
        const bool exists = co_await key_exists(conn, lock_key("order:42"));
        CHECK_FALSE(exists);

        // Another context is another owner: it waits for the first.
        auto held = co_await ctx.async_acquire("order:7", {}, asio::use_awaitable);
        auto other = locks.new_context();
        CHECK(other.owner() != ctx.owner());
        auto [ec, none] = co_await other.async_try_acquire("order:7", {}, nothrow);
        REQUIRE_FALSE(ec);
        CHECK_FALSE(none);
        // The same context again, inside run_exclusive: reentrant.
        bool ran = false;
        auto inner = [&]() -> asio::awaitable<void> {
            auto again = co_await ctx.async_acquire("order:7", {}, asio::use_awaitable);
            ran = again.is_held();
            co_await again.async_release(asio::use_awaitable);
        };
        co_await ctx.async_run_exclusive("order:7", inner, {}, asio::use_awaitable);
        CHECK(ran);
        CHECK(held.is_held());
        co_await must_release(held);

        // An empty owner is refused when the context is made.
        CHECK_THROWS_AS(redcoord::lock_context(locks, ""), redcoord::error_with_diagnostics);
    });
}

TEST_CASE("lock: a local waiter woken while its attempt is out is not left asleep", "[lock]") {
    with_connection([](redcoord::connection& conn, auto& srv) -> asio::awaitable<void> {
        session s(conn);
        lock_provider locks(s);
        auto ex = co_await asio::this_coro::executor;
        // A reentrant holder releases its first hold: the local waiter is woken, tries, and
        // finds the lock still held. The last hold is released a few executor turns later, at
        // several offsets, so that in some rounds the waiter's attempt is still out when it is
        // woken again: it must try again then, not sleep until the holder's TTL (10 s) ends.
        for (int turns = 0; turns <= 8; ++turns) {
            INFO("executor turns between the releases: " << turns);
            const std::string name = "re-wait-" + std::to_string(turns);
            auto first = co_await must_acquire(locks, name, {.ttl = 10s});
            auto second = co_await must_acquire(
                locks, name, {.ttl = 10s, .owner = first.owner(), .reentrant = true});
            auto w = spawn_acquire(locks, name, {.wait = 20s});
            // Subscribed, and (its attempt after subscribing was answered first) waiting.
            const bool waiting = co_await eventually_async(
                [&]() -> asio::awaitable<bool> {
                    co_return co_await subscribers(srv, channel_of(name)) == 1;
                },
                3s);
            REQUIRE(waiting);
            REQUIRE_FALSE(w->done);

            auto r1 = std::make_shared<pending_op>();
            auto r2 = std::make_shared<pending_op>();
            first.async_release([r1](error_code ec) {
                r1->ec = ec;
                r1->done = true;
            });
            for (int i = 0; i < turns; ++i) co_await asio::post(ex, asio::use_awaitable);
            second.async_release([r2](error_code ec) {
                r2->ec = ec;
                r2->done = true;
            });
            const bool got =
                co_await eventually([&] { return w->done && r1->done && r2->done; }, 3s);
            INFO("waiter done " << w->done << ", first release done " << r1->done
                                << ", last release done " << r2->done);
            REQUIRE(got);
            CHECK_FALSE(r1->ec);
            CHECK_FALSE(r2->ec);
            require_ok(w->ec, w->diag);
            REQUIRE(w->l.is_held());
            auto owner = co_await lock_field(conn, lock_key(name), "owner");
            CHECK(owner == w->l.owner());
            co_await must_release(w->l);
        }
    });
}

// ---- 6. Fair mode ---------------------------------------------------------------------------

TEST_CASE("lock: fair waiters acquire in arrival order", "[lock]") {
    with_connection(
        [](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
            auto ex = co_await asio::this_coro::executor;
            side_connection other(ex, srv);
            session sa(conn, {.node_id = "a"});
            session sb(other.conn, {.node_id = "b"});
            lock_provider fa(sa, {.fair = true});
            lock_provider fb(sb, {.fair = true});
            const std::string name = "fair";
            const std::string queue = queue_key(name);

            auto holder = co_await must_acquire(fa, name, {.ttl = 10s});
            std::vector<int> order;
            std::vector<std::string> failures;
            int done = 0;
            for (int i = 0; i < 5; ++i) {
                // Alternate between the two sessions: arrival order holds across processes.
                lock_provider* p = i % 2 == 0 ? &fa : &fb;
                asio::co_spawn(
                    ex,
                    [&, i, p]() -> asio::awaitable<void> {
                        diagnostics diag;
                        auto [ec, l] = co_await p->async_acquire(
                            name, {.ttl = 10s, .wait = 20s}, diag, nothrow);
                        if (ec) {
                            failures.push_back("waiter " + std::to_string(i) + ": " +
                                               ec.message() + ": " + diag.message());
                        } else {
                            order.push_back(i);
                            auto [rec] = co_await l.async_release(nothrow);
                            if (rec)
                                failures.push_back("release " + std::to_string(i) + ": " +
                                                   rec.message());
                        }
                        ++done;
                    },
                    asio::detached);
                const std::int64_t want = i + 1;
                const bool queued = co_await eventually_async(
                    [&]() -> asio::awaitable<bool> {
                        co_return co_await int_command(conn, "LLEN", queue) == want;
                    },
                    3s);
                INFO("waiter " << i);
                REQUIRE(queued);
            }
            co_await must_release(holder);
            const bool all = co_await eventually([&] { return done == 5; }, 15s);
            std::string why;
            for (auto& f : failures) why += f + "\n";
            INFO(why);
            REQUIRE(all);
            CHECK(failures.empty());
            const std::vector<int> arrival{0, 1, 2, 3, 4};
            CHECK(order == arrival);
            auto left = co_await int_command(conn, "LLEN", queue);
            CHECK(left == 0);
        },
        60s);
}

TEST_CASE("lock: a fair waiter that times out leaves the queue", "[lock]") {
    with_connection([](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        side_connection other(ex, srv);
        session sa(conn);
        session sb(other.conn);
        lock_provider fa(sa, {.fair = true});
        lock_provider fb(sb, {.fair = true});
        const std::string queue = queue_key("fair-timeout");

        auto holder = co_await must_acquire(fa, "fair-timeout", {.ttl = 10s});
        auto w = spawn_acquire(fb, "fair-timeout", {.wait = 600ms});
        const bool queued = co_await eventually_async(
            [&]() -> asio::awaitable<bool> {
                co_return co_await int_command(conn, "LLEN", queue) == 1;
            },
            2s);
        REQUIRE(queued);
        const bool finished = co_await eventually([&] { return w->done; }, 3s);
        REQUIRE(finished);
        CHECK(w->ec == rerror::error::acquire_timeout);
        CHECK_FALSE(w->l);
        // Its place is given up at once, not when it lapses (5 s) or the queue expires (10 s).
        const bool left = co_await eventually_async(
            [&]() -> asio::awaitable<bool> {
                co_return co_await int_command(conn, "LLEN", queue) == 0;
            },
            2s);
        CHECK(left);
        co_await must_release(holder);
        // Nobody is ahead any more: one attempt gets it.
        auto [ec, l] = co_await fb.async_try_acquire("fair-timeout", {}, nothrow);
        REQUIRE_FALSE(ec);
        CHECK(l.is_held());
    });
}

// ---- 7. Waiting by push ---------------------------------------------------------------------

TEST_CASE("lock: a waiter is woken by the release's push, not by polling", "[lock]") {
    with_connection([](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        side_connection other(ex, srv);
        // No statistics reports: they are EVALSHA calls too (see the test above).
        session s(conn, {.node_id = "waiter", .statistics_interval = 0ms});
        session hs(other.conn, {.node_id = "holder", .statistics_interval = 0ms});
        lock_provider waiting(s, {.retry_delay = 5s});
        lock_provider holding(hs, {.enable_extension = false});

        // Load the script first, so that each call below is one EVALSHA.
        auto warm = co_await must_acquire(holding, "push", {.ttl = 10s});
        co_await must_release(warm);

        auto holder = co_await must_acquire(holding, "push", {.ttl = 10s});
        const auto connects_before = conn.get_usage().connects;
        const auto before = co_await evalsha_calls(srv);
        auto w = spawn_acquire(waiting, "push", {.wait = 20s});
        // Waiting: subscribed, and its attempts (before and after subscribing) were refused.
        const bool parked = co_await eventually_async(
            [&]() -> asio::awaitable<bool> {
                const auto subs = co_await subscribers(srv, channel_of("push"));
                const auto calls = co_await evalsha_calls(srv);
                co_return subs == 1 && calls >= before + 2;
            },
            3s);
        REQUIRE(parked);
        CHECK_FALSE(w->done);

        co_await must_release(holder);
        // The fallback timer could not fire before max(retry_delay, holder's TTL) = 10 s.
        const bool got = co_await eventually([&] { return w->done; }, 4s);
        REQUIRE(got);
        require_ok(w->ec, w->diag);
        CHECK(w->l.is_held());
        const auto after = co_await evalsha_calls(srv);
        const auto waiter_calls = after - before - 1;  // less the holder's release
        // A reconnect (a gap) rightly wakes a waiter for one more attempt.
        const auto reconnects =
            static_cast<std::int64_t>(conn.get_usage().connects - connects_before);
        INFO("script calls of the waiter: " << waiter_calls << ", reconnects: "
                                                  << reconnects);
        CHECK(waiter_calls >= 1);
        CHECK(waiter_calls <= 3 + reconnects);
        auto owner = co_await lock_field(conn, lock_key("push"), "owner");
        CHECK(owner == w->l.owner());
        CHECK(s.get_lock_statistics().contended_acquisitions == 1);
    });
}

TEST_CASE("lock: a waiter whose deadline passes gets acquire_timeout naming the lock",
          "[lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        lock_provider locks(s);
        auto holder = co_await must_acquire(locks, "busy", {.ttl = 10s});
        diagnostics diag;
        auto [ec, l] = co_await locks.async_acquire("busy", {.wait = 300ms}, diag, nothrow);
        CHECK(ec == rerror::error::acquire_timeout);
        CHECK_FALSE(l);
        INFO(diag.message());
        CHECK(mentions(diag.message(), "busy"));
        // The holder is untouched.
        CHECK(holder.is_held());
        auto owner = co_await lock_field(conn, lock_key("busy"), "owner");
        CHECK(owner == holder.owner());
        // No wait at all: one attempt, then the timeout.
        auto [ec0, l0] = co_await locks.async_acquire("busy", {.wait = 0ms}, diag, nothrow);
        CHECK(ec0 == rerror::error::acquire_timeout);
        CHECK_FALSE(l0);
        co_await must_release(holder);
    });
}

// ---- 8. Cancellation ------------------------------------------------------------------------

TEST_CASE("lock: a cancelled wait completes with operation_aborted and takes nothing",
          "[lock]") {
    with_connection([](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        side_connection other(ex, srv);
        session s(conn);
        session hs(other.conn);
        lock_provider locks(s);
        lock_provider holding(hs);
        const std::string key = lock_key("cancel");

        auto holder = co_await must_acquire(holding, "cancel", {.ttl = 10s});
        asio::cancellation_signal stop;
        auto w = spawn_acquire(locks, "cancel", {.wait = 20s}, stop.slot());
        const bool waiting = co_await eventually_async(
            [&]() -> asio::awaitable<bool> {
                co_return co_await subscribers(srv, channel_of("cancel")) == 1;
            },
            3s);
        REQUIRE(waiting);
        CHECK_FALSE(w->done);

        stop.emit(asio::cancellation_type::terminal);
        const bool finished = co_await eventually([&] { return w->done; }, 3s);
        REQUIRE(finished);
        CHECK(w->ec == asio::error::operation_aborted);
        CHECK_FALSE(w->l);

        co_await must_release(holder);
        // Give a waiter that had not really left time to act on the release's push.
        co_await sleep_for(300ms);
        const bool taken = co_await key_exists(conn, key);
        CHECK_FALSE(taken);
        CHECK(s.held_leases() == 0);
        CHECK(s.get_lock_statistics().acquisitions == 0);
        // The waiter unsubscribed when it left.
        auto subs = co_await subscribers(srv, channel_of("cancel"));
        CHECK(subs == 0);
    });
}

// ---- 9. Running exclusively -----------------------------------------------------------------

TEST_CASE("lock: run_exclusive never overlaps and releases after the work", "[lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        lock_provider locks(s);
        auto ex = co_await asio::this_coro::executor;
        int inside = 0, max_inside = 0, ran = 0, done = 0;
        std::vector<std::string> failures;
        auto work = [&]() -> asio::awaitable<void> {
            ++inside;
            max_inside = std::max(max_inside, inside);
            co_await sleep_for(100ms);
            --inside;
            ++ran;
        };
        for (int i = 0; i < 2; ++i) {
            asio::co_spawn(
                ex,
                [&]() -> asio::awaitable<void> {
                    try {
                        co_await locks.async_run_exclusive("exclusive", work,
                                                           {.ttl = 5s, .wait = 5s},
                                                           asio::use_awaitable);
                    } catch (const std::exception& e) {
                        failures.push_back(e.what());
                    }
                    ++done;
                },
                asio::detached);
        }
        const bool finished = co_await eventually([&] { return done == 2; }, 5s);
        REQUIRE(finished);
        std::string why;
        for (auto& f : failures) why += f + "\n";
        INFO(why);
        CHECK(failures.empty());
        CHECK(ran == 2);
        CHECK(max_inside == 1);
        const bool held = co_await key_exists(conn, lock_key("exclusive"));
        CHECK_FALSE(held);
        CHECK(s.held_leases() == 0);
    });
}

TEST_CASE("lock: run_exclusive cancels the work and fails with lease_lost when the lease is lost",
          "[lock]") {
    with_connection([](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        side_connection other(ex, srv);
        session s(conn);
        session admin_session(other.conn);
        lock_provider locks(s);
        lock_provider admin(admin_session);

        bool started = false, cancelled = false, finished_work = false, done = false;
        std::exception_ptr result;
        auto work = [&]() -> asio::awaitable<void> {
            started = true;
            asio::steady_timer t(co_await asio::this_coro::executor);
            t.expires_after(30s);
            auto [ec] = co_await t.async_wait(nothrow);
            if (ec == asio::error::operation_aborted) {
                cancelled = true;
                throw boost::system::system_error(ec);
            }
            finished_work = true;
        };
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
                try {
                    co_await locks.async_run_exclusive("singleton", work, {.ttl = 600ms},
                                                       asio::use_awaitable);
                } catch (...) {
                    result = std::current_exception();
                }
                done = true;
            },
            asio::detached);
        const bool running = co_await eventually([&] { return started; }, 3s);
        REQUIRE(running);
        auto [fec, released] = co_await admin.async_force_release("singleton", nothrow);
        REQUIRE_FALSE(fec);
        CHECK(released);

        const bool ended = co_await eventually([&] { return done; }, 3s);
        REQUIRE(ended);
        CHECK(cancelled);
        CHECK_FALSE(finished_work);
        REQUIRE(result);
        bool lost = false;
        try {
            std::rethrow_exception(result);
        } catch (const error_with_diagnostics& e) {
            lost = e.code() == rerror::error::lease_lost;
            INFO(e.what());
            CHECK(mentions(e.get_diagnostics().message(), "singleton"));
        } catch (const std::exception& e) {
            INFO("unexpected exception: " << e.what());
        }
        CHECK(lost);
        CHECK(s.get_lock_statistics().leases_lost == 1);
    });
}

// ---- 10. Bad input --------------------------------------------------------------------------

TEST_CASE("lock: bad input gives clear errors naming the field", "[lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        lock_provider locks(s);
        diagnostics diag;

        auto [e1, l1] = co_await locks.async_acquire("", {}, diag, nothrow);
        CHECK(e1 == rerror::error::invalid_argument);
        CHECK_FALSE(l1);
        CHECK(mentions(diag.message(), "lock name"));

        auto [e2, l2] = co_await locks.async_try_acquire("", {}, diag, nothrow);
        CHECK(e2 == rerror::error::invalid_argument);
        CHECK(mentions(diag.message(), "lock name"));

        auto [e3, l3] = co_await locks.async_acquire("bad", {.ttl = -1ms}, diag, nothrow);
        CHECK(e3 == rerror::error::invalid_argument);
        CHECK_FALSE(l3);
        INFO(diag.message());
        CHECK(mentions(diag.message(), "ttl"));
        CHECK(mentions(diag.message(), "bad"));

        auto [e4, l4] = co_await locks.async_acquire("bad", {.wait = -5ms}, diag, nothrow);
        CHECK(e4 == rerror::error::invalid_argument);
        CHECK_FALSE(l4);
        CHECK(mentions(diag.message(), "wait"));

        auto [e5, r5] = co_await locks.async_force_release("", nothrow);
        CHECK(e5 == rerror::error::invalid_argument);
        CHECK_FALSE(r5);
        auto [e6, r6] = co_await locks.async_extend("", "owner", 1000ms, nothrow);
        CHECK(e6 == rerror::error::invalid_argument);
        auto [e7, r7] = co_await locks.async_extend("bad", "", 1000ms, nothrow);
        CHECK(e7 == rerror::error::invalid_argument);
        auto [e8, r8] = co_await locks.async_extend("bad", "owner", 0ms, nothrow);
        CHECK(e8 == rerror::error::invalid_argument);
        // Nothing reached Redis.
        const bool created = co_await key_exists(conn, lock_key("bad"));
        CHECK_FALSE(created);

        require_bad_config([&] { lock_provider p(s, {.default_ttl = 0ms}); },
                           "default_ttl");
        require_bad_config([&] { lock_provider p(s, {.default_ttl = -1ms}); },
                           "default_ttl");
        require_bad_config([&] { lock_provider p(s, {.retry_delay = 0ms}); }, "retry_delay");
        require_bad_config([&] { lock_provider p(s, {.retry_delay = -10ms}); }, "retry_delay");
        require_bad_config([&] { lock_provider p(s, {.max_retries = -1}); }, "max_retries");

        for (double f : {0.0, 1.0, -0.5, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
            redcoord::session_options opts;
            opts.renew_fraction = f;
            require_bad_config([&] { session bad(conn, opts); }, "renew_fraction");
        }

        lease empty;
        auto [e9] = co_await empty.async_release(diag, nothrow);
        CHECK(e9 == rerror::error::invalid_argument);
        CHECK(mentions(diag.message(), "empty"));
        auto [e10] = co_await empty.async_extend(1000ms, nothrow);
        CHECK(e10 == rerror::error::invalid_argument);
        auto [e11] = co_await empty.async_wait_lost(nothrow);
        CHECK(e11 == rerror::error::invalid_argument);

        auto l = co_await must_acquire(locks, "extend-zero", {.ttl = 10s});
        auto [e12] = co_await l.async_extend(0ms, nothrow);
        CHECK(e12 == rerror::error::invalid_argument);
        auto [e13] = co_await l.async_extend(-1000ms, nothrow);
        CHECK(e13 == rerror::error::invalid_argument);
        CHECK(l.is_held());
        CHECK(l.ttl() == 10s);
        co_await must_release(l);
    });
}

// ---- 11. Statistics -------------------------------------------------------------------------

TEST_CASE("lock: statistics count acquisitions, contended ones and timeouts", "[lock]") {
    with_connection([](redcoord::connection& conn, auto& srv) -> asio::awaitable<void> {
        session s(conn);
        lock_provider locks(s);

        auto first = co_await must_acquire(locks, "stats", {.ttl = 10s});
        auto w = spawn_acquire(locks, "stats", {.ttl = 10s, .wait = 10s});
        const bool waiting = co_await eventually_async(
            [&]() -> asio::awaitable<bool> {
                co_return co_await subscribers(srv, channel_of("stats")) == 1;
            },
            3s);
        REQUIRE(waiting);
        co_await sleep_for(20ms);  // a wait long enough to show in the statistics
        co_await must_release(first);
        const bool got = co_await eventually([&] { return w->done; }, 3s);
        REQUIRE(got);
        require_ok(w->ec, w->diag);

        diagnostics diag;
        auto [ec, none] = co_await locks.async_acquire("stats", {.wait = 100ms}, diag, nothrow);
        CHECK(ec == rerror::error::acquire_timeout);
        co_await must_release(w->l);
        auto other = co_await must_acquire(locks, "stats-other", {});
        co_await must_release(other);

        const auto st = s.get_lock_statistics();
        CHECK(st.acquisitions == 3);
        CHECK(st.contended_acquisitions == 1);
        CHECK(st.timeouts == 1);
        CHECK(st.leases_lost == 0);
        CHECK(st.wait_p50 <= st.wait_p99);
        CHECK(st.wait_p99 <= st.wait_max);
        CHECK(st.wait_max >= 20ms);
        CHECK(st.wait_mean <= st.wait_max);
    });
}

}  // namespace

namespace {

// A held lock's value as lock_ops.lua stores it (lock_fields.hpp), with one hold.
// The session id is the node's name here.
std::string stored_lock(const std::string& owner, const std::string& node, char waiters) {
    return std::to_string(owner.size()) + ":" + owner + " 1 0 1700000000000 " + waiters + " " +
           node + " " + node;
}

// Runs lock_ops.lua with keys and args (and its last arguments: no undeclared keys, the publish
// command); the diagnostics say why when it fails.
asio::awaitable<void> lock_ops(redcoord::connection& conn, std::vector<std::string> keys,
                               std::vector<std::string> args) {
    args.emplace_back("0");  // no undeclared keys
    args.emplace_back("PUBLISH");
    redcoord::diagnostics diag;
    const auto& ops = redcoord::script::embedded("lock_ops");
    redcoord::ignore_t sink;
    auto [ec, n] = co_await redcoord::async_eval(conn, ops, std::move(keys), std::move(args), sink,
                                                 diag, nothrow);
    INFO(diag.message());
    REQUIRE_FALSE(ec);
}

}  // namespace

TEST_CASE("lock: a waiter of another node is told apart from one of the holder's node",
          "[lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session a(conn, {.node_id = "node-a"});
        session b(conn, {.node_id = "node-b"});
        lock_provider locks_a(a), locks_b(b);
        auto held = co_await must_acquire(locks_a, "told-apart", {});
        auto waiters = [&]() -> asio::awaitable<std::string> {
            const auto stored = co_await command(conn, "GET", "redcoord:lock:{told-apart}");
            co_return redcoord::test::split_lock_value(stored).waiters;
        };
        // A try that finds the lock held, then the flag it leaves.
        auto try_held = [&](lock_provider& locks) -> asio::awaitable<std::string> {
            auto [ec, l] = co_await locks.async_try_acquire("told-apart", {}, nothrow);
            REQUIRE_FALSE(ec);
            CHECK_FALSE(l);
            co_return co_await waiters();
        };
        const auto before = co_await waiters();
        CHECK(before == "0");
        // The holder's node tries: 1. Another node tries: 2, and it stays 2 when the holder's
        // node tries again.
        const auto after_same = co_await try_held(locks_a);
        CHECK(after_same == "1");
        const auto after_other = co_await try_held(locks_b);
        CHECK(after_other == "2");
        const auto still = co_await try_held(locks_a);
        CHECK(still == "2");
        co_await must_release(held);
    });
}

TEST_CASE("lock: a yielding handoff is refused only when another node waits", "[lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        // One hash tag: lock_ops.lua takes the lock's keys in one slot.
        const std::string key = "{yield}:lock", fence = "{yield}:fence",
                          channel = "{yield}:released";
        auto holder = [&]() -> asio::awaitable<std::string> {
            const auto exists = co_await command(conn, "EXISTS", key);
            if (exists == "0") co_return std::string();
            const auto stored = co_await command(conn, "GET", key);
            co_return redcoord::test::split_lock_value(stored).owner;
        };
        for (char flag : {'0', '1', '2'}) {
            for (std::string mode : {"y", "-"}) {
                INFO("waiters flag " << flag << ", mode " << mode);
                const auto stored = stored_lock("a1", "node-a", flag);
                co_await command(conn, "SET", key, stored, "PX", "10000");
                // The release of a1 and the handoff attempt of a2 (same node) in one call, as
                // a local handoff sends them; mode "y" asks to yield to other nodes.
                std::vector<std::string> keys{key, key, fence};
                std::vector<std::string> args{"r", "a1", channel, "0", "a",
                                              stored_lock("a2", "node-a", '0'), "10000", mode};
                co_await lock_ops(conn, std::move(keys), std::move(args));
                const auto owner = co_await holder();
                // Refused (the lock stays free for the other node) only with "y" and a waiter
                // of another node; else handed over.
                if (flag == '2' && mode == "y")
                    CHECK(owner.empty());
                else
                    CHECK(owner == "a2");
                co_await command(conn, "DEL", key);
            }
        }
    });
}
