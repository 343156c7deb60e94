#include <redcoord/status_server.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include <list>

#include "core/completion.hpp"
#include "core/session_impl.hpp"

namespace redcoord {
namespace detail {

namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

class status_server_impl : public std::enable_shared_from_this<status_server_impl> {
  public:
    status_server_impl(session& s, metrics* m, status_server_options o, tcp::endpoint at)
        : s_(s), m_(m), opts_(std::move(o)), acceptor_(s.get_executor()) {
        acceptor_.open(at.protocol());
        acceptor_.set_option(tcp::acceptor::reuse_address(true));
        acceptor_.bind(at);
        acceptor_.listen();
    }

    asio::awaitable<error_code> run() {
        auto self = shared_from_this();
        co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
        for (;;) {
            auto [ec, sock] = co_await acceptor_.async_accept(nothrow);
            if (stopped_) co_return error_code(asio::error::operation_aborted);
            if (ec == asio::error::operation_aborted) {
                close_all();
                co_return ec;
            }
            if (ec) continue;  // a connection that failed before it was accepted
            auto it = streams_.emplace(streams_.end(), std::move(sock));
            asio::co_spawn(acceptor_.get_executor(), serve(self, it), asio::detached);
        }
    }

    void stop() {
        stopped_ = true;
        error_code ignored;
        acceptor_.close(ignored);
        close_all();
    }

    tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }
    asio::any_io_executor executor() { return acceptor_.get_executor(); }

  private:
    static constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
    using response = http::response<http::string_body>;

    void close_all() {
        for (auto& st : streams_) st.close();
    }

    static asio::awaitable<void> serve(std::shared_ptr<status_server_impl> self,
                                       std::list<boost::beast::tcp_stream>::iterator it) {
        auto& stream = *it;
        boost::beast::flat_buffer buffer;
        for (;;) {
            http::request<http::string_body> req;
            stream.expires_after(std::chrono::seconds(30));
            auto [ec, n] = co_await http::async_read(stream, buffer, req, nothrow);
            if (ec) break;
            response res = co_await self->answer(req);
            res.version(req.version());
            res.keep_alive(req.keep_alive());
            res.prepare_payload();
            auto [wec, wn] = co_await http::async_write(stream, res, nothrow);
            if (wec || !res.keep_alive() || self->stopped_) break;
        }
        error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
        stream.close();
        self->streams_.erase(it);
    }

    asio::awaitable<response> answer(const http::request<http::string_body>& req) {
        response res;
        res.set(http::field::server, "redcoord");
        res.set(http::field::cache_control, "no-store");
        const auto target = std::string_view(req.target());
        const auto path = target.substr(0, target.find('?'));
        if (req.method() != http::verb::get && req.method() != http::verb::head) {
            res.result(http::status::method_not_allowed);
            res.set(http::field::allow, "GET, HEAD");
            res.body() = "only GET and HEAD\n";
        } else if (path == "/metrics" && m_) {
            co_await m_->async_collect(nothrow);  // a failed read leaves the last value
            res.result(http::status::ok);
            res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
            res.body() = m_->prometheus_text();
        } else if (path == "/health") {
            auto [ec, report] = co_await async_check_health(s_, opts_.health, nothrow);
            res.result(report.status == health_status::unhealthy ? http::status::service_unavailable
                                                                 : http::status::ok);
            res.set(http::field::content_type, "application/json");
            res.body() = report.to_json();
        } else {
            res.result(http::status::not_found);
            res.set(http::field::content_type, "text/plain");
            res.body() = m_ ? "try /metrics or /health\n" : "try /health\n";
        }
        if (req.method() == http::verb::head) {
            const auto size = res.body().size();
            res.body().clear();
            res.content_length(size);
        }
        co_return res;
    }

    session& s_;
    metrics* m_;
    status_server_options opts_;
    tcp::acceptor acceptor_;
    std::list<boost::beast::tcp_stream> streams_;
    bool stopped_ = false;
};

namespace {

tcp::endpoint parse_listen(const status_server_options& o) {
    const auto colon = o.listen.rfind(':');
    if (colon == std::string::npos) throw_bad_config("listen: '" + o.listen + "' is not host:port");
    std::string host = o.listen.substr(0, colon);
    const std::string port = o.listen.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    error_code ec;
    const auto address = asio::ip::make_address(host, ec);
    if (ec) throw_bad_config("listen: '" + host + "' is not an IP address");
    unsigned long p = 0;
    try {
        std::size_t used = 0;
        p = std::stoul(port, &used);
        if (used != port.size()) throw std::invalid_argument("trailing");
    } catch (const std::exception&) {
        throw_bad_config("listen: port '" + port + "' is not a number");
    }
    if (p > 65535) throw_bad_config("listen: port " + port + " is above 65535");
    if (!address.is_loopback() && !o.allow_remote)
        throw_bad_config("listen: " + host +
                         " is not a loopback address; set allow_remote to serve beyond this "
                         "host (the endpoint has no authentication)");
    return {address, static_cast<unsigned short>(p)};
}

}  // namespace
}  // namespace detail

status_server::status_server(session& s, metrics* m, status_server_options opts) {
    const auto at = detail::parse_listen(opts);
    impl_ = std::make_shared<detail::status_server_impl>(s, m, std::move(opts), at);
}

status_server::~status_server() { impl_->stop(); }

boost::asio::ip::tcp::endpoint status_server::local_endpoint() const {
    return impl_->local_endpoint();
}

void status_server::stop() { impl_->stop(); }

void status_server::run_impl(
    boost::asio::any_completion_handler<void(boost::system::error_code)> h) {
    detail::launch(impl_->executor(), impl_->run(), std::move(h));
}

}  // namespace redcoord
