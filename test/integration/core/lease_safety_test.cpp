// The lease contract against a real redis-server where inputs are hostile or the session ends:
// owners with any bytes never share a lock, an owner holds a lock once unless it asks for
// reentrancy, a lost lease's cancellation slot fires, and a session closes without leaving
// locks, leaderships or heartbeats behind.
#include <redcoord/redcoord.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
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
using redcoord::test::eventually_async;
using redcoord::test::must_acquire;
using redcoord::test::nothrow;
using redcoord::test::require_ok;
using redcoord::test::with_connection;

// Owners that a format with a separator, a prefix match or an unbounded field would confuse.
const std::vector<std::string>& hostile_owners() {
    static const std::vector<std::string> owners{
        "evil\nnode", "evil\nother", "evil", "evil\n", "e", "3:evil\nnode 1",
        "evil\nnode 1 1 0 0 x", "10:evil node", "evil node", "1", "1:1 1", std::string("nul\0in", 6)};
    return owners;
}

asio::awaitable<lease> try_as(lock_provider& locks, const std::string& name,
                              const std::string& owner) {
    redcoord::diagnostics diag;
    acquire_options o;
    o.ttl = 30s;
    o.owner = owner;
    auto [ec, l] = co_await locks.async_try_acquire(name, o, diag, nothrow);
    require_ok(ec, diag);
    co_return std::move(l);
}

TEST_CASE("lease safety: owners with any bytes never hold one lock together", "[lease][safety]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        lock_provider locks(s);
        const auto& owners = hostile_owners();
        for (std::size_t a = 0; a < owners.size(); ++a) {
            const std::string name = "hostile-" + std::to_string(a);
            auto held = co_await try_as(locks, name, owners[a]);
            REQUIRE(held.is_held());
            const auto stored = co_await command(conn, "GET", held.key());
            CHECK(redcoord::test::split_lock_value(stored).owner == owners[a]);
            for (std::size_t b = 0; b < owners.size(); ++b) {
                if (b == a) continue;
                INFO("held by " << a << ", tried by " << b);
                auto other = co_await try_as(locks, name, owners[b]);
                CHECK_FALSE(other);
                // Nor can the other owner extend or release it by name.
                auto [eec, extended] =
                    co_await locks.async_extend(name, owners[b], 60s, nothrow);
                CHECK_FALSE(eec);
                CHECK_FALSE(extended);
            }
            // No other owner was granted it: the fencing counter still holds this grant's.
            CHECK(held.fencing_token() > 0);
            {
                const auto fence = co_await command(conn, "GET", held.key() + ":fence");
                CHECK(fence == std::to_string(held.fencing_token()));
            }
            co_await redcoord::test::must_release(held);
            {
                const auto awaited = co_await command(conn, "EXISTS", held.key());
                CHECK(awaited == "0");
            }
        }
    });
}

TEST_CASE("lease safety: an owner that holds a lock is not granted it again without reentrant",
          "[lease][safety]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        lock_provider locks(s);
        const std::string owner = "caller-owner";
        auto first = co_await try_as(locks, "orders", owner);
        REQUIRE(first.is_held());
        auto second = co_await try_as(locks, "orders", owner);
        CHECK_FALSE(second);
        CHECK(redcoord::test::split_lock_value(co_await command(conn, "GET", first.key())).holds ==
              "1");

        // A waiting acquisition by the same owner waits, and times out, like anyone else's.
        acquire_options wait_opts;
        wait_opts.owner = owner;
        wait_opts.wait = 300ms;
        redcoord::diagnostics diag;
        auto [wec, waited] = co_await locks.async_acquire("orders", wait_opts, diag, nothrow);
        CHECK(wec == redcoord::error::acquire_timeout);
        CHECK_FALSE(waited);

        // Asked for, reentrancy adds a hold; the lock is free after as many releases.
        acquire_options again;
        again.owner = owner;
        again.reentrant = true;
        auto inner = co_await must_acquire(locks, "orders", again);
        CHECK(inner.fencing_token() == first.fencing_token());
        co_await redcoord::test::must_release(inner);
        {
            const auto awaited = co_await command(conn, "EXISTS", first.key());
            CHECK(awaited == "1");
        }
        co_await redcoord::test::must_release(first);
        {
            const auto awaited = co_await command(conn, "EXISTS", first.key());
            CHECK(awaited == "0");
        }
    });
}

