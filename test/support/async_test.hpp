// Runs a test coroutine on its own io_context under a deadline.
//
// Never write co_await inside CHECK()/REQUIRE(): g++ 12 evaluates the operand of a co_await
// in Catch's macro twice (once more in its `false && (expr)` tail), so the operation runs
// twice. Await into a variable, then check it.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <exception>
#include <utility>

namespace redcoord::test {

/// Runs a coroutine on a fresh io_context under a deadline: a hang fails the test instead of
/// blocking CI. `f` is called as f(ioc) and must return boost::asio::awaitable<void>; it must
/// outlive the call (a lambda passed inline does). An exception thrown by the coroutine,
/// including a failed REQUIRE, is rethrown here so Catch2 reports it.
template <class F>
void run_async(F&& f, std::chrono::milliseconds deadline = std::chrono::seconds(60)) {
    boost::asio::io_context ioc;
    bool done = false;
    std::exception_ptr error;
    boost::asio::co_spawn(ioc, f(ioc), [&](std::exception_ptr e) {
        done = true;
        error = e;
        // Other work (a connection's run loop, pending timers) may still be queued: the test
        // is over, so do not wait for it.
        ioc.stop();
    });

    const auto until = std::chrono::steady_clock::now() + deadline;
    ioc.run_until(until);

    if (error) std::rethrow_exception(error);
    if (!done && std::chrono::steady_clock::now() >= until) {
        FAIL("test coroutine exceeded its deadline of " << deadline.count() << " ms");
    }
    if (!done) {
        // The io_context ran out of work with the coroutine still suspended: it awaited an
        // operation whose completion can never come.
        FAIL("test coroutine never completed: its io_context ran out of work");
    }
}

}  // namespace redcoord::test
