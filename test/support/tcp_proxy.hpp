// A loopback TCP proxy that injects network faults between a client and a redis-server: a delay
// per direction, a blackhole per direction, and a reset (RST) of every connection.
//
// It runs on a thread of its own with its own io_context, so it keeps forwarding (or holding)
// bytes while the test's io_context is busy. Independent of the redcoord library on purpose, as
// redis_server.hpp is.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace redcoord::test {

/// Which way the bytes go.
enum class direction {
    to_server,  ///< from the client to the server
    to_client,  ///< from the server to the client
    both,
};

/// Listens on a free port of 127.0.0.1 and forwards every connection it accepts to
/// 127.0.0.1:target_port, opening one server connection per client connection.
///
/// Faults, at runtime:
/// - set_delay: every chunk read in that direction is held for the delay, then forwarded; the
///   order of the bytes is kept (a chunk never overtakes an earlier one, even when the delay is
///   shortened).
/// - blackhole: connections are accepted and kept, but nothing is forwarded in that direction;
///   the bytes are held and forwarded in order once the blackhole is lifted, as TCP delivers
///   what it retransmitted once a partition heals.
/// - reset_connections: every current connection is closed with SO_LINGER 0, so both the client
///   and the server get an RST; the bytes held are dropped. New connections are accepted as
///   usual.
///
/// Thread safety: every method may be called from any thread. A control method returns once
/// the change is in effect: bytes read after it follow the new rule.
class tcp_proxy {
  public:
    /// Starts listening and forwarding; throws std::system_error when it cannot listen.
    explicit tcp_proxy(std::uint16_t target_port);
    /// Stops listening, closes every connection and joins the proxy's thread.
    ~tcp_proxy();
    tcp_proxy(const tcp_proxy&) = delete;
    tcp_proxy& operator=(const tcp_proxy&) = delete;

    /// The port the proxy listens on (127.0.0.1).
    std::uint16_t port() const noexcept;

    /// Holds the bytes going `dir` for `delay` before forwarding them; zero forwards at once.
    void set_delay(std::chrono::milliseconds delay, direction dir = direction::both);
    /// Forwards nothing going `dir` until lift_blackhole.
    void blackhole(direction dir = direction::both);
    /// Forwards again what goes `dir`, first the bytes held meanwhile.
    void lift_blackhole(direction dir = direction::both);
    /// Closes every current connection with an RST to both ends.
    void reset_connections();

    /// Client connections accepted since the start.
    std::size_t accepted() const;
    /// Client connections open now.
    std::size_t open_connections() const;
    /// Bytes read going `dir` and not yet forwarded (delayed or blackholed), over all
    /// connections.
    std::size_t held_bytes(direction dir = direction::both) const;

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace redcoord::test