TEST_CASE("lease safety: a cancellation slot taken from a lease already lost fires",
          "[lease][safety]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        lock_options lo;
        lo.enable_extension = false;
        lock_provider locks(s, lo);
        auto l = co_await must_acquire(locks, "short", {.ttl = 200ms});
        auto [wec] = co_await l.async_wait_lost(nothrow);
        REQUIRE_FALSE(wec);
        REQUIRE(l.get_status() == lease::status::lost);
        // Work bound to the lease after the loss must not run on.
        asio::steady_timer work(conn.get_executor(), 1h);
        auto [ec] = co_await work.async_wait(
            asio::bind_cancellation_slot(l.cancellation_slot(), nothrow));
        CHECK(ec == asio::error::operation_aborted);
    });
}

TEST_CASE("lease safety: async_close releases locks, resigns leaderships, leaves membership and "
          "drains the releases of leases that went out of scope",
          "[lease][safety][close]") {
    with_connection([](redcoord::connection& conn, auto& srv) -> asio::awaitable<void> {
        redcoord::test::side_connection observer(conn.get_executor(), srv);
        auto s = std::make_unique<session>(conn, redcoord::session_options{.node_id = "node-a"});
        lock_provider locks(*s);
        redcoord::leader_options lopts;
        lopts.leadership_timeout = 30min;
        lopts.renewal_interval = 10min;
        redcoord::leader_election election(*s, lopts);
        redcoord::membership members(*s);

        auto kept = co_await must_acquire(locks, "kept", {.ttl = 30min});
        auto [cec, leadership] = co_await election.async_campaign("scheduler", nothrow);
        REQUIRE_FALSE(cec);
        REQUIRE(leadership.is_held());
        auto [jec] = co_await members.async_join("node-a", nothrow);
        REQUIRE_FALSE(jec);
        const auto dropped_key = s->keys().lock("dropped");
        {
            auto dropped = co_await must_acquire(locks, "dropped", {.ttl = 30min});
        }  // its release is queued, not sent yet

        auto [ec] = co_await s->async_close(nothrow);
        CHECK_FALSE(ec);
        CHECK(kept.get_status() == lease::status::released);
        CHECK(leadership.get_status() == lease::status::released);
        auto& o = observer.conn;
        {
            const auto awaited = co_await command(o, "EXISTS", kept.key());
            CHECK(awaited == "0");
        }
        {
            const auto awaited = co_await command(o, "EXISTS", dropped_key);
            CHECK(awaited == "0");
        }
        {
            const auto awaited = co_await command(o, "EXISTS", leadership.key());
            CHECK(awaited == "0");
        }
        {
            const auto awaited = co_await command(o, "EXISTS", s->keys().heartbeat("node-a"));
            CHECK(awaited == "0");
        }
        {
            const auto awaited = co_await command(o, "SISMEMBER", s->keys().registry(), "node-a");
            CHECK(awaited == "0");
        }

        // Closed: nothing new starts, and closing again is harmless.
        redcoord::diagnostics diag;
        auto [aec, late] = co_await locks.async_acquire("late", {}, diag, nothrow);
        CHECK(aec == redcoord::error::session_closed);
        CHECK_FALSE(late);
        auto [ec2] = co_await s->async_close(nothrow);
        CHECK_FALSE(ec2);
    });
}

TEST_CASE("lease safety: destroying a session with held locks sends their releases",
          "[lease][safety][close]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        auto s = std::make_unique<session>(conn, redcoord::session_options{.node_id = "node-a"});
        std::string key;
        lease l;
        {
            lock_provider locks(*s);
            l = co_await must_acquire(locks, "orders", {.ttl = 30min});
            key = l.key();
        }
        s.reset();
        CHECK(l.get_status() == lease::status::lost);
        CHECK(l.lost_reason() == redcoord::error::session_closed);
        auto gone = [&]() -> asio::awaitable<bool> {
            co_return co_await command(conn, "EXISTS", key) == "0";
        };
        {
            const auto awaited = co_await eventually_async(gone, 10s);
            CHECK(awaited);
        }
    });
}

}  // namespace
