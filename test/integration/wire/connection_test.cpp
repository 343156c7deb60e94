// redcoord::connection against a real redis-server: many coroutines on one connection,
// pipelining, server restarts and crashes, cancellation, timeouts, fail-fast, health checks,
// transactions, server errors and async_run's own failures.
//
// Every wait is bounded (run_async's deadline, or `wait_for`), so a hang fails the test; no
// assertion depends on how long something took.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <numeric>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "async_test.hpp"
#include "connection_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using redcoord::test::redis_server;
using redcoord::test::run_async;

using redcoord::test::config_for;
using redcoord::test::nothrow;
constexpr auto test_deadline = 40s;

// What a completion handler was called with.
struct outcome {
    bool done = false;
    error_code ec;
};

// Starts async_run; `run` records how it ended.
void start_run(redcoord::connection& conn, redcoord::config cfg, outcome& run) {
    conn.async_run(std::move(cfg), [&run](error_code ec) {
        run.done = true;
        run.ec = ec;
    });
}

// A completion handler for async_exec that records into `out`.
auto record(outcome& out) {
    return [&out](error_code ec, std::size_t) {
        out.done = true;
        out.ec = ec;
    };
}

asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
    asio::steady_timer timer(co_await asio::this_coro::executor, d);
    co_await timer.async_wait(nothrow);
}

// Polls `pred` until it holds; fails the test when it still does not after `limit`. The limit
// only bounds a hang.
template <class Pred>
asio::awaitable<void> wait_for(Pred pred, std::string_view what,
                               std::chrono::milliseconds limit = 15s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
        if (std::chrono::steady_clock::now() >= until) FAIL("gave up waiting for " << what);
        co_await sleep_for(5ms);
    }
}

// One command; its reply converted to T.
template <class T, class... Args>
asio::awaitable<std::pair<error_code, T>> exec1(redcoord::connection& conn, std::string_view cmd,
                                                const Args&... args) {
    redcoord::request req;
    req.push(cmd, args...);
    T value{};
    auto [ec, n] = co_await conn.async_exec(req, value, nothrow);
    co_return std::pair{ec, std::move(value)};
}

// PING must answer PONG: the connection serves.
asio::awaitable<void> require_pong(redcoord::connection& conn) {
    auto [ec, pong] = co_await exec1<std::string>(conn, "PING");
    INFO("PING: " << ec.message());
    REQUIRE_FALSE(ec);
    REQUIRE(pong == "PONG");
}

// Stops the connection and waits for async_run to end, so no work of it outlives the test.
asio::awaitable<void> shut_down(redcoord::connection& conn, const outcome& run) {
    conn.cancel();
    co_await wait_for([&] { return run.done; }, "async_run to end");
}

// Runs body(conn, srv, ioc) with a connection (config_for) to a fresh server, then shuts the
// connection down.
template <class Body>
void with_started_connection(Body body) {
    redis_server srv;
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            redcoord::connection conn(ioc.get_executor());
            outcome run;
            start_run(conn, config_for(srv), run);
            co_await body(conn, srv, ioc);
            co_await shut_down(conn, run);
        },
        test_deadline);
}

// Coroutines spawned on the test's io_context; wait() returns once all have finished and
// rethrows the first exception one of them threw (a failed REQUIRE, say).
class task_group {
public:
    explicit task_group(asio::io_context& ioc)
        : ioc_(ioc), wake_(ioc, std::chrono::steady_clock::time_point::max()) {}

    void spawn(asio::awaitable<void> task) {
        ++running_;
        asio::co_spawn(ioc_, std::move(task), [this](std::exception_ptr e) {
            if (e && !error_) error_ = e;
            if (--running_ == 0) wake_.cancel();
        });
    }

    asio::awaitable<void> wait() {
        while (running_ > 0) co_await wake_.async_wait(nothrow);
        if (error_) std::rethrow_exception(error_);
    }

private:
    asio::io_context& ioc_;
    asio::steady_timer wake_;
    int running_ = 0;
    std::exception_ptr error_;
};

// ---------------------------------------------------------------------------------------------
// Load generators. Coroutines take what they use as parameters: a capturing lambda coroutine
// would outlive its captures.

struct set_get_stats {
    int failed = 0;
    int wrong = 0;
    std::vector<long long> increments;
};

