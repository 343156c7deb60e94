// Read-write locks against a real redis-server: the key layout, many readers at once, mutual
// exclusion under contention, writer preference, dead readers, writers giving up, bad input.
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
using redcoord::lock_options;
using redcoord::rw_lock_provider;
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

// Waits until a command's reply equals `expected`; fails the test past `bound`.
asio::awaitable<void> until_reply(redcoord::connection& conn, std::string_view expected,
                                  std::chrono::milliseconds bound, std::string_view cmd,
                                  const std::string& key) {
    const auto until = std::chrono::steady_clock::now() + bound;
    for (;;) {
        auto got = co_await command(conn, cmd, key);
        if (got == expected) co_return;
        if (std::chrono::steady_clock::now() >= until)
            FAIL(cmd << " " << key << " gave " << got << ", not " << expected);
        co_await sleep_for(5ms);
    }
}

asio::awaitable<lease> must_read(rw_lock_provider& rw, std::string name,
                                 const acquire_options& opts) {
    redcoord::diagnostics diag;
    auto [ec, l] = co_await rw.async_acquire_read(name, opts, diag, nothrow);
    require_ok(ec, diag);
    REQUIRE(l.is_held());
    co_return std::move(l);
}

asio::awaitable<lease> must_write(rw_lock_provider& rw, std::string name,
                                  const acquire_options& opts) {
    redcoord::diagnostics diag;
    auto [ec, l] = co_await rw.async_acquire_write(name, opts, diag, nothrow);
    require_ok(ec, diag);
    REQUIRE(l.is_held());
    co_return std::move(l);
}

const std::string writer_key = "redcoord:lock:{doc}:rw:writer";
const std::string readers_key = "redcoord:lock:{doc}:rw:readers";
const std::string waiting_key = "redcoord:lock:{doc}:rw:writers_waiting";
const std::string fence_key = "redcoord:lock:{doc}:rw:fence";

TEST_CASE("rw_lock: holds store the documented keys, and fences grow across reads and writes",
          "[rw_lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-a"});
        rw_lock_provider rw(s);
        auto r = co_await must_read(rw, "doc", {.ttl = 10s});
        CHECK(r.key() == readers_key);
        CHECK(r.resource() == "doc");
        CHECK(r.owner().starts_with("node-a:"));
        const auto read_fence = r.fencing_token();
        CHECK(read_fence > 0);
        const std::string read_fence_text = std::to_string(read_fence);
        co_await check_reply(conn, read_fence_text, "GET", fence_key);
        co_await check_reply(conn, "1", "ZCARD", readers_key);
        auto readers_pttl = std::stoll(co_await command(conn, "PTTL", readers_key));
        CHECK(readers_pttl > 5000);
        CHECK(readers_pttl <= 10000);
        co_await check_reply(conn, "0", "EXISTS", "redcoord:lock:{doc}");
        co_await must_release(r);
        co_await check_reply(conn, "0", "ZCARD", readers_key);

        auto w = co_await must_write(rw, "doc", {.ttl = 10s});
        CHECK(w.key() == writer_key);
        const auto write_fence = w.fencing_token();
        CHECK(write_fence > read_fence);
        const std::string write_fence_text = std::to_string(write_fence);
        co_await check_reply(conn, w.owner(), "HGET", writer_key, "owner");
        co_await check_reply(conn, "node-a", "HGET", writer_key, "node");
        co_await check_reply(conn, write_fence_text, "HGET", writer_key, "fence");
        auto pttl = std::stoll(co_await command(conn, "PTTL", writer_key));
        CHECK(pttl > 5000);
        CHECK(pttl <= 10000);
        co_await check_reply(conn, write_fence_text, "GET", fence_key);
        co_await must_release(w);
        co_await check_reply(conn, "0", "EXISTS", writer_key);
        // Releasing twice is harmless.
        co_await must_release(w);

        auto r2 = co_await must_read(rw, "doc", {});
        CHECK(r2.fencing_token() > write_fence);
        co_await must_release(r2);
    });
}

