// A rate limiter shared by the nodes of a deployment: at most `limit` permits per sliding
// window, counted in Redis on the server's clock, so every node sees the same budget.
#pragma once

#include <redcoord/detail/with_diagnostics_handler.hpp>
#include <redcoord/diagnostics.hpp>
#include <redcoord/error.hpp>
#include <redcoord/session.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>

namespace redcoord {

/// A rate: at most `limit` permits in any span of `window`. Given with each operation, so one
/// limiter serves names with different rates; the callers of one name must agree on it.
struct rate_limit {
    /// Permits per window. Must be at least 1.
    std::uint32_t limit = 1;
    /// The sliding window. Must be in [1 ms, max_duration].
    std::chrono::milliseconds window{std::chrono::seconds(1)};
};

/// What async_try_acquire decided.
struct rate_decision {
    /// True when the permits were taken.
    bool allowed = false;
    /// Refused: how long until enough permits leave the window (at least 1 ms; others may
    /// take them first). Allowed: zero.
    std::chrono::milliseconds retry_after{0};
    /// Allowed: the permits left in the window after this take. Refused: zero.
    std::uint32_t remaining = 0;
    /// The server's clock (Unix ms) when the decision was made: the time the permits count
    /// from when allowed.
    std::chrono::milliseconds server_time{0};
};

/// Cluster-wide rate limiters on one session, one per name. A limiter is the sorted set
/// `<prefix>rate:{<name>}`, one member per permit taken, scored by the server time (Unix ms)
/// at which it was taken; every decision is one Lua script (src/lua/lib/rate_window.lua) that
/// reads the server's clock, drops the permits older than the window and takes the new ones
/// only when the window then holds at most `limit`. So no span of `window` ever holds more
/// than `limit` permits, whichever nodes took them (an exact sliding-window log, not an
/// estimate). The key expires one window after its last permit. The name is the key's hash
/// tag, so a limiter lives in one Redis Cluster slot.
///
/// The handle is light; several may share a session. Thread safety: none; use it from the
/// session's executor. Every operation completes through the handler's associated executor.
///
/// Errors (docs/connection.md, "Errors"): every operation completes with an error_code first:
/// error::invalid_argument (an empty name, a limit below 1, a window or timeout out of range,
/// permits outside [1, limit]: the diagnostics name the field and the value),
/// error::acquire_timeout (async_acquire's deadline), error::session_closed, connection errors.
/// The overloads taking a diagnostics& fill it on error; redcoord::with_diagnostics(token)
/// throws error_with_diagnostics instead. Objects passed by reference (diagnostics) must
/// outlive the operation.
class rate_limiter {
public:
    explicit rate_limiter(session& s) noexcept : session_(&s) {}

    session& get_session() const noexcept { return *session_; }