asio::awaitable<void> set_get_incr(redcoord::connection& conn, int id, int rounds,
                                   set_get_stats& stats) {
    for (int r = 0; r < rounds; ++r) {
        const std::string key = "key:" + std::to_string(id) + ":" + std::to_string(r);
        const std::string value = "value:" + std::to_string(id * rounds + r);
        auto [set_ec, ok] = co_await exec1<std::string>(conn, "SET", key, value);
        auto [get_ec, got] = co_await exec1<std::string>(conn, "GET", key);
        auto [incr_ec, n] = co_await exec1<long long>(conn, "INCR", "shared-counter");
        if (set_ec || get_ec || incr_ec) ++stats.failed;
        if (ok != "OK" || got != value) ++stats.wrong;
        stats.increments.push_back(n);
    }
}

struct incr_stats {
    bool stop = false;
    int issued = 0;
    int ok = 0;
    int connection_lost = 0;
    int timed_out = 0;
    int other = 0;
    error_code other_ec;
};

asio::awaitable<void> incr_loop(redcoord::connection& conn, incr_stats& stats) {
    while (!stats.stop) {
        ++stats.issued;
        auto [ec, n] = co_await exec1<long long>(conn, "INCR", "load-counter");
        if (!ec) {
            ++stats.ok;
        } else if (ec == redcoord::error::connection_lost) {
            ++stats.connection_lost;
        } else if (ec == redcoord::error::timeout) {
            ++stats.timed_out;
        } else {
            ++stats.other;
            stats.other_ec = ec;
        }
    }
}

// Many coroutines loop INCR while `outage` takes the server down and brings it back.
asio::awaitable<void> load_through_outage(asio::io_context& ioc, const redis_server& srv,
                                          std::function<void()> outage) {
    redcoord::connection conn(ioc.get_executor());
    outcome run;
    start_run(conn, config_for(srv), run);

    incr_stats stats;
    task_group workers(ioc);
    for (int i = 0; i < 50; ++i) workers.spawn(incr_loop(conn, stats));
    co_await wait_for([&] { return stats.ok >= 500; }, "load before the outage");

    outage();
    co_await wait_for([&] { return conn.get_usage().connects >= 2; }, "the reconnect");
    const int ok_after_reconnect = stats.ok;
    co_await wait_for([&] { return stats.ok >= ok_after_reconnect + 500; },
                      "load after the reconnect");
    stats.stop = true;
    co_await workers.wait();

    INFO("issued " << stats.issued << ", ok " << stats.ok << ", connection_lost "
                   << stats.connection_lost << ", timeout " << stats.timed_out << ", other "
                   << stats.other << " (" << stats.other_ec.message() << ")");
    // Every exec completed, with a value or with one of the errors an outage may cause.
    CHECK(stats.ok + stats.connection_lost + stats.timed_out + stats.other == stats.issued);
    CHECK(stats.other == 0);
    CHECK(conn.get_usage().connection_losses >= 1);
    CHECK(conn.is_connected());
    co_await require_pong(conn);
    co_await shut_down(conn, run);
}

}  // namespace

// ---------------------------------------------------------------------------------------------

TEST_CASE("connection: many coroutines share one connection", "[integration][connection]") {
    with_started_connection([](auto& conn, auto& srv, auto& ioc) -> asio::awaitable<void> {
        constexpr int coroutines = 200;
        constexpr int rounds = 50;
        set_get_stats stats;
        task_group tasks(ioc);
        for (int c = 0; c < coroutines; ++c) tasks.spawn(set_get_incr(conn, c, rounds, stats));
        co_await tasks.wait();

        CHECK(stats.failed == 0);
        CHECK(stats.wrong == 0);
        // Each INCR saw its own value: together they are exactly 1..N.
        std::vector<long long> expected(coroutines * rounds);
        std::iota(expected.begin(), expected.end(), 1);
        std::sort(stats.increments.begin(), stats.increments.end());
        CHECK(stats.increments == expected);

        auto [ec, total] = co_await exec1<long long>(conn, "GET", "shared-counter");
        CHECK_FALSE(ec);
        CHECK(total == coroutines * rounds);
        // One socket per master: a cluster's are counted together.
        CHECK(conn.get_usage().connects == redcoord::test::masters_of(srv));
    });
}