TEST_CASE("rw_lock: many readers hold at once, and a writer gets in when all have left",
          "[rw_lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        rw_lock_provider rw(s);
        std::vector<lease> readers;
        for (int i = 0; i < 5; ++i) readers.push_back(co_await must_read(rw, "doc", {.ttl = 10s}));
        for (auto& r : readers) CHECK(r.is_held());
        co_await check_reply(conn, "5", "ZCARD", readers_key);

        auto [ec, w] = co_await rw.async_try_acquire_write("doc", {}, nothrow);
        REQUIRE_FALSE(ec);
        CHECK_FALSE(w);
        // A try leaves no waiting mark: readers still get in.
        co_await check_reply(conn, "0", "EXISTS", waiting_key);
        auto [ec2, r6] = co_await rw.async_try_acquire_read("doc", {}, nothrow);
        REQUIRE_FALSE(ec2);
        CHECK(r6.is_held());
        co_await must_release(r6);

        for (std::size_t i = 0; i + 1 < readers.size(); ++i) co_await must_release(readers[i]);
        auto [ec3, w2] = co_await rw.async_try_acquire_write("doc", {}, nothrow);
        REQUIRE_FALSE(ec3);
        CHECK_FALSE(w2);
        co_await must_release(readers.back());
        auto [ec4, w3] = co_await rw.async_try_acquire_write("doc", {}, nothrow);
        REQUIRE_FALSE(ec4);
        REQUIRE(w3.is_held());
        // A writer excludes readers and writers.
        auto [ec5, r7] = co_await rw.async_try_acquire_read("doc", {}, nothrow);
        REQUIRE_FALSE(ec5);
        CHECK_FALSE(r7);
        auto [ec6, w4] = co_await rw.async_try_acquire_write("doc", {}, nothrow);
        REQUIRE_FALSE(ec6);
        CHECK_FALSE(w4);
        co_await must_release(w3);
    });
}

TEST_CASE("rw_lock: readers and writers exclude each other under contention", "[rw_lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        rw_lock_provider rw(s);
        constexpr int writers = 4, readers = 8, rounds = 5;
        int readers_inside = 0, writers_inside = 0, max_readers = 0, done = 0;
        int violations = 0, writes = 0, reads = 0;
        std::vector<std::int64_t> fences;
        auto ex = co_await asio::this_coro::executor;
        for (int i = 0; i < writers; ++i) {
            asio::co_spawn(
                ex,
                [&]() -> asio::awaitable<void> {
                    for (int r = 0; r < rounds; ++r) {
                        auto l = co_await must_write(rw, "doc", {.ttl = 10s, .wait = 60s});
                        fences.push_back(l.fencing_token());
                        ++writers_inside;
                        if (writers_inside != 1 || readers_inside != 0) ++violations;
                        co_await sleep_for(2ms);
                        if (writers_inside != 1 || readers_inside != 0) ++violations;
                        --writers_inside;
                        ++writes;
                        co_await must_release(l);
                    }
                    ++done;
                },
                asio::detached);
        }
        for (int i = 0; i < readers; ++i) {
            asio::co_spawn(
                ex,
                [&]() -> asio::awaitable<void> {
                    for (int r = 0; r < rounds; ++r) {
                        auto l = co_await must_read(rw, "doc", {.ttl = 10s, .wait = 60s});
                        fences.push_back(l.fencing_token());
                        ++readers_inside;
                        max_readers = std::max(max_readers, readers_inside);
                        if (writers_inside != 0) ++violations;
                        co_await sleep_for(2ms);
                        if (writers_inside != 0) ++violations;
                        --readers_inside;
                        ++reads;
                        co_await must_release(l);
                    }
                    ++done;
                },
                asio::detached);
        }
        co_await eventually([&] { return done == writers + readers; }, 100s, "all done");
        CHECK(violations == 0);
        CHECK(writes == writers * rounds);
        CHECK(reads == readers * rounds);
        CHECK(max_readers >= 1);
        CHECK(max_readers <= readers);
        // Every hold had a token of its own.
        CHECK(std::set<std::int64_t>(fences.begin(), fences.end()).size() == fences.size());
        co_await check_reply(conn, "0", "EXISTS", writer_key);
        co_await check_reply(conn, "0", "ZCARD", readers_key);
        CHECK(s.held_leases() == 0);
    }, 120s);
}

