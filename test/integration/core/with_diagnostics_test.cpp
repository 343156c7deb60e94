// The throwing form of the operations, redcoord::with_diagnostics(token), against a real
// redis-server: a failed operation throws error_with_diagnostics carrying its diagnostics (the
// bad input named, the server's text, what a deadline missed), a successful one returns its
// values, and the adapted handler keeps its associated executor and cancellation slot.
#include <redcoord/redcoord.hpp>
#include <redcoord/with_diagnostics.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "async_test.hpp"
#include "bad_input.hpp"
#include "connection_helpers.hpp"
#include "exception_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using redcoord::acquire_options;
using redcoord::error_with_diagnostics;
using redcoord::lease;
using redcoord::lock_provider;
using redcoord::queue_item;
using redcoord::reliable_queue;
using redcoord::session;
using redcoord::test::check_names;
using redcoord::test::code_of;
using redcoord::test::command;
using redcoord::test::wait_until;
using redcoord::test::with_connection;

constexpr auto throwing = redcoord::with_diagnostics(asio::use_awaitable);

// What op (an awaitable, or an operation launched by being awaited) throws when awaited: the
// error_with_diagnostics, or nullopt when it completes without one.
template <class Op>
asio::awaitable<std::optional<error_with_diagnostics>> error_of(Op op) {
    std::optional<error_with_diagnostics> caught;
    try {
        co_await std::move(op);
    } catch (const error_with_diagnostics& e) {
        caught.emplace(e);
    }
    co_return caught;
}

// Checks that e is an error_with_diagnostics of code ec whose diagnostics, and what(), name
// every one of parts.
void check_thrown(const std::optional<error_with_diagnostics>& e, redcoord::error ec,
                  const std::vector<std::string>& parts) {
    REQUIRE(e.has_value());
    CHECK(e->code() == ec);
    check_names(e->get_diagnostics().message(), parts);
    check_names(e->what(), parts);
}

}  // namespace

TEST_CASE("with_diagnostics: a queue operation throws naming the bad input, returns on success",
          "[with_diagnostics][queue]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-1"});
        redcoord::queue_options small;
        small.max_value_bytes = 8;
        reliable_queue q(s, small);
        const std::string name = "jobs";
        const std::string empty;
        const std::string payload = "payload";

        const auto no_name = co_await error_of(q.async_enqueue(empty, payload, throwing));
        check_thrown(no_name, redcoord::error::invalid_argument, {"queue name"});
        const std::string too_long = "longer than eight";
        const auto big = co_await error_of(q.async_enqueue(name, too_long, throwing));
        check_thrown(big, redcoord::error::invalid_argument,
                     {"queue 'jobs'", "payload of 17 bytes", "max_value_bytes (8)"});
        const auto no_worker = co_await error_of(q.async_steal(name, empty, throwing));
        check_thrown(no_worker, redcoord::error::invalid_argument, {"worker"});
        // The default token is asio::use_awaitable.
        const auto bad_wait =
            co_await error_of(q.async_dequeue(name, empty, -1ms, redcoord::with_diagnostics()));
        check_thrown(bad_wait, redcoord::error::invalid_argument, {"queue 'jobs'", "timeout"});
        const auto none_pushed = co_await command(conn, "LLEN", "redcoord:queue:{jobs}");
        CHECK(none_pushed == "0");

        // Success: the values, as the plain token would give them.
        const std::string id = co_await q.async_enqueue(name, payload, throwing);
        CHECK(id.size() == 32);
        const std::optional<queue_item> item = co_await q.async_dequeue(name, empty, 0ms, throwing);
        REQUIRE(item.has_value());
        CHECK(item->id == id);
        CHECK(item->payload == payload);
        const bool acked =
            co_await q.async_ack(name, empty, item->raw, redcoord::with_diagnostics());
        CHECK(acked);

        // An error found by the server: its text.
        co_await command(conn, "SET", "redcoord:queue:{not-a-list}", "text");
        const std::string wrong = "not-a-list";
        const auto server = co_await error_of(q.async_dequeue(wrong, empty, 0ms, throwing));
        check_thrown(server, redcoord::error::server_error, {"WRONGTYPE"});

        // The caller's own diagnostics: filled, and carried by the exception.
        redcoord::diagnostics mine;
        const auto with_mine = co_await error_of(q.async_redeliver(empty, mine, throwing));
        check_thrown(with_mine, redcoord::error::invalid_argument, {"queue name"});
        check_names(mine.message(), {"queue name"});
    });
}

