// Job barriers and job dependencies (the reference's IJobBarrier and IJobDependencyManager):
// jobs of a batch arrive at a counter and a waiter continues once enough have arrived; a job
// records its completion by id and a dependent job waits until all its dependencies succeeded.
// Both wait by push.
#pragma once

#include <redcoord/detail/with_diagnostics_handler.hpp>
#include <redcoord/diagnostics.hpp>
#include <redcoord/error.hpp>
#include <redcoord/limits.hpp>
#include <redcoord/session.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
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
/// A barrier is the counter `<prefix>barrier:{<batch>}` (PX ttl, renewed by each arrival); each
/// arrival increments it and publishes the new count on `<prefix>barrier:{<batch>}:arrived`, in
/// one Lua script. A waiter subscribes to that channel, then reads the counter; the only timer
/// is its deadline.
///
/// The handle is light; several may share a session. Thread safety: none; use it from the
/// session's executor. Every operation completes through the handler's associated executor.
///
/// Errors (docs/connection.md, "Errors"): every operation completes with an error_code first:
/// error::invalid_argument (bad input), error::timeout (the deadline), error::session_closed,
/// connection errors. The overloads taking a diagnostics& fill it on error with the server's
/// text or a message naming the bad input or what the deadline missed;
/// redcoord::with_diagnostics(token) throws error_with_diagnostics instead. Only the operations
/// that run a user's function (async_run_exclusive, async_get_or_set, ...) complete with an
/// exception_ptr, that function's own exception; none here does. Objects passed by reference
/// (diagnostics) must outlive the operation. Cancellation: terminal, partial and total.
class barrier {
public:
    /// Throws error_with_diagnostics (error::bad_config) naming a bad option.
    explicit barrier(session& s, barrier_options opts = {});

    session& get_session() const noexcept { return *session_; }
    const barrier_options& options() const noexcept { return opts_; }

