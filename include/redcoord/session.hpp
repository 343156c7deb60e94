// A session: what the primitives of one process share on top of its one connection — the key
// prefix, the node id, the pub/sub fan-out and the watchdog that renews every lease.
#pragma once

#include <redcoord/connection.hpp>
#include <redcoord/keyspace.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace redcoord {

namespace detail {
class session_impl;
}

/// Settings shared by every primitive of a session. Defaults in comments.
struct session_options {
    /// Prefix of every key ("redcoord:"). Keep it equal across the nodes of one deployment.
    std::string prefix = "redcoord:";

    /// This node's id, part of every owner token and the name of its heartbeat. Empty: the
    /// host name.
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

/// The shared state of the primitives of one process on one connection.
///
/// The session takes over the connection's push receiver (connection::async_receive): pushes
/// reach their subscribers through the session. Create it once per connection, before the
/// primitives, and keep it (and the connection) alive while any primitive or lease uses it.
///
/// Thread safety: none; use it from the connection's executor.
class session {
public:
    using executor_type = boost::asio::any_io_executor;

    /// Throws error_with_diagnostics (error::bad_config) naming a bad option.
    explicit session(connection& conn, session_options opts = {});
    /// Stops the watchdog and the push receiver. Leases still held are marked lost
    /// (error::session_closed) and the work bound to them is cancelled; their keys expire by
    /// their TTL.
    ~session();
    session(const session&) = delete;
    session& operator=(const session&) = delete;

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

    /// For the primitives compiled in the library.
    const std::shared_ptr<detail::session_impl>& impl() const noexcept { return impl_; }

private:
    std::shared_ptr<detail::session_impl> impl_;
};

}  // namespace redcoord
