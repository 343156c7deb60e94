#include "tcp_proxy.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <atomic>
#include <deque>
#include <functional>
#include <future>
#include <set>
#include <thread>
#include <utility>
#include <vector>

namespace redcoord::test {

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;
using boost::system::error_code;

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t read_size = 64 * 1024;

// Indexes of the two directions in per-direction arrays.
constexpr int up = 0;    // to the server
constexpr int down = 1;  // to the client

// Bytes read from one end, to be written to the other no earlier than `due`.
struct chunk {
    steady::time_point due;
    std::vector<char> bytes;
};

// One direction of one connection: what was read and not yet written.
struct flow {
    explicit flow(asio::io_context& ioc) : wake(ioc, steady::time_point::max()) {}
    std::deque<chunk> held;
    bool ended = false;  // the reading end sent FIN
    // The writer sleeps on it until the next chunk is due; anything that may change what it
    // should do cancels it.
    asio::steady_timer wake;
};

// A client connection and the server connection opened for it.
struct link {
    link(asio::io_context& ioc, tcp::socket c)
        : client(std::move(c)), server(ioc), flows{flow(ioc), flow(ioc)} {}

    tcp::socket& from(int dir) { return dir == up ? client : server; }
    tcp::socket& to(int dir) { return dir == up ? server : client; }

    tcp::socket client;
    tcp::socket server;
    std::array<flow, 2> flows;
    int writers_done = 0;
    bool closed = false;
};

}  // namespace

struct tcp_proxy::impl {
    explicit impl(std::uint16_t target_port)
        : acceptor(ioc, tcp::endpoint(asio::ip::address_v4::loopback(), 0)),
          target(asio::ip::address_v4::loopback(), target_port),
          port(acceptor.local_endpoint().port()) {}

    // Runs fn on the proxy's thread and returns once it ran.
    void run_here(std::function<void()> fn) {
        std::packaged_task<void()> task(std::move(fn));
        auto done = task.get_future();
        asio::post(ioc, std::ref(task));
        done.get();
    }

    static std::array<bool, 2> sides(direction dir) {
        return {dir != direction::to_client, dir != direction::to_server};
    }

    void wake_writers() {
        for (const auto& l : links)
            for (auto& p : l->flows) p.wake.cancel();
    }

    // Closes both ends; with `reset`, SO_LINGER 0 makes the close send an RST.
    void close(std::shared_ptr<link> l, bool reset) {
        if (l->closed) return;
        l->closed = true;
        error_code ignored;
        for (auto* s : {&l->client, &l->server}) {
            if (reset && s->is_open()) s->set_option(asio::socket_base::linger(true, 0), ignored);
            s->close(ignored);
        }
        for (auto& p : l->flows) p.wake.cancel();
        links.erase(l);
    }

    asio::awaitable<void> accept_loop() {
        for (;;) {
            tcp::socket client(ioc);
            auto [ec] = co_await acceptor.async_accept(client, nothrow);
            if (!acceptor.is_open()) co_return;
            if (ec) continue;
            auto l = std::make_shared<link>(ioc, std::move(client));
            links.insert(l);
            ++accepted_count;
            asio::co_spawn(ioc, serve(l), asio::detached);
        }
    }

    asio::awaitable<void> serve(std::shared_ptr<link> l) {
        auto [ec] = co_await l->server.async_connect(target, nothrow);
        if (l->closed) co_return;
        if (ec) {
            // The server is down: the client sees its connection refused as a reset.
            close(l, true);
            co_return;
        }
        error_code ignored;
        l->client.set_option(tcp::no_delay(true), ignored);
        l->server.set_option(tcp::no_delay(true), ignored);
        for (int dir : {up, down}) {
            asio::co_spawn(ioc, read_side(l, dir), asio::detached);
            asio::co_spawn(ioc, write_side(l, dir), asio::detached);
        }
    }

