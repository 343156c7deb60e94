// A session: what the primitives of one process share on top of its one connection — the key
// prefix, the node id, the pub/sub fan-out and the watchdog that renews every lease.
#pragma once

#include <redcoord/connection.hpp>
#include <redcoord/keyspace.hpp>
#include <redcoord/limits.hpp>
#include <redcoord/trace.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace redcoord {

namespace detail {
class session_impl;
struct access;  // the library's own way in (src/core/access.hpp)
}

/// Replica acknowledgement of grants and renewals (session_options::replica_ack). Off by
/// default.
///
/// Redis replicates asynchronously: a grant the master acknowledged can be lost in a failover,
/// and the promoted replica then grants the same lock again, with the same fencing token. With
/// replicas > 0, every grant and every renewal is followed by `WAIT replicas timeout` on the
/// connection that carried it. A grant that fewer replicas acknowledged in time is released and
/// the acquisition fails with error::replicas_not_acknowledged; such a renewal counts as a failed one
/// (the watchdog tries again, and the lease is lost at its deadline if none is acknowledged).
///
/// What it buys and what not: the grant is on `replicas` replicas before the caller is told it
/// holds the lock. WAIT is not consensus: a failover may still promote a replica that lacks the
/// grant (use enough replicas, `min-replicas-to-write` and the failover's own settings).
/// Cost: one more round trip per grant and renewal, and WAIT holds up the shared connection's
/// pipeline until it replies: up to timeout while replicas lag. See docs/locks.md.
struct replica_ack_options {
    /// Replicas that must acknowledge (0: off). Must not be negative.
    int replicas = 0;
    /// How long WAIT waits for them (100 ms). Must be positive when replicas > 0.
    std::chrono::milliseconds timeout{100};
};

/// Something the session found about the server that the application should know of: log
/// it, alert on it (session_options::on_warning).
struct session_warning {
    enum class kind {
        /// The server's maxmemory-policy evicts keys (anything but noeviction): under memory
        /// pressure Redis may drop a lease's key, and another owner may then take the
        /// resource while its holder still believes it holds it.
        evicting_server,
        /// The policy could not be read (CONFIG renamed, disabled or not permitted, as on
        /// managed Redis): whether the server evicts is unknown.
        policy_unknown,
    };
    kind what = kind::evicting_server;
    /// What was found, in words: the policy, or the server's error.
    std::string message{};
};

/// Settings shared by every primitive of a session. Defaults in comments.
struct session_options {
    /// Prefix of every key ("redcoord:"). Keep it equal across the nodes of one deployment.
    /// No control characters (bytes below 0x20, 0x7f): operators list keys one per line.
    std::string prefix = "redcoord:";

    /// This node's id, part of every owner token and the name of its heartbeat. Empty: the
    /// host name and the process id ("web-3-48211"), one node per process. No control characters (bytes below 0x20, 0x7f): it is shown one line at a
    /// time (heartbeat keys, a lock's holder).
    std::string node_id;

    /// The watchdog renews a lease after this fraction of its TTL (1/3). Must be in (0, 1).
    double renew_fraction = 1.0 / 3.0;

    /// A lease is trusted until send time + TTL - drift, where drift = TTL * this factor +
    /// clock_drift_floor (0.01 and 2 ms, as in Redlock). Must be in [0, 0.5).
    double clock_drift_factor = 0.01;
    std::chrono::milliseconds clock_drift_floor{2};

    /// After a renewal failed for want of a connection, the watchdog tries again this soon
    /// (100 ms), until the lease's deadline.
    std::chrono::milliseconds renew_retry_delay{100};

    /// How often this session adds its lock statistics (acquisitions, waits, timeouts, lost
    /// leases, renewals) to the cluster-wide ones in Redis, which lock_monitor reads (5 s);
    /// only when something happened since. Zero: never.
    std::chrono::milliseconds statistics_interval{std::chrono::seconds(5)};

    /// WAIT for replicas after grants and renewals (off). See replica_ack_options.
    replica_ack_options replica_ack{};

    /// Told what the session finds about the server (see session_warning), on the session's
    /// executor; must not throw. When on_warning is set or refuse_evicting_server is true, the
    /// session reads the server's policy (CONFIG GET maxmemory-policy) as it starts and again
    /// after every reconnect, and reports an evicting policy (kind::evicting_server) or one it
    /// could not read (kind::policy_unknown) each time it finds one. Empty: nothing is read.
    std::function<void(const session_warning&)> on_warning{};