TEST_CASE("connection: concurrent requests are pipelined into few writes",
          "[integration][connection]") {
    with_started_connection([](redcoord::connection& conn, auto&, auto&) -> asio::awaitable<void> {
        co_await require_pong(conn);

        constexpr std::size_t count = 1000;
        std::vector<redcoord::request> reqs(count);
        std::vector<redcoord::response<redcoord::ignore_t, std::string>> resps(count);
        std::vector<outcome> outs(count);
        for (std::size_t i = 0; i < count; ++i) {
            const std::string key = "pipelined:" + std::to_string(i);
            reqs[i].push("SET", key, i);
            reqs[i].push("GET", key);
        }
        const auto writes_before = conn.get_usage().writes;
        for (std::size_t i = 0; i < count; ++i) conn.async_exec(reqs[i], resps[i], record(outs[i]));
        co_await wait_for(
            [&] {
                return std::all_of(outs.begin(), outs.end(),
                                   [](const outcome& o) { return o.done; });
            },
            "every request to complete");

        std::size_t failed = 0, wrong = 0;
        for (std::size_t i = 0; i < count; ++i) {
            if (outs[i].ec) ++failed;
            if (std::get<1>(resps[i]) != std::to_string(i)) ++wrong;
        }
        CHECK(failed == 0);
        CHECK(wrong == 0);
        const auto writes = conn.get_usage().writes - writes_before;
        INFO("socket writes for " << count << " requests: " << writes);
        CHECK(writes < 100);
    });
}

TEST_CASE("connection: survives a server restart under load",
          "[integration][connection][single_server]") {
    redis_server srv;
    run_async(
        [&](asio::io_context& ioc) {
            return load_through_outage(ioc, srv, [&] { srv.restart(); });
        },
        test_deadline);
}

TEST_CASE("connection: survives a server crash under load",
          "[integration][connection][single_server]") {
    redis_server srv;
    run_async(
        [&](asio::io_context& ioc) {
            return load_through_outage(ioc, srv, [&] {
                srv.kill();
                srv.start();
            });
        },
        test_deadline);
}

TEST_CASE("connection: a request cancelled before it is written never reaches the server",
          "[integration][connection][single_server]") {
    redis_server srv;
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            redcoord::connection conn(ioc.get_executor());
            outcome run;
            auto cfg = config_for(srv);
            cfg.health_check_interval = 0ms;  // no PING of its own: commands_written is exact
            start_run(conn, cfg, run);
            co_await require_pong(conn);

            srv.stop();
            co_await wait_for([&] { return !conn.is_connected(); }, "the connection to drop");
            const auto commands_before = conn.get_usage().commands_written;

            redcoord::request incr(redcoord::request::config{.timeout = 10s});
            incr.push("INCR", "counter");
            asio::cancellation_signal cancel;
            outcome out;
            conn.async_exec(incr, asio::bind_cancellation_slot(cancel.slot(), record(out)));
            co_await sleep_for(50ms);
            CHECK_FALSE(out.done);  // waiting for the reconnect
            cancel.emit(asio::cancellation_type::terminal);
            co_await wait_for([&] { return out.done; }, "the cancelled request");
            CHECK(out.ec == asio::error::operation_aborted);

            srv.start();
            co_await wait_for([&] { return conn.is_connected(); }, "the reconnect");
            auto [ec, counter] = co_await exec1<std::optional<std::string>>(conn, "GET", "counter");
            CHECK_FALSE(ec);
            CHECK_FALSE(counter.has_value());
            // Only the GET was written since the server went away.
            CHECK(conn.get_usage().commands_written == commands_before + 1);
            co_await shut_down(conn, run);
        },
        test_deadline);
}

TEST_CASE("connection: a request cancelled after it is written does not shift replies",
          "[integration][connection][single_server]") {
    redis_server srv;
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            redcoord::connection conn(ioc.get_executor());
            outcome run;
            auto cfg = config_for(srv);
            cfg.health_check_interval = 0ms;  // the paused server must not be declared dead
            start_run(conn, cfg, run);
            co_await require_pong(conn);

            srv.pause();
            const auto writes_before = conn.get_usage().writes;
            redcoord::request set;
            set.push("SET", "k", "v");
            asio::cancellation_signal cancel;
            outcome out;
            conn.async_exec(set, asio::bind_cancellation_slot(cancel.slot(), record(out)));
            co_await wait_for([&] { return conn.get_usage().writes > writes_before; },
                              "the SET to be written");
            CHECK_FALSE(out.done);
            cancel.emit(asio::cancellation_type::terminal);
            co_await wait_for([&] { return out.done; }, "the cancelled request");
            // It completed while the server, still paused, had not answered it.
            CHECK(out.ec == asio::error::operation_aborted);

            srv.resume();
            auto [get_ec, value] = co_await exec1<std::string>(conn, "GET", "k");
            CHECK_FALSE(get_ec);
            CHECK(value == "v");  // the command did run; its reply was discarded
            co_await require_pong(conn);
            CHECK(conn.get_usage().connects == 1);
            co_await shut_down(conn, run);
        },
        test_deadline);
}