    asio::awaitable<void> read_side(std::shared_ptr<link> l, int dir) {
        auto& p = l->flows[dir];
        for (;;) {
            std::vector<char> bytes(read_size);
            auto [ec, n] = co_await l->from(dir).async_read_some(asio::buffer(bytes), nothrow);
            if (l->closed) co_return;
            if (ec == asio::error::eof) {
                p.ended = true;
                p.wake.cancel();
                co_return;
            }
            if (ec) {
                // A reset or an error on one end: the other end gets a reset as well.
                close(l, true);
                co_return;
            }
            bytes.resize(n);
            chunk c{steady::now() + delay[dir], std::move(bytes)};
            p.held.push_back(std::move(c));
            p.wake.cancel();
        }
    }

    asio::awaitable<void> write_side(std::shared_ptr<link> l, int dir) {
        auto& p = l->flows[dir];
        for (;;) {
            if (l->closed) co_return;
            auto until = steady::time_point::max();
            if (!blackholed[dir] && !p.held.empty()) {
                until = p.held.front().due;
                if (until <= steady::now()) {
                    auto [ec, n] = co_await asio::async_write(
                        l->to(dir), asio::buffer(p.held.front().bytes), nothrow);
                    if (l->closed) co_return;
                    if (ec) {
                        close(l, true);
                        co_return;
                    }
                    p.held.pop_front();
                    continue;
                }
            } else if (p.held.empty() && p.ended) {
                // Everything read was written: pass the FIN on.
                error_code ignored;
                l->to(dir).shutdown(tcp::socket::shutdown_send, ignored);
                if (++l->writers_done == 2) close(l, false);
                co_return;
            }
            p.wake.expires_at(until);
            co_await p.wake.async_wait(nothrow);
        }
    }

    void close_all(bool reset) {
        while (!links.empty()) close(*links.begin(), reset);
    }

    void shut_down() {
        error_code ignored;
        acceptor.close(ignored);
        close_all(false);
    }

    asio::io_context ioc;
    tcp::acceptor acceptor;
    tcp::endpoint target;
    std::uint16_t port;
    // Touched on the proxy's thread only.
    std::array<std::chrono::milliseconds, 2> delay{};
    std::array<bool, 2> blackholed{};
    std::set<std::shared_ptr<link>> links;
    std::atomic<std::size_t> accepted_count{0};
    std::thread thread;
};

tcp_proxy::tcp_proxy(std::uint16_t target_port) : impl_(std::make_unique<impl>(target_port)) {
    asio::co_spawn(impl_->ioc, impl_->accept_loop(), asio::detached);
    impl_->thread = std::thread([this] { impl_->ioc.run(); });
}

tcp_proxy::~tcp_proxy() {
    // Closing the acceptor and every socket ends every coroutine, so run() returns.
    asio::post(impl_->ioc, [this] { impl_->shut_down(); });
    impl_->thread.join();
}

std::uint16_t tcp_proxy::port() const noexcept { return impl_->port; }

void tcp_proxy::set_delay(std::chrono::milliseconds delay, direction dir) {
    impl_->run_here([this, delay, dir] {
        const auto on = impl::sides(dir);
        for (int d : {up, down})
            if (on[d]) impl_->delay[d] = delay;
    });
}

void tcp_proxy::blackhole(direction dir) {
    impl_->run_here([this, dir] {
        const auto on = impl::sides(dir);
        for (int d : {up, down})
            if (on[d]) impl_->blackholed[d] = true;
    });
}

void tcp_proxy::lift_blackhole(direction dir) {
    impl_->run_here([this, dir] {
        const auto on = impl::sides(dir);
        for (int d : {up, down})
            if (on[d]) impl_->blackholed[d] = false;
        impl_->wake_writers();
    });
}

void tcp_proxy::reset_connections() {
    impl_->run_here([this] { impl_->close_all(true); });
}

std::size_t tcp_proxy::accepted() const { return impl_->accepted_count.load(); }

std::size_t tcp_proxy::open_connections() const {
    std::size_t n = 0;
    impl_->run_here([&] { n = impl_->links.size(); });
    return n;
}

std::size_t tcp_proxy::held_bytes(direction dir) const {
    std::size_t n = 0;
    impl_->run_here([&] {
        const auto on = impl::sides(dir);
        for (const auto& l : impl_->links)
            for (int d : {up, down})
                if (on[d])
                    for (const auto& c : l->flows[d].held) n += c.bytes.size();
    });
    return n;
}

}  // namespace redcoord::test
