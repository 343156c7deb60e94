#include <boost/asio/append.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include "server.hpp"

namespace redcoord::tools {
namespace detail {

using namespace std::chrono_literals;

namespace {

// A snapshot about once a second while a browser listens, sooner after an event but never
// more often than push_at_most_every; a browser more than client_backlog messages behind is
// dropped (it reconnects).
constexpr auto push_every = 1s;
constexpr auto push_at_most_every = 250ms;
constexpr std::size_t client_backlog = 64;

}  // namespace

dashboard_impl::dashboard_impl(session& s, dashboard_options o, tcp::endpoint at)
    : opts_(std::move(o)),
      views_(s, opts_.scheduler),
      acceptor_(s.get_executor()),
      tick_(s.get_executor()),
      sample_timer_(s.get_executor()) {
    opts_.url_shown = without_secrets(opts_.url_shown);
    acceptor_.open(at.protocol());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind(at);
    acceptor_.listen();
}

asio::awaitable<error_code> dashboard_impl::run() {
    auto self = shared_from_this();
    listen_to_events();
    asio::co_spawn(executor(), sample_loop(self), asio::detached);
    for (;;) {
        auto [ec, sock] = co_await acceptor_.async_accept(nothrow);
        if (stopped_ || ec == asio::error::operation_aborted) {
            stop();
            co_return error_code(asio::error::operation_aborted);
        }
        if (ec) continue;  // a connection that failed before it was accepted
        auto it = streams_.emplace(streams_.end(), std::move(sock));
        asio::co_spawn(executor(), serve(self, it), asio::detached);
    }
}

void dashboard_impl::stop() {
    stopped_ = true;
    error_code ignored;
    acceptor_.close(ignored);
    tick_.cancel();
    sample_timer_.cancel();
    member_watch_ = membership::watch();
    job_events_.unsubscribe();
    for (auto& c : clients_) {
        c->closed = true;
        c->wake.cancel();
    }
    for (auto& st : streams_) st.close();
}

asio::awaitable<void> dashboard_impl::serve(std::shared_ptr<dashboard_impl> self,
                                            std::list<beast::tcp_stream>::iterator it) {
    auto& stream = *it;
    beast::flat_buffer buffer;
    for (;;) {
        request req;
        stream.expires_after(30s);
        http::request_parser<http::string_body> parser;
        parser.body_limit(64 * 1024);
        auto [ec, n] = co_await http::async_read(stream, buffer, parser, nothrow);
        if (ec) break;
        req = parser.release();
        if (self->is_stream(req)) {
            co_await self->stream_to(stream, req);
            break;
        }
        response res = co_await self->answer(req);
        res.set(http::field::server, "redcoord-dashboard");
        res.set(http::field::cache_control, "no-store");
        res.set("X-Content-Type-Options", "nosniff");
        res.version(req.version());
        res.keep_alive(req.keep_alive());
        if (req.method() == http::verb::head) {
            const auto size = res.body().size();
            res.body().clear();
            res.content_length(size);
        } else {
            res.prepare_payload();
        }
        auto [wec, wn] = co_await http::async_write(stream, res, nothrow);
        if (wec || !res.keep_alive() || self->stopped_) break;
    }
    error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream.close();
    self->streams_.erase(it);
}

bool dashboard_impl::is_stream(const request& req) const {
    const std::string_view target = req.target();
    return req.method() == http::verb::get && target.substr(0, target.find('?')) == "/api/stream" &&
           host_allowed(req);
}

bool dashboard_impl::host_allowed(const request& req) const {
    return opts_.allow_remote || is_loopback_host(req[http::field::host]);
}

asio::awaitable<void> dashboard_impl::stream_to(beast::tcp_stream& stream, const request& req) {
    http::response<http::empty_body> head(http::status::ok, req.version());
    head.set(http::field::content_type, "text/event-stream");
    head.set(http::field::cache_control, "no-store");
    head.set(http::field::server, "redcoord-dashboard");
    head.keep_alive(false);
    http::response_serializer<http::empty_body> sr(head);
    auto [hec, hn] = co_await http::async_write_header(stream, sr, nothrow);
    if (hec) co_return;
    stream.expires_never();

    auto client = std::make_shared<sse_client>(executor());
    client->queue.push_back("retry: 2000\n\n");
    client->queue.push_back(message("info", info()));
    json::array tail(events_.begin(), events_.end());
    client->queue.push_back(message("events", tail));
    if (!last_snapshot_.empty() && pushing_) client->queue.push_back(last_snapshot_);
    auto it = clients_.insert(clients_.end(), client);
    start_pushing();

    while (!client->closed && !stopped_) {
        if (client->queue.empty()) {
            client->wake.expires_after(15s);
            auto [ec] = co_await client->wake.async_wait(nothrow);
            if (!ec) client->queue.push_back(": keep-alive\n\n");
            continue;
        }
        const std::string text = std::move(client->queue.front());
        client->queue.pop_front();
        stream.expires_after(30s);
        auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(text), nothrow);
        if (wec) break;
    }
    clients_.erase(it);
}

std::string dashboard_impl::message(std::string_view event, const json::value& data) {
    std::string out = "event: ";
    out.append(event);
    out.append("\ndata: ");
    out.append(json::serialize(data));
    out.append("\n\n");
    return out;
}

void dashboard_impl::broadcast(const std::string& text) {
    for (auto& c : clients_) {
        if (c->queue.size() >= client_backlog) {
            c->closed = true;  // too slow: it reconnects and starts afresh
        } else {
            c->queue.push_back(text);
        }
        c->wake.cancel();
    }
}

void dashboard_impl::start_pushing() {
    if (pushing_ || stopped_) {
        tick_.cancel();
        return;
    }
    pushing_ = true;
    asio::co_spawn(executor(), push_loop(shared_from_this()), asio::detached);
}

// A snapshot about once a second (sooner after an event), while a browser listens.
asio::awaitable<void> dashboard_impl::push_loop(std::shared_ptr<dashboard_impl> self) {
    while (!self->stopped_ && !self->clients_.empty()) {
        const auto started = std::chrono::steady_clock::now();
        const json::object snap = co_await self->snapshot();
        self->last_snapshot_ = message("snapshot", snap);
        self->broadcast(self->last_snapshot_);
        self->tick_.expires_at(started + push_every);
        co_await self->tick_.async_wait(nothrow);
        // Events wake it early, but never more often than this, however many come.
        while (!self->stopped_ && std::chrono::steady_clock::now() < started + push_at_most_every) {
            self->tick_.expires_at(started + push_at_most_every);
            co_await self->tick_.async_wait(nothrow);
        }
    }
    self->pushing_ = false;
}

}  // namespace detail

