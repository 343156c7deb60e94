// Metrics: counters and histograms of what sessions do — acquisitions and their waits,
// renewals and their lateness, lost leases, elections, heartbeats, jobs, the connection's round
// trips and reconnects — kept in a prometheus-cpp registry and exported in the Prometheus text
// format (status_server.hpp serves it over HTTP).
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/system/error_code.hpp>

#include <memory>
#include <string>

namespace prometheus {
class Registry;
}

namespace redcoord {

class session;

namespace detail {
class metrics_impl;
}

/// The metrics of the sessions attached to it. Names follow OpenTelemetry's semantic
/// conventions where they exist (`db_client_operation_duration_seconds` for the connection's
/// requests), the rest are `redcoord_*`; durations in seconds:
/// - `redcoord_lock_acquisitions_total`, `redcoord_lock_contentions_total`,
///   `redcoord_lock_timeouts_total`, `redcoord_lock_wait_duration_seconds`,
///   `redcoord_lock_hold_duration_seconds` — by `primitive` (mutex, read, write, permit, fill,
///   leadership);
/// - `redcoord_lease_renewals_total`, `redcoord_lease_renewal_lateness_seconds`,
///   `redcoord_leases_lost_total` (by `primitive` and `reason`), `redcoord_leases_held`;
/// - `redcoord_elections_total` (by `outcome`: won, lost, resigned);
/// - `redcoord_heartbeats_total`, `redcoord_heartbeat_lateness_seconds`,
///   `redcoord_node_events_total` (by `event`: joined, left, dead, as this process saw them);
/// - `redcoord_jobs_total` and `redcoord_job_duration_seconds` (by `function` and `outcome`),
///   `redcoord_jobs_running`;
/// - `db_client_operation_duration_seconds` (label `db_system_name="redis"`, `outcome`: ok or
///   error): every request from async_exec to its reply, `redcoord_connection_events_total`
///   (by `event`: up, down, retrying), `redcoord_connection_up`;
/// - queues (by `messaging_destination_name` or `queue`): `messaging_client_sent_messages_total`,
///   `messaging_client_consumed_messages_total`, `redcoord_queue_acked_total`,
///   `redcoord_queue_redelivered_total`, `redcoord_queue_in_flight` (taken, not yet
///   acknowledged, by this process) and `redcoord_queue_depth` (async_collect).
///
/// Thread safety: attach, detach and the destructor on the sessions' executor; the registry
/// and prometheus_text() from any thread (prometheus-cpp's metrics are atomic), except that
/// the gauges read from sessions (leases held) are read on the calling thread: call it on
/// the sessions' executor too (status_server does).
class metrics {
  public:
    /// Metrics in a registry of their own, or in registry: one the application already
    /// exposes with prometheus-cpp.
    explicit metrics(std::shared_ptr<prometheus::Registry> registry = nullptr);
    /// Detaches from every session still attached.
    ~metrics();
    metrics(const metrics&) = delete;
    metrics& operator=(const metrics&) = delete;

    /// Starts counting what s does (its tracing switches stay as the application set them:
    /// metrics observe on their own). Attaching a session twice counts it once. The session
    /// may be destroyed while attached.
    void attach(session& s);
    /// Stops counting what s does.
    void detach(session& s);

    std::shared_ptr<prometheus::Registry> registry() const noexcept;

    /// Everything in the registry in the Prometheus text exposition format (version 0.0.4).
    std::string prometheus_text() const;

    /// Reads what lives in Redis into its gauges: `redcoord_queue_depth`, the messages waiting
    /// in each queue the attached sessions used. status_server calls it before each scrape.
    /// Completion signature: void(error_code): the first read's error (the other queues are
    /// still read). Cancellation: none; each read is bounded by the request timeout. Call it
    /// on the sessions' executor; keep the metrics alive until it completes. It completes
    /// through the executor of the first session attached (at once, inside the call, when
    /// none ever was).
    template <class Token = boost::asio::deferred_t>
    auto async_collect(Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
            [this](auto handler) { collect_impl(std::move(handler)); }, token);
    }

  private:
    void collect_impl(boost::asio::any_completion_handler<void(boost::system::error_code)> h);
    std::shared_ptr<detail::metrics_impl> impl_;
};

}  // namespace redcoord
