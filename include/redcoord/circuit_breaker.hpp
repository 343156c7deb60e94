// A circuit breaker shared by the nodes of a deployment (the reference's
// IDistributedCircuitBreaker): failures of an operation counted in Redis, so that when one node
// has seen enough of them every node stops calling, until a single trial call succeeds.
#pragma once

#include <redcoord/detail/converting_handler.hpp>
#include <redcoord/detail/json_bridge.hpp>
#include <redcoord/detail/with_diagnostics_handler.hpp>
#include <redcoord/diagnostics.hpp>
#include <redcoord/error.hpp>
#include <redcoord/session.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace redcoord {

namespace detail {
// Where the type-erased operation leaves the caller's typed result.
template <class V>
struct result_slot {
    std::optional<V> value;
};
template <>
struct result_slot<void> {};
}  // namespace detail

/// Circuit breaker settings, named as in the reference's CircuitBreakerOptions. Defaults in
/// comments.
struct circuit_breaker_options {
    /// Failures within sampling_duration that open the circuit (5). Must be positive.
    int failure_threshold = 5;
    /// How long an open circuit refuses calls before it lets one trial call through (30 s).
    /// Must be positive.
    std::chrono::milliseconds recovery_timeout{std::chrono::seconds(30)};
    /// The sliding window in which failures are counted (60 s). Must be positive.
    std::chrono::milliseconds sampling_duration{std::chrono::seconds(60)};
    /// How long the half-open trial may take before another caller may try instead (the trial
    /// caller may have died) (30 s). Must be positive.
    std::chrono::milliseconds trial_timeout{std::chrono::seconds(30)};
};

enum class circuit_state {
    closed,     ///< calls go through; failures are counted
    open,       ///< calls fail fast with error::circuit_open until recovery_timeout passes
    half_open,  ///< one trial call is under way; the others fail fast
};

/// "closed", "open" or "half_open".
const char* to_string(circuit_state s) noexcept;

/// What async_state reports.
struct circuit_status {
    circuit_state state = circuit_state::closed;
    /// Failures counted in the current sampling window (closed), or the count that opened it.
    std::int64_t failures = 0;
    /// Open: how long until a trial call may go through (zero: the next call is the trial).
    /// Half-open: how long until the trial under way times out. Closed: zero.
    std::chrono::milliseconds retry_after{0};
};

/// Circuit breakers on one session, one per name. State lives in the hash
/// `<prefix>circuit:{<name>}` (state, opened_at, failures, trial, trial_until) and the sorted set
/// `<prefix>circuit:{<name>}:failures` (failure times, server clock, trimmed to the sampling
/// window); every transition is one Lua script, so all nodes see the same state:
/// - closed: a call goes through; when it throws, the failure is recorded, and when
///   failure_threshold failures fall within sampling_duration the circuit opens;
/// - open: calls fail fast (error::circuit_open) until recovery_timeout has passed since it
///   opened; then the first caller, cluster-wide, is handed the trial and the circuit is
///   half-open;
/// - half-open: the other callers fail fast; the trial's success closes the circuit (and
///   forgets the failures), its failure opens it again. A trial that does not report within
///   trial_timeout is handed to the next caller.
///
/// A failure is an exception thrown by the operation; a cancelled operation (asio's
/// operation_aborted) is not counted, and a cancelled trial hands the trial on.
///
/// The handle is light; several may share a session. Thread safety: none; use it from the
/// session's executor. Every operation completes through the handler's associated executor.
class circuit_breaker {
public:
    /// Throws error_with_diagnostics (error::bad_config) naming a bad option.
    explicit circuit_breaker(session& s, circuit_breaker_options opts = {});

    session& get_session() const noexcept { return *session_; }
    const circuit_breaker_options& options() const noexcept { return opts_; }