    /// One arrival at batch. Completion signature: void(error_code, std::int64_t arrivals):
    /// the count including this one.
    template <class Token = boost::asio::deferred_t>
    auto async_arrive(std::string batch, diagnostics& diag, Token&& token = {}) {
        return initiate_arrive(std::move(batch), &diag, std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_arrive(std::string batch, Token&& token = {}) {
        return initiate_arrive(std::move(batch), nullptr, std::forward<Token>(token));
    }

    /// Waits until batch has at least total arrivals. Completion signature:
    /// void(error_code, std::int64_t arrivals). error::invalid_argument for an empty batch or
    /// a total below 1; error::timeout at the deadline (diag says how many arrived).
    template <class Token = boost::asio::deferred_t>
    auto async_wait(std::string batch, std::int64_t total,
                    std::chrono::steady_clock::time_point deadline, diagnostics& diag,
                    Token&& token = {}) {
        return initiate_wait(std::move(batch), total, deadline, &diag,
                             std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_wait(std::string batch, std::int64_t total,
                    std::chrono::steady_clock::time_point deadline, Token&& token = {}) {
        return initiate_wait(std::move(batch), total, deadline, nullptr,
                             std::forward<Token>(token));
    }
    /// As above, with the deadline timeout from now.
    template <class Token = boost::asio::deferred_t>
    auto async_wait(std::string batch, std::int64_t total, std::chrono::milliseconds timeout,
                    diagnostics& diag, Token&& token = {}) {
        return initiate_wait(std::move(batch), total, detail::deadline_in(timeout), &diag,
                             std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_wait(std::string batch, std::int64_t total, std::chrono::milliseconds timeout,
                    Token&& token = {}) {
        return initiate_wait(std::move(batch), total, detail::deadline_in(timeout), nullptr,
                             std::forward<Token>(token));
    }

private:
    using count_handler =
        boost::asio::any_completion_handler<void(boost::system::error_code, std::int64_t)>;

    template <class Token>
    auto initiate_arrive(std::string batch, diagnostics* diag, Token&& token) {
        return detail::initiate_with_diagnostics<void(boost::system::error_code, std::int64_t)>(
            token, diag, [this](auto&&... a) { arrive_impl(std::move(a)...); },
            std::move(batch));
    }

    template <class Token>
    auto initiate_wait(std::string batch, std::int64_t total,
                       std::chrono::steady_clock::time_point deadline, diagnostics* diag,
                       Token&& token) {
        return detail::initiate_with_diagnostics<void(boost::system::error_code, std::int64_t)>(
            token, diag, [this](auto&&... a) { wait_impl(std::move(a)...); },
            std::move(batch), total, deadline);
    }

    // diag: the caller's diagnostics, or nullptr (the operation then writes its own).
    void arrive_impl(std::string batch, diagnostics* diag, count_handler handler);
    void wait_impl(std::string batch, std::int64_t total,
                   std::chrono::steady_clock::time_point deadline, diagnostics* diag,
                   count_handler handler);

    session* session_;
    barrier_options opts_;
};

/// Job dependencies of one session.
///
/// A job's completion is the hash `<prefix>job:{<id>}` (fields `status`: "succeeded" or
/// "failed", `reason`, `completed_ms`; PX ttl), written with a publication of the status on
/// `<prefix>job:{<id>}:done` in one Lua script. A waiter subscribes to the channels of all the
/// dependencies, then reads their records; the only timer is its deadline.
///
/// Thread safety, completion, errors and cancellation: as barrier.
class dependencies {
public:
    /// Throws error_with_diagnostics (error::bad_config) naming a bad option.
    explicit dependencies(session& s, barrier_options opts = {});

    session& get_session() const noexcept { return *session_; }
    const barrier_options& options() const noexcept { return opts_; }

    /// Records that job_id completed, successfully or not (reason: a text kept with a
    /// failure), and tells the waiters. A later call replaces the record. Completion signature:
    /// void(error_code).
    template <class Token = boost::asio::deferred_t>
    auto async_complete(std::string job_id, bool success, std::string reason, diagnostics& diag,
                        Token&& token = {}) {
        return initiate_complete(std::move(job_id), success, std::move(reason), &diag,
                                 std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_complete(std::string job_id, bool success, std::string reason = {},
                        Token&& token = {}) {
        return initiate_complete(std::move(job_id), success, std::move(reason), nullptr,
                                 std::forward<Token>(token));
    }

    /// Waits until every job of deps completed successfully; job_id names the dependent job
    /// in messages. Completion signature: void(error_code). error::dependency_failed (diag
    /// names job_id, the failed dependency and its reason) as soon as one dependency failed;
    /// error::timeout at the deadline (diag names the dependencies still missing);
    /// error::invalid_argument for an empty id in job_id or deps. No dependencies: completes
    /// at once.
    template <class Token = boost::asio::deferred_t>
    auto async_wait_dependencies(std::string job_id, std::vector<std::string> deps,
                                 std::chrono::steady_clock::time_point deadline,
                                 diagnostics& diag, Token&& token = {}) {
        return initiate_wait(std::move(job_id), std::move(deps), deadline, &diag,
                             std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_wait_dependencies(std::string job_id, std::vector<std::string> deps,
                                 std::chrono::steady_clock::time_point deadline,
                                 Token&& token = {}) {
        return initiate_wait(std::move(job_id), std::move(deps), deadline, nullptr,
                             std::forward<Token>(token));
    }
    /// As above, with the deadline timeout from now.
    template <class Token = boost::asio::deferred_t>
    auto async_wait_dependencies(std::string job_id, std::vector<std::string> deps,
                                 std::chrono::milliseconds timeout, diagnostics& diag,
                                 Token&& token = {}) {
        return initiate_wait(std::move(job_id), std::move(deps), detail::deadline_in(timeout),
                             &diag, std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_wait_dependencies(std::string job_id, std::vector<std::string> deps,
                                 std::chrono::milliseconds timeout, Token&& token = {}) {
        return initiate_wait(std::move(job_id), std::move(deps), detail::deadline_in(timeout),
                             nullptr, std::forward<Token>(token));
    }

private:
    using void_handler = boost::asio::any_completion_handler<void(boost::system::error_code)>;

    template <class Token>
    auto initiate_complete(std::string job_id, bool success, std::string reason,
                           diagnostics* diag, Token&& token) {
        return detail::initiate_with_diagnostics<void(boost::system::error_code)>(
            token, diag, [this](auto&&... a) { complete_impl(std::move(a)...); },
            std::move(job_id), success, std::move(reason));
    }

    template <class Token>
    auto initiate_wait(std::string job_id, std::vector<std::string> deps,
                       std::chrono::steady_clock::time_point deadline, diagnostics* diag,
                       Token&& token) {
        return detail::initiate_with_diagnostics<void(boost::system::error_code)>(
            token, diag, [this](auto&&... a) { wait_impl(std::move(a)...); },
            std::move(job_id), std::move(deps), deadline);
    }

    // diag: the caller's diagnostics, or nullptr (the operation then writes its own).
    void complete_impl(std::string job_id, bool success, std::string reason, diagnostics* diag,
                       void_handler handler);
    void wait_impl(std::string job_id, std::vector<std::string> deps,
                   std::chrono::steady_clock::time_point deadline, diagnostics* diag,
                   void_handler handler);

    session* session_;
    barrier_options opts_;
};

}  // namespace redcoord
