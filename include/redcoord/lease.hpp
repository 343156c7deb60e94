// The lease: the one contract of everything a node holds — a lock, a permit, a leadership term.
#pragma once

#include <redcoord/detail/with_diagnostics_handler.hpp>
#include <redcoord/diagnostics.hpp>
#include <redcoord/session.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace redcoord {

namespace detail {
struct lease_state;
struct access;  // the library's own way in (src/core/access.hpp)
}

/// A held resource, with:
/// - an owner token, unique per holder (node id + random);
/// - a fencing token, a counter per resource that the granting Lua script increments, so a
///   later holder always has a larger token than an earlier one;
/// - a validity deadline computed conservatively (send time + TTL - drift): until then no one
///   else can hold the resource;
/// - a watchdog that renews it at a fraction of its TTL while held (all renewals of a process
///   ride the same connection's pipeline);
/// - a lost signal: when a renewal finds the lease gone or taken, or no renewal succeeded by
///   the deadline, the lease is marked lost, async_wait_lost completes and the cancellation
///   slots handed out by cancellation_slot() are emitted (terminal), cancelling the work bound
///   to the lease. A lease is never lost silently.
///
/// Move-only. It is its own scope guard: destroying a lease that is still held releases it
/// (the release is scheduled on the session's executor, since a destructor cannot wait).
/// Thread safety: none; use it from the session's executor.
class lease {
public:
    enum class status { held, released, lost };

    /// An empty lease (what try-acquire gives when the resource is taken).
    lease() noexcept = default;
    lease(lease&&) noexcept = default;
    /// Releases what *this held (scheduled), then takes other's lease.
    lease& operator=(lease&& other) noexcept;
    ~lease();

    /// True when this holds a lease (in whatever status); false when empty.
    explicit operator bool() const noexcept { return state_ != nullptr; }

    status get_status() const noexcept;
    bool is_held() const noexcept { return state_ && get_status() == status::held; }

    /// The resource's name as the caller gave it ("orders").
    const std::string& resource() const noexcept;
    /// The Redis key holding the lease.
    const std::string& key() const noexcept;
    const std::string& owner() const noexcept;
    std::int64_t fencing_token() const noexcept;
    std::chrono::milliseconds ttl() const noexcept;
    /// Until when the lease is certainly held (steady clock), as last confirmed by Redis.
    std::chrono::steady_clock::time_point valid_until() const noexcept;
    /// Why the lease was lost (error::lease_lost, error::session_closed), or success.
    boost::system::error_code lost_reason() const noexcept;
    /// Successful watchdog renewals of this lease.
    std::uint64_t renewals() const noexcept;

    /// A slot emitted (cancellation_type::terminal) when the lease is lost. Bind it to the work
    /// the holder does under the lease:
    ///   co_await work(asio::bind_cancellation_slot(l.cancellation_slot(), asio::use_awaitable));
    /// Each call gives a slot of its own, so several operations can be bound. Releasing the
    /// lease emits nothing. A slot taken from a lease that is already lost is emitted in the
    /// next turn of the session's executor (bind it before that: at once, in the same
    /// expression). Empty lease: an unconnected slot.
    boost::asio::cancellation_slot cancellation_slot();