TEST_CASE("connection: a request times out on a hung server",
          "[integration][connection][single_server]") {
    redis_server srv;
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            redcoord::connection conn(ioc.get_executor());
            outcome run;
            auto cfg = config_for(srv);
            cfg.health_check_interval = 0ms;  // the timeout, not the health check, must fire
            start_run(conn, cfg, run);
            co_await require_pong(conn);

            srv.pause();
            redcoord::request ping(redcoord::request::config{.timeout = 300ms});
            ping.push("PING", "late");
            redcoord::diagnostics diag;
            std::string reply;
            auto [ec, n] = co_await conn.async_exec(ping, reply, diag, nothrow);
            CHECK(ec == redcoord::error::timeout);
            CHECK_FALSE(diag.client_message().empty());

            srv.resume();
            co_await require_pong(conn);
            co_await shut_down(conn, run);
        },
        test_deadline);
}

TEST_CASE("connection: fail fast while disconnected, unless the request opts out",
          "[integration][connection][single_server]") {
    redis_server srv;
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            redcoord::connection conn(ioc.get_executor());
            outcome run;
            auto cfg = config_for(srv);
            cfg.fail_fast_when_disconnected = true;
            start_run(conn, cfg, run);
            // Until the first connect, fail-fast requests fail too.
            co_await wait_for([&] { return conn.is_connected(); }, "the connection");
            co_await require_pong(conn);

            srv.stop();
            co_await wait_for([&] { return !conn.is_connected(); }, "the connection to drop");
            redcoord::request ping;
            ping.push("PING");
            auto [ec, n] = co_await conn.async_exec(ping, redcoord::ignore, nothrow);
            CHECK(ec == redcoord::error::not_connected);

            redcoord::request patient(
                redcoord::request::config{.timeout = 10s, .fail_fast = false});
            patient.push("PING");
            std::string pong;
            outcome out;
            conn.async_exec(patient, pong, record(out));
            // Several reconnect attempts fail meanwhile; the request keeps waiting.
            co_await sleep_for(400ms);
            CHECK_FALSE(out.done);
            srv.start();
            co_await wait_for([&] { return out.done; }, "the patient request");
            CHECK_FALSE(out.ec);
            CHECK(pong == "PONG");
            co_await shut_down(conn, run);
        },
        test_deadline);
}

TEST_CASE("connection: the health check replaces a connection to a hung server",
          "[integration][connection][single_server]") {
    with_started_connection([](auto& conn, auto& srv, auto&) -> asio::awaitable<void> {
        // config_for: health_check_interval 200 ms
        co_await require_pong(conn);

        srv.pause();
        co_await sleep_for(1500ms);
        srv.resume();
        co_await wait_for([&] { return conn.get_usage().connects >= 2; }, "the reconnect");
        CHECK(conn.get_usage().connection_losses >= 1);
        co_await require_pong(conn);
    });
}

TEST_CASE("connection: MULTI/EXEC transactions", "[integration][connection]") {
    with_started_connection([](redcoord::connection& conn, auto&, auto&) -> asio::awaitable<void> {
        using redcoord::ignore_t;
        using exec_result = std::tuple<std::string, long long>;
        using exec_response = redcoord::response<ignore_t, ignore_t, ignore_t, exec_result>;

        // One hash tag: a transaction's keys lie in one slot on a cluster.
        redcoord::request tx;
        tx.push("MULTI");
        tx.push("SET", "{tx}:name", "hello");
        tx.push("INCR", "{tx}:count");
        tx.push("EXEC");
        exec_response resp;
        auto [ec, n] = co_await conn.async_exec(tx, resp, nothrow);
        CHECK_FALSE(ec);
        CHECK(std::get<3>(resp) == exec_result{"OK", 1});

        // INCR of a string fails inside EXEC; the SET before it still runs.
        redcoord::request failing;
        failing.push("MULTI");
        failing.push("SET", "{tx}:text", "abc");
        failing.push("INCR", "{tx}:text");
        failing.push("EXEC");
        redcoord::diagnostics diag;
        auto [fail_ec, m] = co_await conn.async_exec(failing, resp, diag, nothrow);
        CHECK(fail_ec == redcoord::error::server_error);
        INFO("server message: " << diag.server_message());
        CHECK(diag.server_message().find("not an integer") != std::string::npos);

        auto [get_ec, text] = co_await exec1<std::string>(conn, "GET", "{tx}:text");
        CHECK_FALSE(get_ec);
        CHECK(text == "abc");
    });
}

