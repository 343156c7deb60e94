// What the Redis Cluster tests share: a connection config for the fixture's cluster, and a
// thread for the fixture's slow steps (slot migrations through redis-cli) while the clients
// run on the test's io_context.
#pragma once

#include "connection_helpers.hpp"
#include "redis_cluster.hpp"
#include "short_timeouts.hpp"

#include <redcoord/config.hpp>
#include <redcoord/redcoord.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <string>
#include <thread>
#include <utility>

namespace redcoord::test {

inline redcoord::config cluster_config(const redis_cluster& c) {
    using namespace std::chrono_literals;
    auto cfg = redcoord::parse_config(c.seeds() + ",cluster=true");
    cfg = with_short_timeouts(std::move(cfg));
    cfg.request_timeout = 10s;
    return cfg;
}

/// Runs `steps` on a thread of its own once `phase` leaves 0; done() tells when it is over
/// (returned or thrown). The destructor joins it; when the test ended with phase still 0 (the
/// clients failed before they began), phase becomes -1 first and `steps` does not run.
/// finish() joins and rethrows what `steps` threw.
class side_thread {
public:
    side_thread(std::atomic<int>& phase, std::function<void()> steps)
        : phase_(phase), thread_([this, steps = std::move(steps)] {
              while (phase_ == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
              if (phase_ < 0) return;
              try {
                  steps();
              } catch (...) {
                  error_ = std::current_exception();
              }
              done_ = true;
          }) {}
    ~side_thread() {
        int expected = 0;
        phase_.compare_exchange_strong(expected, -1);
        if (thread_.joinable()) thread_.join();
    }
    side_thread(const side_thread&) = delete;
    side_thread& operator=(const side_thread&) = delete;

    /// `steps` has returned or thrown.
    bool done() const noexcept { return done_; }

    void finish() {
        if (thread_.joinable()) thread_.join();
        if (error_) std::rethrow_exception(error_);
    }

private:
    std::atomic<int>& phase_;
    std::exception_ptr error_;
    std::atomic<bool> done_{false};
    std::thread thread_;
};

/// One client of the cluster: its own connection, running, and a session on it as `node`.
struct cluster_client {
    redcoord::connection conn;
    bool running;  // conn runs before the session is made on it
    redcoord::session session;
    cluster_client(boost::asio::io_context& ioc, const redis_cluster& c, std::string node)
        : conn(ioc.get_executor()), running(run(conn, c)), session(conn, as_node(std::move(node))) {}
    static bool run(redcoord::connection& conn, const redis_cluster& c) {
        conn.async_run(cluster_config(c), boost::asio::detached);
        return true;
    }
    boost::asio::awaitable<void> close() {
        co_await session.async_close(nothrow);
        conn.cancel();
    }
};

/// A lock acquisition left running in the background: finished() once it completed, with the
/// lease in `got` or the reason in `failure`.
struct background_acquisition {
    bool acquired = false;
    std::string failure;
    redcoord::lease got;

    void start(boost::asio::io_context& ioc, redcoord::lock_provider& locks, std::string name,
               redcoord::acquire_options o) {
        boost::asio::co_spawn(
            ioc,
            [this, &locks, name = std::move(name), o]() -> boost::asio::awaitable<void> {
                redcoord::diagnostics d;
                auto [ec, l] = co_await locks.async_acquire(name, o, d, nothrow);
                if (ec) failure = describe(ec, d);
                got = std::move(l);
                acquired = !ec;
            },
            boost::asio::detached);
    }
    bool finished() const { return acquired || !failure.empty(); }
    /// Waits until it finished.
    boost::asio::awaitable<void> finish() {
        co_await wait_until([this] { return finished(); });
    }
};

}  // namespace redcoord::test