TEST_CASE("with_diagnostics: a lock operation throws naming the bad input, returns the lease",
          "[with_diagnostics][lock]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-1"});
        lock_provider locks(s);
        const acquire_options opts;
        const std::string empty;
        const std::string name = "job";

        const auto no_name = co_await error_of(locks.async_acquire(empty, opts, throwing));
        check_thrown(no_name, redcoord::error::invalid_argument, {"lock name"});
        const auto no_name_once =
            co_await error_of(locks.async_try_acquire(empty, opts, redcoord::with_diagnostics()));
        check_thrown(no_name_once, redcoord::error::invalid_argument, {"lock name"});

        lease l = co_await locks.async_acquire(name, opts, throwing);
        REQUIRE(l.is_held());
        const auto holder = co_await command(conn, "EXISTS", "redcoord:lock:{job}");
        CHECK(holder == "1");
        const std::chrono::milliseconds zero{0};
        const auto bad_ttl = co_await error_of(l.async_extend(zero, throwing));
        check_thrown(bad_ttl, redcoord::error::invalid_argument, {"ttl"});
        co_await l.async_release(throwing);
        const auto released = co_await command(conn, "EXISTS", "redcoord:lock:{job}");
        CHECK(released == "0");
    });
}

TEST_CASE("with_diagnostics: what a barrier's deadline or a result's conversion says is thrown",
          "[with_diagnostics][barrier][results]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn);
        redcoord::barrier b(s);
        const std::string batch = "batch";
        const std::int64_t arrivals = co_await b.async_arrive(batch, throwing);
        CHECK(arrivals == 1);
        const auto missed = co_await error_of(b.async_wait(batch, 2, 20ms, throwing));
        check_thrown(missed, redcoord::error::timeout, {"barrier 'batch'", "1 of 2"});
        const std::int64_t reached = co_await b.async_wait(batch, 1, 5s, throwing);
        CHECK(reached == 1);

        redcoord::result_store rs(s);
        const std::string id = "r-1";
        const std::string text = "not a number";
        co_await rs.async_store_result(id, redcoord::result_status::succeeded, text, throwing);
        const auto as_int = co_await error_of(rs.async_get_value<int>(id, throwing));
        check_thrown(as_int, redcoord::error::decode_failed, {"result 'r-1'", "does not convert"});
        const std::optional<std::string> back =
            co_await rs.async_get_value<std::string>(id, throwing);
        CHECK(back == std::optional<std::string>(text));
    });
}

TEST_CASE("with_diagnostics: a queue operation's handler keeps its executor and cancellation slot",
          "[with_diagnostics][queue]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "node-1"});
        reliable_queue q(s);
        auto ex = co_await asio::this_coro::executor;
        auto strand = asio::make_strand(ex);

        // The executor: the callback runs on the strand it was bound to.
        const std::string empty;
        const std::string payload = "x";
        bool done = false, on_strand = false;
        std::exception_ptr refused;
        auto on_enqueue = [&](std::exception_ptr ep, std::string) {
            on_strand = strand.running_in_this_thread();
            refused = ep;
            done = true;
        };
        q.async_enqueue(empty, payload,
                        redcoord::with_diagnostics(asio::bind_executor(strand, on_enqueue)));
        co_await wait_until([&] { return done; });
        CHECK(on_strand);
        CHECK(code_of(refused) == redcoord::error::invalid_argument);

        // The cancellation slot: a blocking dequeue of an empty queue ends when cancelled,
        // long before its own timeout.
        asio::cancellation_signal cancel;
        done = false;
        std::exception_ptr aborted;
        std::optional<queue_item> taken;
        auto on_dequeue = [&](std::exception_ptr ep, std::optional<queue_item> item) {
            aborted = ep;
            taken = std::move(item);
            done = true;
        };
        const std::string name = "empty";
        q.async_dequeue(name, empty, 20s,
                        redcoord::with_diagnostics(
                            asio::bind_cancellation_slot(cancel.slot(), on_dequeue)));
        co_await redcoord::test::sleep_for(50ms);
        CHECK_FALSE(done);
        cancel.emit(asio::cancellation_type::terminal);
        co_await wait_until([&] { return done; });
        CHECK(code_of(aborted) == asio::error::operation_aborted);
        CHECK_FALSE(taken.has_value());
    });
}
