// Distributed counting semaphores: at most N holders of a resource at a time.
#pragma once

#include <redcoord/detail/with_diagnostics_handler.hpp>
#include <redcoord/diagnostics.hpp>
#include <redcoord/error.hpp>
#include <redcoord/lease.hpp>
#include <redcoord/lock.hpp>
#include <redcoord/session.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>

#include <chrono>
#include <cstdint>
#include <string>

namespace redcoord {

/// Semaphore settings. Defaults in comments. (No std::string members: see acquire_options.)
struct semaphore_options {
    /// TTL of a permit when the caller gives none (5 min).
    std::chrono::milliseconds default_ttl{std::chrono::minutes(5)};
    /// How long a caller that gives no wait waits: retry_delay * max_retries (100 ms * 10).
    /// retry_delay is also the fallback timer's floor (waiting is woken by the release's push).
    std::chrono::milliseconds retry_delay{100};
    int max_retries = 10;
    /// Renew held permits by the watchdog (true). Without it a permit ends at its TTL and its
    /// lease is then marked lost.
    bool enable_extension = true;
    /// Renewal interval; zero: the TTL times session_options::renew_fraction (a third). With
    /// enable_extension, shorter than default_ttl (a permit would end before its first
    /// renewal). Every duration here is at most max_duration, and so is the default wait.
    std::chrono::milliseconds extension_interval{0};
};

/// Counting semaphores on one session. Every permit is a lease of its own (lease.hpp): its own
/// owner token, a fencing token from the semaphore's counter (incremented by the granting
/// script, so permits granted later have larger tokens), renewal by the session's watchdog and
/// the lost signal.
///
/// The number of permits is given by each call (permits_total), as in the reference's
/// semaphores: callers of one semaphore should agree on it.
///
/// Key layout (one cluster hash slot):
/// | key | type | content |
/// | --- | --- | --- |
/// | `<prefix>semaphore:{<name>}` | zset | holder owners scored by their expiry (server ms) |
/// | `<prefix>semaphore:{<name>}:fence` | string | the fencing counter (expires a day after its last token; docs/locks.md) |
/// | `<prefix>semaphore:{<name>}:released` | channel | publishes the owner when a permit is given back |
/// | `<prefix>semaphore:{<name>}:holders` | hash | each holder's "<fence> <since, server ms> <node>", for the monitor |
/// A holder that died (its lease not renewed) gives its permit back when its score passes:
/// the scripts remove lapsed holders before counting.
///
/// Waiting: a waiter subscribes to the semaphore's channel (a push on the shared connection)
/// and tries again when a release publishes; a fallback timer bounded by the earliest holder's
/// remaining TTL covers a lost message. Within a process only one waiter per semaphore asks
/// Redis at a time; a grant that leaves permits free wakes the next one at once, and a local
/// release wakes the next local waiter without waiting for its push.
///
/// acquire_options: ttl, wait and owner as for the mutex (a given owner must be unique per
/// permit); reentrant is not supported (invalid_argument).
///
/// The provider is a light handle; several may share a session. Thread safety: none; use it
/// from the session's executor. Every operation completes through the handler's associated
/// executor.
class semaphore_provider {
public:
    /// Throws error_with_diagnostics (error::bad_config) naming a bad option.
    explicit semaphore_provider(session& s, semaphore_options opts = {});

    session& get_session() const noexcept { return *session_; }
    const semaphore_options& options() const noexcept { return opts_; }

    /// Waits for one permit of `name` (of permits_total) until opts.wait passes.
    /// Completion signature: void(error_code, lease): error::acquire_timeout at the deadline,
    /// error::lease_lost when a grant's validity ended before the handler could run,
    /// error::invalid_argument for an empty name, permits_total <= 0 or a negative ttl or wait
    /// (diag names it), connection errors as async_exec. Cancellation: terminal, partial and
    /// total (a permit granted just before is released, never leaked).
    template <class Token = boost::asio::deferred_t>
    auto async_acquire(std::string name, std::int64_t permits_total, acquire_options opts,
                       diagnostics& diag, Token&& token = {}) {
        return initiate(std::move(name), permits_total, opts, &diag, false, std::move(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_acquire(std::string name, std::int64_t permits_total, acquire_options opts = {},
                       Token&& token = {}) {
        return initiate(std::move(name), permits_total, opts, nullptr, false, std::move(token));
    }

    /// One attempt. Completion signature: void(error_code, lease): an empty lease when every
    /// permit is taken (not an error).
    template <class Token = boost::asio::deferred_t>
    auto async_try_acquire(std::string name, std::int64_t permits_total, acquire_options opts,
                           diagnostics& diag, Token&& token = {}) {
        return initiate(std::move(name), permits_total, opts, &diag, true, std::move(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_try_acquire(std::string name, std::int64_t permits_total,
                           acquire_options opts = {}, Token&& token = {}) {
        return initiate(std::move(name), permits_total, opts, nullptr, true, std::move(token));
    }

    /// Permits of `name` free now, out of permits_total (holders whose lease lapsed do not
    /// count). Completion signature: void(error_code, std::int64_t): error::invalid_argument
    /// for an empty name or permits_total <= 0 (diag names it).
    template <class Token = boost::asio::deferred_t>
    auto async_available(std::string name, std::int64_t permits_total, diagnostics& diag,
                         Token&& token = {}) {
        return boost::asio::async_initiate<Token,
                                           void(boost::system::error_code, std::int64_t)>(
            [this](auto handler, std::string name, std::int64_t permits, diagnostics* diag) {
                diag = detail::diagnostics_for(handler, diag);
                available_impl(std::move(name), permits, diag, std::move(handler));
            },
            token, std::move(name), permits_total, &diag);
    }
    template <class Token = boost::asio::deferred_t>
    auto async_available(std::string name, std::int64_t permits_total, Token&& token = {}) {
        return boost::asio::async_initiate<Token,
                                           void(boost::system::error_code, std::int64_t)>(
            [this](auto handler, std::string name, std::int64_t permits) {
                diagnostics* diag = detail::diagnostics_for(handler, nullptr);
                available_impl(std::move(name), permits, diag, std::move(handler));
            },
            token, std::move(name), permits_total);
    }

private:
    using acquire_handler =
        boost::asio::any_completion_handler<void(boost::system::error_code, lease)>;
    using count_handler =
        boost::asio::any_completion_handler<void(boost::system::error_code, std::int64_t)>;

    template <class Token>
    auto initiate(std::string name, std::int64_t permits, acquire_options opts,
                  diagnostics* diag, bool once, Token&& token) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, lease)>(
            [this](auto handler, std::string name, std::int64_t permits, acquire_options opts,
                   diagnostics* diag, bool once) {
                diag = detail::diagnostics_for(handler, diag);
                acquire_impl(std::move(name), permits, opts, diag, once, std::move(handler));
            },
            token, std::move(name), permits, opts, diag, once);
    }

    void acquire_impl(std::string name, std::int64_t permits, acquire_options opts,
                      diagnostics* diag, bool once, acquire_handler handler);
    void available_impl(std::string name, std::int64_t permits, diagnostics* diag,
                        count_handler handler);

    session* session_;
    semaphore_options opts_;
};

}  // namespace redcoord
