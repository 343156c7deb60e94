// The one socket of a connection: TCP, TLS over TCP, or a Unix-domain socket.
#pragma once

#include <redcoord/config.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>

#include <optional>
#include <variant>

namespace redcoord::detail {

class stream {
public:
    explicit stream(boost::asio::any_io_executor ex) : ex_(std::move(ex)) {}

    /// Connects to one endpoint (or the config's Unix socket) and does the TLS handshake when
    /// the config asks for it. Errors come back as ec, never as exceptions.
    boost::asio::awaitable<boost::system::error_code> connect(const config& cfg,
                                                              const endpoint& ep);

    boost::asio::awaitable<std::pair<boost::system::error_code, std::size_t>> read_some(
        boost::asio::mutable_buffer buf);
    boost::asio::awaitable<boost::system::error_code> write(boost::asio::const_buffer buf);

    /// Aborts pending reads and writes; the next connect() starts afresh.
    void close() noexcept;
    bool is_open() const noexcept;

private:
    using tcp = boost::asio::ip::tcp;
    using tls = boost::asio::ssl::stream<tcp::socket>;
    using unix_socket = boost::asio::local::stream_protocol::socket;

    boost::system::error_code setup_tls_context(const config& cfg);

    boost::asio::any_io_executor ex_;
    std::optional<boost::asio::ssl::context> ssl_ctx_;
    std::variant<std::monostate, tcp::socket, tls, unix_socket> socket_;
};

}  // namespace redcoord::detail