TEST_CASE("connection: server error replies carry the server's text",
          "[integration][connection]") {
    with_started_connection([](redcoord::connection& conn, auto&, auto&) -> asio::awaitable<void> {
        redcoord::request bad;
        bad.push("NOSUCHCOMMAND", "arg");
        redcoord::diagnostics diag;
        auto [ec, n] = co_await conn.async_exec(bad, redcoord::ignore, diag, nothrow);
        CHECK(ec == redcoord::error::server_error);
        INFO("server message: " << diag.server_message());
        CHECK(diag.server_message().find("unknown command") != std::string::npos);

        // The same request again, then another: the error did not upset the pipeline.
        auto [again_ec, m] = co_await conn.async_exec(bad, redcoord::ignore, diag, nothrow);
        CHECK(again_ec == redcoord::error::server_error);
        auto [set_ec, ok] = co_await exec1<std::string>(conn, "SET", "after-error", "yes");
        CHECK_FALSE(set_ec);
        CHECK(ok == "OK");
        co_await require_pong(conn);
    });
}

TEST_CASE("connection: async_run rejects a bad config", "[integration][connection]") {
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            redcoord::connection conn(ioc.get_executor());
            redcoord::config cfg;
            cfg.connect_retry = 0;
            outcome run;
            start_run(conn, cfg, run);
            co_await wait_for([&] { return run.done; }, "async_run to fail");
            CHECK(run.ec == redcoord::error::bad_config);
            CHECK(conn.run_diagnostics().client_message().find("connect_retry") !=
                  std::string::npos);
        },
        test_deadline);
}

TEST_CASE("connection: async_run gives up on a closed port with abort_connect",
          "[integration][connection][single_server]") {
    redis_server srv;
    srv.stop();  // its port stays reserved for us, with nothing listening
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            redcoord::connection conn(ioc.get_executor());
            redcoord::request ping;
            ping.push("PING");
            std::vector<outcome> outs(3);
            for (auto& out : outs) conn.async_exec(ping, record(out));  // before async_run

            auto cfg = config_for(srv);
            cfg.abort_connect = true;
            cfg.connect_retry = 2;
            outcome run;
            start_run(conn, cfg, run);
            co_await wait_for([&] { return run.done; }, "async_run to give up");
            CHECK(run.ec == asio::error::connection_refused);
            co_await wait_for(
                [&] {
                    return std::all_of(outs.begin(), outs.end(),
                                       [](const outcome& o) { return o.done; });
                },
                "the pending requests to fail");
            for (const auto& out : outs) CHECK(out.ec == asio::error::connection_refused);
        },
        test_deadline);
}

TEST_CASE("connection: async_run keeps trying without abort_connect",
          "[integration][connection][single_server]") {
    redis_server srv;
    srv.stop();
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            redcoord::connection conn(ioc.get_executor());
            auto cfg = config_for(srv);
            cfg.abort_connect = false;
            cfg.connect_retry = 1;
            outcome run;
            start_run(conn, cfg, run);

            redcoord::request ping(redcoord::request::config{.timeout = 10s});
            ping.push("PING");
            std::string pong;
            outcome out;
            conn.async_exec(ping, pong, record(out));
            co_await sleep_for(400ms);  // several attempts fail meanwhile
            CHECK_FALSE(run.done);
            CHECK_FALSE(conn.is_connected());

            srv.start();
            co_await wait_for([&] { return out.done; }, "the request made before the server");
            CHECK_FALSE(out.ec);
            CHECK(pong == "PONG");
            CHECK(conn.get_usage().connects == 1);
            co_await require_pong(conn);
            co_await shut_down(conn, run);
        },
        test_deadline);
}

