#include "wire/stream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <openssl/ssl.h>

namespace redcoord::detail {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

}  // namespace

error_code stream::setup_tls_context(const config& cfg) {
    if (ssl_ctx_) return {};
    ssl_ctx_.emplace(asio::ssl::context::tls_client);
    error_code ec;
    if (!cfg.tls_ca_file.empty())
        ssl_ctx_->load_verify_file(cfg.tls_ca_file, ec);
    else
        ssl_ctx_->set_default_verify_paths(ec);
    if (ec) {
        ssl_ctx_.reset();
        return ec;
    }
    ssl_ctx_->set_verify_mode(cfg.tls_verify ? asio::ssl::verify_peer : asio::ssl::verify_none);
    return {};
}

asio::awaitable<error_code> stream::connect(const config& cfg, const endpoint& ep) {
    close();
    if (!cfg.unix_socket.empty()) {
        auto& s = socket_.emplace<unix_socket>(ex_);
        auto [ec] = co_await s.async_connect(
            asio::local::stream_protocol::endpoint(cfg.unix_socket), use_nothrow);
        co_return ec;
    }

    tcp::resolver resolver(ex_);
    auto [rec, results] = co_await resolver.async_resolve(ep.host, std::to_string(ep.port),
                                                          use_nothrow);
    if (rec) co_return rec;

    tcp::socket sock(ex_);
    auto [cec, peer] = co_await asio::async_connect(sock, results, use_nothrow);
    if (cec) co_return cec;
    sock.set_option(tcp::no_delay(true));

    if (!cfg.use_tls) {
        socket_.emplace<tcp::socket>(std::move(sock));
        co_return error_code{};
    }
    if (auto ec = setup_tls_context(cfg)) co_return ec;
    auto& s = socket_.emplace<tls>(std::move(sock), *ssl_ctx_);
    const std::string& name = cfg.tls_server_name.empty() ? ep.host : cfg.tls_server_name;
    if (cfg.tls_verify) s.set_verify_callback(asio::ssl::host_name_verification(name));
    // SNI; harmless for IP literals, which servers ignore.
    SSL_set_tlsext_host_name(s.native_handle(), name.c_str());
    auto [hec] = co_await s.async_handshake(asio::ssl::stream_base::client, use_nothrow);
    co_return hec;
}

asio::awaitable<std::pair<error_code, std::size_t>> stream::read_some(asio::mutable_buffer buf) {
    auto read = [&](auto& s) -> asio::awaitable<std::pair<error_code, std::size_t>> {
        auto [ec, n] = co_await s.async_read_some(buf, use_nothrow);
        co_return std::pair{ec, n};
    };
    switch (socket_.index()) {
        case 1: co_return co_await read(std::get<tcp::socket>(socket_));
        case 2: co_return co_await read(std::get<tls>(socket_));
        case 3: co_return co_await read(std::get<unix_socket>(socket_));
        default: co_return std::pair{error_code(asio::error::not_connected), std::size_t{0}};
    }
}

asio::awaitable<error_code> stream::write(asio::const_buffer buf) {
    auto write = [&](auto& s) -> asio::awaitable<error_code> {
        auto [ec, n] = co_await asio::async_write(s, buf, use_nothrow);
        co_return ec;
    };
    switch (socket_.index()) {
        case 1: co_return co_await write(std::get<tcp::socket>(socket_));
        case 2: co_return co_await write(std::get<tls>(socket_));
        case 3: co_return co_await write(std::get<unix_socket>(socket_));
        default: co_return error_code(asio::error::not_connected);
    }
}

void stream::close() noexcept {
    error_code ignored;
    switch (socket_.index()) {
        case 1: std::get<tcp::socket>(socket_).close(ignored); break;
        case 2: std::get<tls>(socket_).lowest_layer().close(ignored); break;
        case 3: std::get<unix_socket>(socket_).close(ignored); break;
        default: break;
    }
}

bool stream::is_open() const noexcept {
    switch (socket_.index()) {
        case 1: return std::get<tcp::socket>(socket_).is_open();
        case 2: return std::get<tls>(socket_).lowest_layer().is_open();
        case 3: return std::get<unix_socket>(socket_).is_open();
        default: return false;
    }
}

}  // namespace redcoord::detail