    /// Runs op() (a callable returning asio::awaitable<T> or asio::awaitable<void>, run on the
    /// session's executor) when the circuit `name` allows it, and records the outcome.
    ///
    /// Completion signature: void(std::exception_ptr, T) (void(std::exception_ptr) for void):
    /// op's result or exception; error_with_diagnostics with error::circuit_open when the
    /// circuit refused the call (the diagnostics say why and for how long), error::
    /// invalid_argument for an empty name, connection errors when the circuit's state could
    /// not be read (op is then not run). When op succeeded but its outcome could not be
    /// recorded, the result is still delivered.
    /// Cancellation: forwarded to op (terminal, partial, total).
    /// Name op before the co_await: g++ 12 destroys a lambda capturing a std::string
    /// twice when it is written inline inside the co_await (docs/connection.md, "Compilers").
    template <class T = detail::deduce_t, class Op, class Token = boost::asio::deferred_t>
    auto async_execute(std::string name, Op op, Token&& token = {}) {
        using value_type = detail::value_type_of<T, Op>;
        using signature = typename detail::exception_signature<value_type>::type;
        auto result = std::make_shared<detail::result_slot<value_type>>();
        erased_op run = [op = std::make_shared<Op>(std::move(op)),
                         result]() -> boost::asio::awaitable<void> {
            if constexpr (std::is_void_v<value_type>) {
                co_await (*op)();
            } else {
                value_type v = co_await (*op)();
                result->value.emplace(std::move(v));
            }
        };
        return boost::asio::async_initiate<Token, signature>(
            [this](auto handler, std::string name, erased_op run,
                   std::shared_ptr<detail::result_slot<value_type>> result) {
                auto convert = [result](std::exception_ptr ep) {
                    if constexpr (std::is_void_v<value_type>) {
                        return std::tuple<std::exception_ptr>(ep);
                    } else {
                        value_type v{};
                        if (!ep && result->value) v = std::move(*result->value);
                        return std::tuple<std::exception_ptr, value_type>(ep, std::move(v));
                    }
                };
                execute_impl(std::move(name), std::move(run),
                             detail::converting_handler(std::move(handler), std::move(convert)));
            },
            token, std::move(name), std::move(run), std::move(result));
    }

    /// The state of the circuit `name` as all nodes see it.
    /// Completion signature: void(error_code, circuit_status).
    template <class Token = boost::asio::deferred_t>
    auto async_state(std::string name, diagnostics& diag, Token&& token = {}) {
        return initiate_state(std::move(name), &diag, std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_state(std::string name, Token&& token = {}) {
        return initiate_state(std::move(name), nullptr, std::forward<Token>(token));
    }

    /// Closes the circuit `name` and forgets its failures, whatever its state (for operators).
    /// Completion signature: void(error_code).
    template <class Token = boost::asio::deferred_t>
    auto async_reset(std::string name, Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
            [this](auto handler, std::string name) {
                reset_impl(std::move(name), std::move(handler));
            },
            token, std::move(name));
    }

private:
    using erased_op = std::function<boost::asio::awaitable<void>()>;
    using execute_handler = boost::asio::any_completion_handler<void(std::exception_ptr)>;
    using state_handler =
        boost::asio::any_completion_handler<void(boost::system::error_code, circuit_status)>;
    using void_handler = boost::asio::any_completion_handler<void(boost::system::error_code)>;

    template <class Token>
    auto initiate_state(std::string name, diagnostics* diag, Token&& token) {
        return boost::asio::async_initiate<Token,
                                           void(boost::system::error_code, circuit_status)>(
            [this](auto handler, std::string name, diagnostics* diag) {
                diag = detail::diagnostics_for(handler, diag);
                state_impl(std::move(name), diag, std::move(handler));
            },
            token, std::move(name), diag);
    }

    void execute_impl(std::string name, erased_op run, execute_handler handler);
    void state_impl(std::string name, diagnostics* diag, state_handler handler);
    void reset_impl(std::string name, void_handler handler);

    session* session_;
    circuit_breaker_options opts_;
};

}  // namespace redcoord
