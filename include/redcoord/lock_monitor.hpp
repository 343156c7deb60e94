// The cluster-wide view of locks: which are held, by whom and since when, which look stale,
// and releasing one by force (the reference's ILockMonitor).
#pragma once

#include <redcoord/detail/with_diagnostics_handler.hpp>
#include <redcoord/diagnostics.hpp>
#include <redcoord/lock.hpp>
#include <redcoord/session.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace redcoord {

/// One held lock as Redis stores it (the string `<prefix>lock:{<name>}` and its fencing counter).
struct active_lock {
    std::string name;   ///< the lock's name, as given to lock_provider ("orders")
    std::string owner;  ///< the holder's owner token (node id, ':', random)
    std::string node;   ///< the holder's node id
    /// The key's remaining TTL as Redis reports it (PTTL); -1 ms for a key without TTL
    /// (written by hand).
    std::chrono::milliseconds remaining_ttl{0};
    /// The holder's fencing token (0 when its counter was deleted by hand or evicted).
    std::int64_t fencing_token = 0;
    /// When the holder acquired it, by the acquiring node's clock.
    std::chrono::system_clock::time_point acquired_at{};
    bool watchdog = false;  ///< renewed by the holder's watchdog
    std::int64_t holds = 0; ///< reentrant hold count (1 unless acquired again by its owner)
};

/// Lists and inspects the locks of every node of a deployment (same prefix), and releases
/// stale ones. Reads only what lock_provider writes; lists with SCAN (never KEYS), so it does
/// not block the server however many keys it holds. Each lock is read atomically
/// (MULTI/HMGET/PTTL/EXEC), so its fields and TTL belong to the same holder.
///
/// A light handle; keep the session alive while operations run. Thread safety: none; use it
/// from the session's executor. Operations complete through the handler's associated
/// executor. Cancellation: none (each is a bounded number of short requests, each bounded by
/// the request timeout).
class lock_monitor {
public:
    explicit lock_monitor(session& s);

    session& get_session() const noexcept { return *session_; }

    /// Every lock currently held, in no particular order. A key under `<prefix>lock:` that is
    /// not a lock's value with a fencing counter beside it is skipped.
    ///
    /// Completion signature: void(error_code, std::vector<active_lock>). Errors are those of
    /// connection::async_exec, with the server's text in diag.
    template <class Token = boost::asio::deferred_t>
    auto async_active_locks(diagnostics& diag, Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code,
                                                       std::vector<active_lock>)>(
            [this](auto handler, diagnostics* diag) {
                diag = detail::diagnostics_for(handler, diag);
                active_impl(diag, std::move(handler));
            },
            token, &diag);
    }
    template <class Token = boost::asio::deferred_t>
    auto async_active_locks(Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code,
                                                       std::vector<active_lock>)>(
            [this](auto handler) {
                diagnostics* diag = detail::diagnostics_for(handler, nullptr);
                active_impl(diag, std::move(handler));
            },
            token);
    }

    /// The held locks that look abandoned:
    /// - the holder's node has no heartbeat (`<prefix>hb:{<node>}` is missing) while some node
    ///   of the deployment has one: membership is in use and that node is gone. When no
    ///   heartbeat exists at all, this rule is not applied;
    /// - or the lock has no watchdog and has been held longer than stale_after (measured by
    ///   the Redis server's clock: its TIME against the lock's `since`).
    /// A lock renewed by a live node's watchdog is never stale, however long it is held.
    ///
    /// Completion signature: void(error_code, std::vector<active_lock>): error::invalid_argument
    /// for a negative stale_after (diag names it); otherwise as async_active_locks.
    template <class Token = boost::asio::deferred_t>
    auto async_stale_locks(std::chrono::milliseconds stale_after, diagnostics& diag,
                           Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code,
                                                       std::vector<active_lock>)>(
            [this](auto handler, std::chrono::milliseconds stale_after, diagnostics* diag) {
                diag = detail::diagnostics_for(handler, diag);
                stale_impl(stale_after, diag, std::move(handler));
            },
            token, stale_after, &diag);
    }
    template <class Token = boost::asio::deferred_t>
    auto async_stale_locks(std::chrono::milliseconds stale_after, Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code,
                                                       std::vector<active_lock>)>(
            [this](auto handler, std::chrono::milliseconds stale_after) {
                diagnostics* diag = detail::diagnostics_for(handler, nullptr);
                stale_impl(stale_after, diag, std::move(handler));
            },
            token, stale_after);
    }

    /// Deletes the lock `name` whoever holds it and wakes its waiters, as
    /// lock_provider::async_force_release: the holder's watchdog finds it gone at its next
    /// renewal and marks its lease lost.
    /// Completion signature: void(error_code, bool released): false when it was not held;
    /// error::invalid_argument for an empty name.
    template <class Token = boost::asio::deferred_t>
    auto async_force_release(std::string name, Token&& token = {}) {
        return provider_.async_force_release(std::move(name), std::forward<Token>(token));
    }

    /// Lock statistics of this process (session::get_lock_statistics): acquisitions, how many
    /// were contended, timeouts, lost leases, renewals, and the wait time mean, p50, p99, max.
    lock_statistics statistics() const;

private:
    using list_handler = boost::asio::any_completion_handler<void(boost::system::error_code,
                                                                  std::vector<active_lock>)>;
    void active_impl(diagnostics* diag, list_handler handler);
    void stale_impl(std::chrono::milliseconds stale_after, diagnostics* diag,
                    list_handler handler);

    session* session_;
    lock_provider provider_;
};

}  // namespace redcoord