    /// Releases the lease and stops its watchdog at once (no renewal is sent after this call).
    ///
    /// Completion signature: void(error_code). Releasing twice is harmless (success). A lease
    /// that was lost, or that Redis no longer holds for this owner, gives error::not_held with
    /// the resource in the diagnostics; once the session is closed, error::session_closed (as
    /// async_extend). An empty lease gives error::invalid_argument.
    /// Cancellation: none (the release is one short script, bounded by the request timeout).
    template <class Token = boost::asio::deferred_t>
    auto async_release(diagnostics& diag, Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
            [this](auto handler, diagnostics* diag) {
                diag = detail::diagnostics_for(handler, diag);
                release_impl(diag, std::move(handler));
            },
            token, &diag);
    }
    template <class Token = boost::asio::deferred_t>
    auto async_release(Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
            [this](auto handler) {
                diagnostics* diag = detail::diagnostics_for(handler, nullptr);
                release_impl(diag, std::move(handler));
            },
            token);
    }

    /// Sets the lease's TTL to ttl from now (and uses it for the next renewals).
    /// Completion signature: void(error_code): error::not_held when the lease is no longer held
    /// (it is then marked lost), error::session_closed once the session is closed (as
    /// async_release), error::invalid_argument for an empty lease, a ttl outside
    /// (0, max_duration] or, with the watchdog on, not longer than the renewal interval (diag
    /// names it). diag must stay alive until completion.
    template <class Token = boost::asio::deferred_t>
    auto async_extend(std::chrono::milliseconds ttl, diagnostics& diag, Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
            [this](auto handler, std::chrono::milliseconds ttl, diagnostics* diag) {
                diag = detail::diagnostics_for(handler, diag);
                extend_impl(ttl, diag, std::move(handler));
            },
            token, ttl, &diag);
    }
    template <class Token = boost::asio::deferred_t>
    auto async_extend(std::chrono::milliseconds ttl, Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
            [this](auto handler, std::chrono::milliseconds ttl) {
                diagnostics* diag = detail::diagnostics_for(handler, nullptr);
                extend_impl(ttl, diag, std::move(handler));
            },
            token, ttl);
    }

    /// Waits until the lease is lost.
    /// Completion signature: void(error_code): success when the lease was lost (lost_reason()
    /// tells why; at once if it already was), operation_aborted when it was released or the
    /// wait was cancelled (any cancellation type). An empty lease gives invalid_argument.
    template <class Token = boost::asio::deferred_t>
    auto async_wait_lost(Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
            [this](auto handler) { wait_lost_impl(std::move(handler)); }, token);
    }

private:
    friend struct detail::access;
    explicit lease(std::shared_ptr<detail::lease_state> state) noexcept;
    const std::shared_ptr<detail::lease_state>& state() const noexcept { return state_; }

    using handler_type = boost::asio::any_completion_handler<void(boost::system::error_code)>;
    // diag: the caller's diagnostics, or nullptr (the operation then writes its own).
    void release_impl(diagnostics* diag, handler_type handler);
    void extend_impl(std::chrono::milliseconds ttl, diagnostics* diag, handler_type handler);
    void wait_lost_impl(handler_type handler);

    std::shared_ptr<detail::lease_state> state_;
};

/// Writes value to key only when token is at least every fencing token used on key before
/// (the high-water mark lives in a companion key, in the same slot). The protected resource
/// checks the token, so a holder that lost its lease without noticing (a long pause) cannot
/// overwrite what a later holder wrote.
///
/// Completion signature: void(error_code): error::stale_fencing_token when a newer token has
/// been used, error::invalid_argument for an empty key or a negative token (fencing tokens are
/// never negative; diag names it). diag must stay alive until completion.
template <class Token = boost::asio::deferred_t>
auto async_fenced_set(session& s, std::string key, std::string value, std::int64_t token,
                      diagnostics& diag, Token&& tok = {});
template <class Token = boost::asio::deferred_t>
auto async_fenced_set(session& s, std::string key, std::string value, std::int64_t token,
                      Token&& tok = {});

namespace detail {
void fenced_set_impl(session& s, std::string key, std::string value, std::int64_t token,
                     diagnostics* diag,
                     boost::asio::any_completion_handler<void(boost::system::error_code)> h);
}

template <class Token>
auto async_fenced_set(session& s, std::string key, std::string value, std::int64_t token,
                      diagnostics& diag, Token&& tok) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
        [](auto handler, session* s, std::string key, std::string value, std::int64_t token,
           diagnostics* diag) {
            diag = detail::diagnostics_for(handler, diag);
            detail::fenced_set_impl(*s, std::move(key), std::move(value), token, diag,
                                    std::move(handler));
        },
        tok, &s, std::move(key), std::move(value), token, &diag);
}

template <class Token>
auto async_fenced_set(session& s, std::string key, std::string value, std::int64_t token,
                      Token&& tok) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
        [](auto handler, session* s, std::string key, std::string value, std::int64_t token) {
            diagnostics* diag = detail::diagnostics_for(handler, nullptr);
            detail::fenced_set_impl(*s, std::move(key), std::move(value), token, diag,
                                    std::move(handler));
        },
        tok, &s, std::move(key), std::move(value), token);
}

}  // namespace redcoord