    /// Takes `permits` permits of `name` now, all or none, without waiting.
    /// Completion signature: void(error_code, rate_decision); a refusal is not an error.
    /// Cancellation: terminal, partial and total; a cancelled call may still have taken its
    /// permits (the script may have run).
    template <class Token = boost::asio::deferred_t>
    auto async_try_acquire(std::string name, rate_limit rate, std::uint32_t permits,
                           diagnostics& diag, Token&& token = {}) {
        return initiate_try(std::move(name), rate, permits, &diag, std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_try_acquire(std::string name, rate_limit rate, std::uint32_t permits,
                           Token&& token = {}) {
        return initiate_try(std::move(name), rate, permits, nullptr, std::forward<Token>(token));
    }
    /// One permit.
    template <class Token = boost::asio::deferred_t>
    auto async_try_acquire(std::string name, rate_limit rate, diagnostics& diag,
                           Token&& token = {}) {
        return initiate_try(std::move(name), rate, 1, &diag, std::forward<Token>(token));
    }
    // (Not for a number: async_try_acquire(name, rate, 3) means 3 permits.)
    template <class Token = boost::asio::deferred_t>
        requires(!std::is_arithmetic_v<std::remove_cvref_t<Token>>)
    auto async_try_acquire(std::string name, rate_limit rate, Token&& token = {}) {
        return initiate_try(std::move(name), rate, 1, nullptr, std::forward<Token>(token));
    }

    /// Takes one permit of `name`, waiting while the window is full: it sleeps for the
    /// retry_after Redis reports, then tries again (other nodes may take the freed permits
    /// first), until it gets one or `timeout` (in [0, max_duration]; zero: one try) has passed.
    /// Completion signature: void(error_code): success once the permit is taken;
    /// error::acquire_timeout at the deadline (the diagnostics say the rate and the time
    /// waited).
    /// Cancellation: terminal, partial and total: completes with asio::error::operation_aborted;
    /// a cancellation that arrives while a try is at the server may leave that try's permit
    /// taken.
    template <class Token = boost::asio::deferred_t>
    auto async_acquire(std::string name, rate_limit rate, std::chrono::milliseconds timeout,
                       diagnostics& diag, Token&& token = {}) {
        return initiate_acquire(std::move(name), rate, timeout, &diag,
                                std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_acquire(std::string name, rate_limit rate, std::chrono::milliseconds timeout,
                       Token&& token = {}) {
        return initiate_acquire(std::move(name), rate, timeout, nullptr,
                                std::forward<Token>(token));
    }

    /// The permits of `name` free now, without taking any.
    /// Completion signature: void(error_code, std::uint32_t).
    /// Cancellation: terminal, partial and total.
    template <class Token = boost::asio::deferred_t>
    auto async_remaining(std::string name, rate_limit rate, diagnostics& diag,
                         Token&& token = {}) {
        return initiate_remaining(std::move(name), rate, &diag, std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_remaining(std::string name, rate_limit rate, Token&& token = {}) {
        return initiate_remaining(std::move(name), rate, nullptr, std::forward<Token>(token));
    }

private:
    using decision_handler =
        boost::asio::any_completion_handler<void(boost::system::error_code, rate_decision)>;
    using void_handler = boost::asio::any_completion_handler<void(boost::system::error_code)>;
    using count_handler =
        boost::asio::any_completion_handler<void(boost::system::error_code, std::uint32_t)>;

    template <class Token>
    auto initiate_try(std::string name, rate_limit rate, std::uint32_t permits,
                      diagnostics* diag, Token&& token) {
        return detail::initiate_with_diagnostics<void(boost::system::error_code, rate_decision)>(
            token, diag, [this](auto&&... a) { try_impl(std::move(a)...); }, std::move(name),
            rate, permits);
    }

    template <class Token>
    auto initiate_acquire(std::string name, rate_limit rate, std::chrono::milliseconds timeout,
                          diagnostics* diag, Token&& token) {
        return detail::initiate_with_diagnostics<void(boost::system::error_code)>(
            token, diag, [this](auto&&... a) { acquire_impl(std::move(a)...); },
            std::move(name), rate, timeout);
    }

    template <class Token>
    auto initiate_remaining(std::string name, rate_limit rate, diagnostics* diag,
                            Token&& token) {
        return detail::initiate_with_diagnostics<void(boost::system::error_code, std::uint32_t)>(
            token, diag, [this](auto&&... a) { remaining_impl(std::move(a)...); },
            std::move(name), rate);
    }

    // diag: the caller's diagnostics, or nullptr (the operation then writes its own).
    void try_impl(std::string name, rate_limit rate, std::uint32_t permits, diagnostics* diag,
                  decision_handler handler);
    void acquire_impl(std::string name, rate_limit rate, std::chrono::milliseconds timeout,
                      diagnostics* diag, void_handler handler);
    void remaining_impl(std::string name, rate_limit rate, diagnostics* diag,
                        count_handler handler);

    session* session_;
};

}  // namespace redcoord
