// The live web dashboard: one page (served from the binary) that shows a deployment's nodes,
// leaders, every held lock and lease with its fencing token, queues, jobs and events, updated
// live by server-sent events; and a JSON API under /api. See docs/dashboard.md.
#pragma once

#include <redcoord/session.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>

#include <memory>
#include <string>

namespace redcoord::tools {

namespace detail {
class dashboard_impl;
}

/// Settings of a dashboard. Defaults in comments.
struct dashboard_options {
    /// Where to listen, "host:port" ("127.0.0.1:8080"; port 0: any free port, see
    /// local_endpoint). The host must be an IP address.
    std::string listen = "127.0.0.1:8080";
    /// Anything but a loopback address is refused unless this is true (false). Without it,
    /// requests must also name a loopback host (Host header), against DNS rebinding.
    bool allow_remote = false;
    /// Refuse every action (force release, cancel, run now) with 403 (false).
    bool read_only = false;
    /// When set, actions need it: `Authorization: Bearer <token>`, or a `token` field of the
    /// request's form or JSON body; 401 otherwise. Reading needs no token.
    std::string token;
    /// The job scheduler shown ("default"): scheduler_options::name of the deployment.
    std::string scheduler = "default";
    /// The connection shown on the page, e.g. "redis://127.0.0.1:6379". Any user information
    /// ("user:password@") is removed before it is shown.
    std::string url_shown;
};

/// Serves the dashboard of one session's deployment (its key prefix). Opens its socket in the
/// constructor (throws error_with_diagnostics: error::bad_config for a bad listen address or
/// scheduler name, the system's error when it cannot bind); serves once async_run is called.
///
/// Reads only what the library's public API reads (lock_monitor, membership, leader_election,
/// scheduler); listens to the membership and job events; samples the cluster's lock statistics
/// every few seconds for the charts; pushes a snapshot to the connected browsers about once a
/// second, and only while one is connected.
///
/// Thread safety: none; use it from the session's executor. Keep the session alive while it
/// runs.
class dashboard {
  public:
    dashboard(session& s, dashboard_options opts = {});
    ~dashboard();
    dashboard(const dashboard&) = delete;
    dashboard& operator=(const dashboard&) = delete;

    /// The address it listens on (with the port chosen when listen's port was 0).
    boost::asio::ip::tcp::endpoint local_endpoint() const;

    const dashboard_options& options() const noexcept;

    /// Accepts and serves connections until cancelled or stop() is called.
    /// Completion signature: void(error_code): operation_aborted once stopped or cancelled.
    /// Completes through the handler's associated executor. Cancellation: terminal, partial
    /// and total (stops serving, closing every connection).
    template <class Token = boost::asio::deferred_t>
    auto async_run(Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
            [this](auto handler) { run_impl(std::move(handler)); }, token);
    }

    /// Stops serving: async_run completes with operation_aborted.
    void stop();

  private:
    void run_impl(boost::asio::any_completion_handler<void(boost::system::error_code)> h);
    std::shared_ptr<detail::dashboard_impl> impl_;
};

}  // namespace redcoord::tools