TEST_CASE("rw_lock: a waiting writer keeps new readers out and goes first", "[rw_lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        rw_lock_provider rw(s);
        auto r1 = co_await must_read(rw, "doc", {.ttl = 10s});
        std::vector<std::string> order;
        std::optional<lease> w_lease, r2_lease;
        auto ex = co_await asio::this_coro::executor;
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
                auto l = co_await must_write(rw, "doc", {.ttl = 10s, .wait = 30s});
                order.push_back("writer");
                w_lease.emplace(std::move(l));
            },
            asio::detached);
        // The writer is refused and marks itself as waiting.
        co_await until_reply(conn, "1", 10s, "ZCARD", waiting_key);
        CHECK(order.empty());

        // A new reader is kept out, whether it tries once or waits.
        auto [ec, r_try] = co_await rw.async_try_acquire_read("doc", {}, nothrow);
        REQUIRE_FALSE(ec);
        CHECK_FALSE(r_try);
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
                auto l = co_await must_read(rw, "doc", {.ttl = 10s, .wait = 30s});
                order.push_back("reader");
                r2_lease.emplace(std::move(l));
            },
            asio::detached);
        // The reader that already held keeps its hold.
        CHECK(r1.is_held());
        CHECK(order.empty());

        co_await must_release(r1);
        co_await eventually([&] { return !order.empty(); }, 10s, "writer granted");
        REQUIRE(order.size() == 1);
        CHECK(order[0] == "writer");
        REQUIRE(w_lease);
        CHECK(w_lease->is_held());
        co_await check_reply(conn, "0", "ZCARD", waiting_key);
        // The writer holds: the reader still waits.
        CHECK(order.size() == 1);
        CHECK_FALSE(r2_lease);

        co_await must_release(*w_lease);
        co_await eventually([&] { return order.size() == 2; }, 10s, "reader granted");
        CHECK(order[1] == "reader");
        REQUIRE(r2_lease);
        CHECK(r2_lease->is_held());
        CHECK(r2_lease->fencing_token() > w_lease->fencing_token());
        co_await must_release(*r2_lease);
    });
}

TEST_CASE("rw_lock: a writer that gives up lets the readers in", "[rw_lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        rw_lock_provider rw(s);
        auto r1 = co_await must_read(rw, "doc", {.ttl = 10s});
        redcoord::diagnostics diag;
        auto [ec, w] = co_await rw.async_acquire_write("doc", {.wait = 200ms}, diag, nothrow);
        CHECK(ec == redcoord::error::acquire_timeout);
        CHECK_FALSE(w);
        CHECK(diag.message().find("write lock 'doc'") != std::string::npos);
        // Its mark is removed at once, not left to lapse.
        co_await until_reply(conn, "0", 10s, "EXISTS", waiting_key);
        auto [ec2, r2] = co_await rw.async_try_acquire_read("doc", {}, nothrow);
        REQUIRE_FALSE(ec2);
        CHECK(r2.is_held());
        co_await must_release(r2);
        co_await must_release(r1);
    });
}

TEST_CASE("rw_lock: a cancelled waiting writer leaves no mark", "[rw_lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        rw_lock_provider rw(s);
        auto r1 = co_await must_read(rw, "doc", {.ttl = 10s});
        asio::cancellation_signal stop;
        std::optional<error_code> result;
        bool got_lease = false;
        auto ex = co_await asio::this_coro::executor;
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
                auto [ec, l] = co_await rw.async_acquire_write(
                    "doc", {.wait = 30s},
                    asio::bind_cancellation_slot(stop.slot(), nothrow));
                got_lease = static_cast<bool>(l);
                result = ec;
            },
            asio::detached);
        co_await until_reply(conn, "1", 10s, "ZCARD", waiting_key);
        stop.emit(asio::cancellation_type::terminal);
        co_await eventually([&] { return result.has_value(); }, 10s, "writer cancelled");
        CHECK(*result == asio::error::operation_aborted);
        CHECK_FALSE(got_lease);
        co_await until_reply(conn, "0", 10s, "EXISTS", waiting_key);
        auto [ec2, r2] = co_await rw.async_try_acquire_read("doc", {}, nothrow);
        REQUIRE_FALSE(ec2);
        CHECK(r2.is_held());
        co_await must_release(r2);
        co_await must_release(r1);
    });
}