    /// Fail closed on an evicting server (false). When true, acquisitions of locks, read-write
    /// locks, semaphore permits and leaderships complete with error::evicting_server while the
    /// last policy read found anything but noeviction; leases already held are kept (and
    /// renewed). An acquisition started while a read is under way (the first, or the one
    /// after a reconnect) waits for it (honouring no cancellation meanwhile: the read is
    /// bounded by the connection's request timeout), and fails with the read's error when the
    /// server did not answer. A policy that cannot be read is reported, not refused.
    bool refuse_evicting_server = false;

    /// Coordination tracing (trace.hpp): which events reach which sink. Off by default.
    trace_options trace{};
};

/// Lock statistics of this process (the lock monitor adds the cluster-wide view).
struct lock_statistics {
    std::uint64_t acquisitions = 0;            ///< successful acquisitions
    std::uint64_t contended_acquisitions = 0;  ///< of those, the ones that had to wait
    std::uint64_t timeouts = 0;                ///< acquisitions that gave up at their deadline
    std::uint64_t leases_lost = 0;             ///< leases of this process that were lost
    std::uint64_t renewals = 0;                ///< successful watchdog renewals
    /// Wait time from the call to the grant, over the last 100,000 acquisitions.
    std::chrono::microseconds wait_mean{0};
    std::chrono::microseconds wait_p50{0};
    std::chrono::microseconds wait_p99{0};
    std::chrono::microseconds wait_max{0};
};

/// The shared state of the primitives of one tenant (a key prefix and a node id) on one
/// connection.
///
/// Several sessions may share a connection, each with its own prefix and node id (tenants that
/// must not see each other's keys, locks or events): they share its one push receiver, and a
/// channel any of them listens to is one Redis subscription of the connection, fanned out to
/// all of their listeners. The sessions take over the connection's push receiver
/// (connection::async_receive): pushes reach their subscribers through them. Create a session
/// before its primitives, and keep it (and the connection) alive while any primitive or lease
/// uses it.
///
/// Thread safety: none; use it from the connection's executor.
class session {
public:
    using executor_type = boost::asio::any_io_executor;

    /// Throws error_with_diagnostics (error::bad_config) naming a bad option.
    explicit session(connection& conn, session_options opts = {});
    /// Stops the watchdog and the push receiver. Leases still held are marked lost
    /// (error::session_closed), the work bound to them is cancelled and their releases are
    /// sent (not awaited: a destructor cannot wait, so a connection stopped right after may
    /// not carry them, and the keys then expire by their TTL). Prefer async_close.
    ~session();
    session(const session&) = delete;
    session& operator=(const session&) = delete;

    /// Closes the session gracefully, in order: makes every membership on it leave (the
    /// hosted nodes' heartbeats and registry entries are deleted and "left" is published),
    /// releases every lease it holds (locks, permits, read and write locks; leaderships are
    /// resigned), waits until everything sent before has been answered (the releases of leases
    /// that went out of scope among them), then closes: from then on every operation of the
    /// session fails with error::session_closed. Stop the connection only after it completes:
    ///   co_await s.async_close(asio::use_awaitable);
    ///   conn.cancel();
    ///
    /// Completion signature: void(error_code): success, or the first error of a leave or a
    /// release (the other steps still run; each is bounded by the connection's request
    /// timeout, so the close never hangs). Closing a session that is closed, or whose close is
    /// under way, completes at once with success. Acquisitions started while the close runs fail with error::session_closed.
    /// Cancellation: none. Completes through the handler's associated executor.
    template <class Token = boost::asio::deferred_t>
    auto async_close(Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
            [this](auto handler) { close_impl(std::move(handler)); }, token);
    }

    connection& get_connection() const noexcept;
    executor_type get_executor() const noexcept;
    const keyspace& keys() const noexcept;
    const std::string& node_id() const noexcept;
    const session_options& options() const noexcept;

    /// A new owner token: node id, ':', then 128 random bits in hex. Unique per holder.
    std::string new_owner_token() const;

    /// Lock statistics of this process since the session was created.
    lock_statistics get_lock_statistics() const;

    /// Number of leases the watchdog currently holds (for monitoring).
    std::size_t held_leases() const noexcept;

private:
    friend struct detail::access;
    void close_impl(boost::asio::any_completion_handler<void(boost::system::error_code)> h);

    std::shared_ptr<detail::session_impl> impl_;
};

}  // namespace redcoord
