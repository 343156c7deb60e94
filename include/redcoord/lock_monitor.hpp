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
#include <string_view>
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

/// The kinds of things a node holds (held_lease::kind).
enum class held_kind {
    mutex,       ///< a lock of lock_provider
    read,        ///< a read hold of rw_lock_provider
    write,       ///< the write hold of rw_lock_provider
    permit,      ///< a permit of semaphore_provider
    leadership,  ///< a term of leader_election
    fill,        ///< a fill lease: cache get-or-set's or idempotency's run
};

/// "mutex", "read", "write", "permit", "leadership", "fill".
std::string_view to_string(held_kind k) noexcept;

/// One held thing of any kind, as Redis stores it.
struct held_lease {
    held_kind kind = held_kind::mutex;
    /// The name given to its primitive: the lock, semaphore or leadership name; for a fill
    /// lease, the cache key or idempotency key.
    std::string name;
    std::string owner;  ///< the holder's owner token
    /// The holder's node id (for a fill lease, read from its owner token: the part before the
    /// last ':'; empty when the token is not one the library made).
    std::string node;
    /// How long until it lapses unless renewed (a permit's or read hold's own expiry, else the
    /// key's PTTL; -1 ms for a key without TTL).
    std::chrono::milliseconds remaining_ttl{0};
    /// The holder's fencing token; 0 for a fill lease (it has none) or when its counter or
    /// record was deleted by hand.
    std::int64_t fencing_token = 0;
    /// When it was granted (the acquiring node's clock for a mutex or leadership, the
    /// server's for the others); the epoch when not recorded (fill leases).
    std::chrono::system_clock::time_point acquired_at{};
    std::int64_t holds = 1;  ///< reentrant hold count (mutex, leadership)
    /// Who waits for it, as far as Redis records it: the fair queue's length (a fair mutex),
    /// the waiting writers (a read-write lock's holds), else 1 when an attempt found it held
    /// (a mutex or leadership), else 0 (semaphores and fill leases record no waiters).
    std::int64_t waiters = 0;
};

/// One lock's or leadership's statistics, summed over every node of the deployment.
struct lock_contention {
    std::string name;
    held_kind kind = held_kind::mutex;  ///< mutex (read-write locks share it) or leadership
    lock_statistics stats;              ///< (leases_lost and renewals are kept in total only)
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
    /// - the holder's node has no heartbeat (`<prefix>hb:{registry}:<node>` is missing) while some node
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

    /// Every held thing of the deployment, of every kind (held_kind): mutexes, read and write
    /// holds, semaphore permits, leaderships and fill leases, in that order, each found by
    /// SCAN and read atomically by one script call (all of a SCAN page's in one request).
    ///
    /// Completion signature: void(error_code, std::vector<held_lease>). Errors are those of
    /// connection::async_exec, with the server's text in diag; a key of the right name but
    /// the wrong shape (written by something else) is skipped.
    template <class Token = boost::asio::deferred_t>
    auto async_held_leases(diagnostics& diag, Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code,
                                                       std::vector<held_lease>)>(
            [this](auto handler, diagnostics* diag) {
                diag = detail::diagnostics_for(handler, diag);
                held_impl(diag, std::move(handler));
            },
            token, &diag);
    }
    template <class Token = boost::asio::deferred_t>
    auto async_held_leases(Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code,
                                                       std::vector<held_lease>)>(
            [this](auto handler) {
                diagnostics* diag = detail::diagnostics_for(handler, nullptr);
                held_impl(diag, std::move(handler));
            },
            token);
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

    /// The same statistics summed over every session of the deployment, as they reported
    /// them to Redis (session_options::statistics_interval: what a process saw since its
    /// last report is missing until its next one or its session's close; with it zero, a
    /// session reports nothing). p50 and p99 come from a
    /// histogram with four buckets per doubling: at most 19% above the true value, never
    /// above the maximum. Kept 7 days after the last report.
    /// Completion signature: void(error_code, lock_statistics).
    template <class Token = boost::asio::deferred_t>
    auto async_cluster_statistics(Token&& token = {}) {
        return boost::asio::async_initiate<Token,
                                           void(boost::system::error_code, lock_statistics)>(
            [this](auto handler) { cluster_stats_impl(std::move(handler)); }, token);
    }

    /// Every lock's and leadership's cluster-wide statistics (the reference's
    /// GetContentionMetricsAsync, per lock), the longest mean wait first.
    /// Completion signature: void(error_code, std::vector<lock_contention>).
    template <class Token = boost::asio::deferred_t>
    auto async_contention(Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code,
                                                       std::vector<lock_contention>)>(
            [this](auto handler) { contention_impl(std::move(handler)); }, token);
    }

private:
    using list_handler = boost::asio::any_completion_handler<void(boost::system::error_code,
                                                                  std::vector<active_lock>)>;
    using held_handler = boost::asio::any_completion_handler<void(boost::system::error_code,
                                                                  std::vector<held_lease>)>;
    void active_impl(diagnostics* diag, list_handler handler);
    void held_impl(diagnostics* diag, held_handler handler);
    void cluster_stats_impl(boost::asio::any_completion_handler<
                            void(boost::system::error_code, lock_statistics)>
                                handler);
    void contention_impl(boost::asio::any_completion_handler<
                         void(boost::system::error_code, std::vector<lock_contention>)>
                             handler);
    void stale_impl(std::chrono::milliseconds stale_after, diagnostics* diag,
                    list_handler handler);

    session* session_;
    lock_provider provider_;
};

}  // namespace redcoord
