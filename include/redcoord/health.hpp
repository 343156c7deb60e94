// The coordination health check (the reference's CoordinationHealthCheck): can this node
// reach Redis quickly, take a lock, see its leaders, and trust the server and the nodes'
// clocks? A report users map to their own health endpoint (status_server serves it as
// /health).
#pragma once

#include <redcoord/lock_monitor.hpp>
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

/// healthy < degraded < unhealthy: a report's status is its worst check's.
enum class health_status { healthy, degraded, unhealthy };

/// "healthy", "degraded", "unhealthy".
std::string_view to_string(health_status s) noexcept;

/// What async_check_health checks and when it calls a result degraded. Defaults in comments.
struct health_options {
    /// The probe lock is `<probe_lock>:<node id>` (one per node, so that nodes checking at
    /// once do not wait for each other): "health-check". No control characters.
    std::string probe_lock = "health-check";
    /// The probe lock's TTL (5 s, as in the reference) and how long to wait for it (2 s).
    std::chrono::milliseconds probe_ttl{5000};
    std::chrono::milliseconds probe_wait{2000};
    /// A PING round trip slower than this is degraded (250 ms).
    std::chrono::milliseconds max_latency{250};
    /// A node's heartbeat clock further than this from the server's is degraded (1 s).
    std::chrono::milliseconds max_clock_drift{1000};
    /// List the leaderships held, with their leaders (true). Lists with SCAN.
    bool leaders = true;
};

/// One check of a report.
struct health_check_result {
    std::string name;  ///< "connection", "probe_lock", "leaders", "memory_policy", "clock_drift"
    health_status status = health_status::healthy;
    std::string description;  ///< what was found, in words
};

/// A node's clock as its last heartbeat shows it, against the Redis server's.
struct node_clock {
    std::string node;
    /// The node's clock minus the server's when the heartbeat was written (positive: ahead).
    std::chrono::milliseconds drift{0};
};

struct health_report {
    health_status status = health_status::healthy;  ///< the worst of checks
    std::vector<health_check_result> checks;
    /// The PING round trip through this node's connection (with whatever it carries).
    std::chrono::microseconds latency{0};
    /// The probe lock's fencing token (0 when it was not acquired).
    std::int64_t probe_fencing_token = 0;
    /// The leaderships held now (held_kind::leadership: name, node, term as fencing_token,
    /// remaining TTL), when health_options::leaders.
    std::vector<held_lease> leaders;
    /// The server's maxmemory-policy; empty when it could not be read.
    std::string maxmemory_policy;
    /// Every registered node with a heartbeat that records its TTL, and the largest drift.
    std::vector<node_clock> clocks;
    std::chrono::milliseconds max_clock_drift{0};

    /// The report as a JSON object: {"status", "latency_us", "probe_fencing_token",
    /// "maxmemory_policy", "max_clock_drift_ms", "checks": [{"name", "status",
    /// "description"}], "leaders": [{"name", "node", "term", "ttl_ms"}], "clocks": [{"node",
    /// "drift_ms"}]}. No secrets: nothing of the connection's configuration.
    std::string to_json() const;
};

namespace detail {
void check_health_impl(
    session& s, health_options opts,
    boost::asio::any_completion_handler<void(boost::system::error_code, health_report)> h);
}

/// Checks the coordination services from this node:
/// - connection: a PING's round trip (unhealthy when it fails, degraded above max_latency);
/// - probe_lock: acquires and releases the probe lock (unhealthy when it cannot);
/// - leaders: the leaderships held and their leaders (unhealthy when they cannot be read);
/// - memory_policy: an evicting maxmemory-policy is degraded (a lease's key may be dropped);
///   one that cannot be read (CONFIG disabled) is healthy, said so;
/// - clock_drift: nodes' heartbeat clocks against the server's, degraded above
///   max_clock_drift.
///
/// Completion signature: void(error_code, health_report). The error is
/// error::invalid_argument for bad options only (the report then says which, in its one
/// check "options"); a failing Redis gives a report with status unhealthy. Each step is
/// bounded (the connection's request timeout, probe_wait), so it never hangs. Cancellation:
/// none. Completes through the handler's associated executor. Keep s alive until it completes.
/// With g++ 12, pass a named health_options inside a coroutine, not `{}` or the default: it
/// miscompiles braced temporaries holding a std::string inside a co_await expression.
template <class Token = boost::asio::deferred_t>
auto async_check_health(session& s, health_options opts = {}, Token&& token = {}) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, health_report)>(
        [&s](auto handler, health_options opts) {
            detail::check_health_impl(s, std::move(opts), std::move(handler));
        },
        token, std::move(opts));
}

}  // namespace redcoord