TEST_CASE("rw_lock: a reader whose session died blocks a writer no longer than its TTL",
          "[rw_lock]") {
    with_connection([](redcoord::connection& conn, auto& srv) -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        redcoord::connection conn2(ex);
        conn2.async_run(config_for(srv), asio::detached);
        std::string dead_owner;
        {
            std::optional<session> s2;
            s2.emplace(conn2);
            rw_lock_provider rw2(*s2);
            auto r = co_await must_read(rw2, "doc", {.ttl = 1s});
            dead_owner = r.owner();
            // The session goes away without releasing: the reader is dead, its entry stays.
            s2.reset();
            CHECK(r.get_status() == lease::status::lost);
            CHECK(r.lost_reason() == redcoord::error::session_closed);
        }
        conn2.cancel();

        session s(conn);
        rw_lock_provider rw(s);
        auto w = co_await must_write(rw, "doc", {.ttl = 10s, .wait = 30s});
        CHECK(w.is_held());
        // The writer's grant removed the lapsed reader (or the key expired with it).
        co_await check_reply(conn, "0", "ZCARD", readers_key);
        co_await must_release(w);
    });
}

TEST_CASE("rw_lock: a reader without watchdog lapses at its TTL and lets the writer in",
          "[rw_lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        rw_lock_provider no_renewal(s, {.enable_extension = false});
        rw_lock_provider rw(s);
        auto r = co_await must_read(no_renewal, "doc", {.ttl = 300ms});
        auto w = co_await must_write(rw, "doc", {.ttl = 10s, .wait = 30s});
        CHECK(w.is_held());
        auto [ec] = co_await r.async_wait_lost(nothrow);
        CHECK_FALSE(ec);
        CHECK(r.get_status() == lease::status::lost);
        CHECK(w.fencing_token() > r.fencing_token());
        co_await must_release(w);
        // The lapsed reader's release finds nothing.
        redcoord::diagnostics diag;
        auto [ec2] = co_await r.async_release(diag, nothrow);
        CHECK(ec2 == redcoord::error::not_held);
    });
}

TEST_CASE("rw_lock: held leases are renewed by the watchdog", "[rw_lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        rw_lock_provider rw(s);
        auto r = co_await must_read(rw, "doc", {.ttl = 300ms});
        co_await eventually([&] { return r.renewals() >= 2; }, 10s, "reader renewed");
        CHECK(r.is_held());
        co_await must_release(r);
        auto w = co_await must_write(rw, "doc", {.ttl = 300ms});
        co_await eventually([&] { return w.renewals() >= 2; }, 10s, "writer renewed");
        CHECK(w.is_held());
        co_await must_release(w);
        co_await check_reply(conn, "0", "EXISTS", writer_key);
    });
}

TEST_CASE("rw_lock: bad input", "[rw_lock]") {
    with_connection([](redcoord::connection& conn, auto& srv) -> asio::awaitable<void> {
        session s(conn);
        rw_lock_provider rw(s);
        redcoord::diagnostics diag;
        {
            auto [ec, l] = co_await rw.async_acquire_read("", {}, diag, nothrow);
            CHECK(ec == redcoord::error::invalid_argument);
            CHECK_FALSE(l);
            CHECK(diag.message().find("lock name") != std::string::npos);
        }
        {
            auto [ec, l] = co_await rw.async_try_acquire_write("", {}, diag, nothrow);
            CHECK(ec == redcoord::error::invalid_argument);
            CHECK_FALSE(l);
        }
        {
            auto [ec, l] = co_await rw.async_acquire_write("doc", {.ttl = -1ms}, diag, nothrow);
            CHECK(ec == redcoord::error::invalid_argument);
            CHECK(diag.message().find("ttl") != std::string::npos);
        }
        {
            auto [ec, l] = co_await rw.async_acquire_read("doc", {.wait = -5ms}, diag, nothrow);
            CHECK(ec == redcoord::error::invalid_argument);
            CHECK(diag.message().find("wait") != std::string::npos);
        }
        {
            acquire_options reentrant;
            reentrant.owner = "someone";
            reentrant.reentrant = true;
            auto [ec, l] = co_await rw.async_acquire_read("doc", reentrant, diag, nothrow);
            CHECK(ec == redcoord::error::invalid_argument);
            CHECK(diag.message().find("reentrant") != std::string::npos);
        }
        bool threw = false;
        try {
            rw_lock_provider fair(s, {.fair = true});
        } catch (const redcoord::error_with_diagnostics& e) {
            threw = e.code() == redcoord::error::bad_config;
        }
        CHECK(threw);
        CHECK(redcoord::test::key_count(srv) == 0);
    });
}

}  // namespace
