// Job barriers and job dependencies (the reference's IJobBarrier and IJobDependencyManager):
// jobs of a batch arrive at a counter and a waiter continues once enough have arrived; a job
// records its completion by id and a dependent job waits until all its dependencies succeeded.
// Both wait by push.
#pragma once

#include <redcoord/diagnostics.hpp>
#include <redcoord/error.hpp>
#include <redcoord/limits.hpp>
#include <redcoord/session.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>

#include <chrono>
#include <cstdint>
#include <exception>
#include <string>
#include <utility>
#include <vector>

namespace redcoord {

/// Barrier and dependency settings. Defaults in comments.
struct barrier_options {
    /// TTL of a barrier's counter, renewed by each arrival, and of a job's completion record
    /// (24 h). Must be positive.
    std::chrono::milliseconds ttl{std::chrono::hours(24)};
};

/// Batch barriers of one session.
///
/// A barrier is the counter `{prefix}barrier:{batch}` (PX ttl, renewed by each arrival); each
/// arrival increments it and publishes the new count on `{{prefix}barrier:{batch}}:arrived`, in
/// one Lua script. A waiter subscribes to that channel, then reads the counter; the only timer
/// is its deadline.
///
/// The handle is light; several may share a session. Thread safety: none; use it from the
/// session's executor. Every operation completes through the handler's associated executor.
/// Errors arrive as error_with_diagnostics in the exception_ptr: error::invalid_argument (bad
/// input, named in the message), error::timeout (the deadline), error::session_closed,
/// connection errors. Cancellation: terminal, partial and total.
class barrier {
public:
    /// Throws error_with_diagnostics (error::bad_config) naming a bad option.
    explicit barrier(session& s, barrier_options opts = {});

    session& get_session() const noexcept { return *session_; }
    const barrier_options& options() const noexcept { return opts_; }

    /// One arrival at batch. Completion signature: void(std::exception_ptr, std::int64_t
    /// arrivals): the count including this one.
    template <class Token = boost::asio::deferred_t>
    auto async_arrive(std::string batch, Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(std::exception_ptr, std::int64_t)>(
            [this](auto handler, std::string batch) {
                arrive_impl(std::move(batch), std::move(handler));
            },
            token, std::move(batch));
    }

    /// Waits until batch has at least total arrivals. Completion signature:
    /// void(std::exception_ptr, std::int64_t arrivals). error::invalid_argument for an empty
    /// batch or a total below 1; error::timeout at the deadline.
    template <class Token = boost::asio::deferred_t>
    auto async_wait(std::string batch, std::int64_t total,
                    std::chrono::steady_clock::time_point deadline, Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(std::exception_ptr, std::int64_t)>(
            [this](auto handler, std::string batch, std::int64_t total,
                   std::chrono::steady_clock::time_point deadline) {
                wait_impl(std::move(batch), total, deadline, std::move(handler));
            },
            token, std::move(batch), total, deadline);
    }
    template <class Token = boost::asio::deferred_t>
    auto async_wait(std::string batch, std::int64_t total, std::chrono::milliseconds timeout,
                    Token&& token = {}) {
        return async_wait(std::move(batch), total, detail::deadline_in(timeout),
                          std::forward<Token>(token));
    }

private:
    using count_handler =
        boost::asio::any_completion_handler<void(std::exception_ptr, std::int64_t)>;
    void arrive_impl(std::string batch, count_handler handler);
    void wait_impl(std::string batch, std::int64_t total,
                   std::chrono::steady_clock::time_point deadline, count_handler handler);

    session* session_;
    barrier_options opts_;
};

/// Job dependencies of one session.
///
/// A job's completion is the hash `{prefix}job:{id}` (fields `status`: "succeeded" or
/// "failed", `reason`, `completed_ms`; PX ttl), written with a publication of the status on
/// `{{prefix}job:{id}}:done` in one Lua script. A waiter subscribes to the channels of all the
/// dependencies, then reads their records; the only timer is its deadline.
///
/// Thread safety, completion and cancellation: as barrier.
class dependencies {
public:
    /// Throws error_with_diagnostics (error::bad_config) naming a bad option.
    explicit dependencies(session& s, barrier_options opts = {});

    session& get_session() const noexcept { return *session_; }
    const barrier_options& options() const noexcept { return opts_; }

    /// Records that job_id completed, successfully or not (reason: a text kept with a
    /// failure), and tells the waiters. A later call replaces the record. Completion signature:
    /// void(std::exception_ptr).
    template <class Token = boost::asio::deferred_t>
    auto async_complete(std::string job_id, bool success, std::string reason = {},
                        Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(std::exception_ptr)>(
            [this](auto handler, std::string job_id, bool success, std::string reason) {
                complete_impl(std::move(job_id), success, std::move(reason),
                              std::move(handler));
            },
            token, std::move(job_id), success, std::move(reason));
    }

    /// Waits until every job of deps completed successfully; job_id names the dependent job
    /// in messages. Completion signature: void(std::exception_ptr). error::dependency_failed
    /// (the message names job_id, the failed dependency and its reason) as soon as one
    /// dependency failed; error::timeout at the deadline (the message names the dependencies
    /// still missing); error::invalid_argument for an empty id in job_id or deps. No
    /// dependencies: completes at once.
    template <class Token = boost::asio::deferred_t>
    auto async_wait_dependencies(std::string job_id, std::vector<std::string> deps,
                                 std::chrono::steady_clock::time_point deadline,
                                 Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(std::exception_ptr)>(
            [this](auto handler, std::string job_id, std::vector<std::string> deps,
                   std::chrono::steady_clock::time_point deadline) {
                wait_impl(std::move(job_id), std::move(deps), deadline, std::move(handler));
            },
            token, std::move(job_id), std::move(deps), deadline);
    }
    template <class Token = boost::asio::deferred_t>
    auto async_wait_dependencies(std::string job_id, std::vector<std::string> deps,
                                 std::chrono::milliseconds timeout, Token&& token = {}) {
        return async_wait_dependencies(std::move(job_id), std::move(deps),
                                       detail::deadline_in(timeout), std::forward<Token>(token));
    }

private:
    using void_handler = boost::asio::any_completion_handler<void(std::exception_ptr)>;
    void complete_impl(std::string job_id, bool success, std::string reason,
                       void_handler handler);
    void wait_impl(std::string job_id, std::vector<std::string> deps,
                   std::chrono::steady_clock::time_point deadline, void_handler handler);

    session* session_;
    barrier_options opts_;
};

}  // namespace redcoord