TEST_CASE("connection: cancel() fails outstanding requests, then exec reports run_not_started",
          "[integration][connection][single_server]") {
    redis_server srv;
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            redcoord::connection conn(ioc.get_executor());
            outcome run;
            auto cfg = config_for(srv);
            cfg.health_check_interval = 0ms;
            start_run(conn, cfg, run);
            co_await require_pong(conn);

            srv.pause();
            const auto writes_before = conn.get_usage().writes;
            redcoord::request ping;
            ping.push("PING");
            std::vector<outcome> outs(3);
            for (auto& out : outs) conn.async_exec(ping, record(out));
            co_await wait_for([&] { return conn.get_usage().writes > writes_before; },
                              "the requests to be written");
            conn.cancel();
            co_await wait_for([&] { return run.done; }, "async_run to end");
            CHECK(run.ec == asio::error::operation_aborted);
            co_await wait_for(
                [&] {
                    return std::all_of(outs.begin(), outs.end(),
                                       [](const outcome& o) { return o.done; });
                },
                "the outstanding requests");
            for (const auto& out : outs) CHECK(out.ec == asio::error::operation_aborted);
            srv.resume();

            auto [ec, n] = co_await conn.async_exec(ping, redcoord::ignore, nothrow);
            CHECK(ec == redcoord::error::run_not_started);
        },
        test_deadline);
}

TEST_CASE("connection: requests made before async_run are sent once it runs",
          "[integration][connection]") {
    redis_server srv;
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            redcoord::connection conn(ioc.get_executor());
            redcoord::request set_get;
            set_get.push("SET", "early", "before async_run");
            set_get.push("GET", "early");
            redcoord::response<redcoord::ignore_t, std::string> resp;
            redcoord::request ping;
            ping.push("PING");
            std::string pong;
            outcome first, second;
            conn.async_exec(set_get, resp, record(first));
            conn.async_exec(ping, pong, record(second));
            co_await sleep_for(50ms);
            CHECK_FALSE(first.done);  // waits for async_run
            conn.async_run(config_for(srv), asio::detached);
            co_await wait_for([&] { return first.done && second.done; },
                              "the requests made before async_run");
            INFO(first.ec.message() << " / " << second.ec.message());
            CHECK_FALSE(first.ec);
            CHECK(std::get<1>(resp) == "before async_run");
            CHECK_FALSE(second.ec);
            CHECK(pong == "PONG");
            CHECK(srv.cli({"GET", "early"}) == "before async_run");
            conn.cancel();
        },
        test_deadline);
}

TEST_CASE("connection: cancel() fails requests made before async_run",
          "[integration][connection]") {
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            redcoord::connection conn(ioc.get_executor());
            redcoord::request ping;
            ping.push("PING");
            outcome out;
            conn.async_exec(ping, record(out));
            co_await sleep_for(50ms);
            CHECK_FALSE(out.done);  // waits for async_run
            conn.cancel();
            co_await wait_for([&] { return out.done; }, "the pending request");
            CHECK(out.ec == asio::error::operation_aborted);

            auto [ec, n] = co_await conn.async_exec(ping, redcoord::ignore, nothrow);
            CHECK(ec == redcoord::error::run_not_started);
        },
        test_deadline);
}

TEST_CASE("connection: retry_on_connection_lost re-sends a written request after a crash",
          "[integration][connection][single_server]") {
    redis_server srv;
    run_async(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            redcoord::connection conn(ioc.get_executor());
            outcome run;
            auto cfg = config_for(srv);
            cfg.health_check_interval = 0ms;  // the crash, not the health check, drops it
            start_run(conn, cfg, run);
            co_await require_pong(conn);

            srv.pause();
            const auto writes_before = conn.get_usage().writes;
            redcoord::request retried(
                redcoord::request::config{.timeout = 10s, .retry_on_connection_lost = true});
            retried.push("INCR", "retried");
            redcoord::request plain(redcoord::request::config{.timeout = 10s});
            plain.push("INCR", "plain");
            long long retried_value = 0, plain_value = 0;
            outcome retried_out, plain_out;
            conn.async_exec(retried, retried_value, record(retried_out));
            conn.async_exec(plain, plain_value, record(plain_out));
            co_await wait_for([&] { return conn.get_usage().writes > writes_before; },
                              "the requests to be written");

            srv.kill();  // the paused server never ran them
            srv.start();
            co_await wait_for([&] { return retried_out.done && plain_out.done; },
                              "both requests");
            CHECK(plain_out.ec == redcoord::error::connection_lost);
            CHECK_FALSE(retried_out.ec);
            CHECK(retried_value == 1);
            CHECK(conn.get_usage().connects >= 2);
            co_await require_pong(conn);
            co_await shut_down(conn, run);
        },
        test_deadline);
}