dashboard::dashboard(session& s, dashboard_options opts) {
    const auto at = detail::parse_listen(opts.listen, opts.allow_remote);
    impl_ = std::make_shared<detail::dashboard_impl>(s, std::move(opts), at);
}

dashboard::~dashboard() { impl_->stop(); }

boost::asio::ip::tcp::endpoint dashboard::local_endpoint() const { return impl_->local_endpoint(); }

const dashboard_options& dashboard::options() const noexcept { return impl_->options(); }

void dashboard::stop() { impl_->stop(); }

void dashboard::run_impl(boost::asio::any_completion_handler<void(boost::system::error_code)> h) {
    namespace asio = boost::asio;
    auto slot = asio::get_associated_cancellation_slot(h);
    if (slot.is_connected())
        slot.assign([w = std::weak_ptr<detail::dashboard_impl>(impl_)](asio::cancellation_type) {
            if (auto impl = w.lock()) impl->stop();
        });
    asio::co_spawn(impl_->executor(), impl_->run(),
                   [h = std::move(h)](std::exception_ptr ep, boost::system::error_code ec) mutable {
                       auto slot = asio::get_associated_cancellation_slot(h);
                       if (slot.is_connected()) slot.clear();
                       if (ep) ec = asio::error::operation_aborted;
                       asio::dispatch(asio::append(std::move(h), ec));
                   });
}

}  // namespace redcoord::tools
