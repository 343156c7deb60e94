// A small HTTP endpoint for monitoring systems: GET /metrics (the Prometheus text format of a
// metrics object) and GET /health (async_check_health as JSON; 503 when unhealthy).
#pragma once

#include <redcoord/health.hpp>
#include <redcoord/metrics.hpp>
#include <redcoord/session.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>

#include <memory>
#include <string>

namespace redcoord {

namespace detail {
class status_server_impl;
}

struct status_server_options {
    /// Where to listen, "host:port" ("127.0.0.1:9464"; port 0: any free port, see
    /// local_endpoint). The host must be an IP address.
    std::string listen = "127.0.0.1:9464";
    /// Anything but a loopback address is refused unless this is true (false): the endpoint
    /// has no authentication.
    bool allow_remote = false;
    /// What /health checks.
    health_options health{};
};

/// Serves /metrics and /health for one session. Opens its socket in the constructor (throws
/// error_with_diagnostics: error::bad_config for a bad listen address, the system's error
/// when it cannot bind), serves once async_run is called. Thread safety: none; use it from
/// the session's executor. Keep the session and the metrics alive while it runs.
class status_server {
  public:
    /// m may be null: /metrics then answers 404.
    status_server(session& s, metrics* m, status_server_options opts = {});
    ~status_server();
    status_server(const status_server&) = delete;
    status_server& operator=(const status_server&) = delete;

    /// The address it listens on (with the port chosen when listen's port was 0).
    boost::asio::ip::tcp::endpoint local_endpoint() const;

    /// Accepts and serves connections (each request answered in turn, keep-alive honoured)
    /// until cancelled or stop() is called.
    /// Completion signature: void(error_code): operation_aborted once stopped or cancelled,
    /// else the acceptor's error. Cancellation: terminal, partial and total (stops serving,
    /// closing the connections being served).
    template <class Token = boost::asio::deferred_t>
    auto async_run(Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
            [this](auto handler) { run_impl(std::move(handler)); }, token);
    }

    /// Stops serving: async_run completes with operation_aborted.
    void stop();

  private:
    void run_impl(boost::asio::any_completion_handler<void(boost::system::error_code)> h);
    std::shared_ptr<detail::status_server_impl> impl_;
};

}  // namespace redcoord
