#include "connection_impl.hpp"
#include "time_math.hpp"

#include <boost/asio/append.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cstring>

namespace redcoord {

namespace asio = boost::asio;
using boost::system::error_code;

// ---------------------------------------------------------------------------------------------
// The public class: a thin shell around the shared implementation.

connection::connection(executor_type ex)
    : impl_(std::make_shared<detail::connection_impl>(std::move(ex))) {}

connection::~connection() { impl_->stop(); }

connection::executor_type connection::get_executor() const noexcept {
    return impl_->get_executor();
}

void connection::cancel() { impl_->stop(); }
bool connection::is_connected() const noexcept { return impl_->connected(); }
const usage& connection::get_usage() const noexcept { return impl_->get_usage(); }
const diagnostics& connection::run_diagnostics() const noexcept {
    return impl_->run_diagnostics();
}

void connection::run_impl(const std::shared_ptr<detail::connection_impl>& impl, config cfg,
                          run_handler handler) {
    impl->run(std::move(cfg), std::move(handler));
}

void connection::exec_impl(detail::connection_impl& impl, const request& req,
                           detail::any_adapter adapter, diagnostics* diag, bool inline_ok,
                           exec_handler handler) {
    impl.exec(req, adapter, diag, inline_ok, std::move(handler));
}

void connection::receive_impl(detail::connection_impl& impl, push_message& out,
                              run_handler handler) {
    impl.receive(out, std::move(handler));
}

namespace detail {
namespace {

constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);
// The reader lets the writer send what the replies handled so far have queued once per this
// many replies, or sooner once that much is queued (a reply may complete many operations,
// e.g. a lock batch's).
constexpr std::size_t flush_every = 32;
constexpr std::size_t flush_bytes = 2048;

// Boost 1.81's any_completion_handler move assignment recurses forever (it copies from an
// lvalue, which picks the wrapping constructor); swapping with a moved-into temporary does not.
template <class Signature>
void assign(asio::any_completion_handler<Signature>& to,
            asio::any_completion_handler<Signature>&& from) noexcept {
    asio::any_completion_handler<Signature>(std::move(from)).swap(to);
}

resp3::parser_limits limits_of(const config& cfg) {
    return {cfg.max_nesting_depth, cfg.max_bulk_size, cfg.max_aggregate_size};
}

// Index of the first node after any leading attributes.
std::size_t first_value(std::span<const resp3::node_view> msg) {
    std::size_t i = 0;
    skip_attributes(msg, i);
    return std::min(i, msg.size() - 1);
}

bool starts_with(std::string_view s, std::string_view prefix) {
    return s.substr(0, prefix.size()) == prefix;
}

// Checks what async_run cannot work without; the parser of connection strings checks the rest.
error_code validate(const config& cfg, diagnostics& diag) {
    auto bad = [&](std::string_view what) {
        diag.set_client_message(what);
        return error_code(error::bad_config);
    };
    if (cfg.unix_socket.empty() && cfg.endpoints.empty()) return bad("config.endpoints is empty");
    for (const auto& ep : cfg.endpoints)
        if (ep.host.empty() && cfg.unix_socket.empty())
            return bad("config.endpoints: an endpoint has an empty host");
    if (cfg.connect_retry < 1)
        return bad("config.connect_retry: " + std::to_string(cfg.connect_retry) + " is below 1");
    if (cfg.database < 0)
        return bad("config.database: " + std::to_string(cfg.database) + " is negative");
    const std::pair<const char*, std::chrono::milliseconds> durations[] = {
        {"config.connect_timeout", cfg.connect_timeout},
        {"config.request_timeout", cfg.request_timeout},
        {"config.health_check_interval", cfg.health_check_interval},
        {"config.reconnect_wait_max", cfg.reconnect_wait_max}};
    for (const auto& [field, d] : durations)
        if (auto problem = detail::duration_problem(d, true); !problem.empty())
            return bad(field + (": " + problem));
    if (cfg.reconnect_wait_min.count() <= 0 || cfg.reconnect_wait_max < cfg.reconnect_wait_min)
        return bad("config.reconnect_wait_min/max: need 0 < min <= max");
    if (cfg.max_nesting_depth == 0 || cfg.max_bulk_size == 0 || cfg.max_aggregate_size == 0)
        return bad("config.max_*: parser limits must be positive");
    if (cfg.max_blocking_connections == 0)
        return bad("config.max_blocking_connections: must be at least 1");
    return {};
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Construction and the run loop.

connection_impl::connection_impl(asio::any_io_executor ex, connection_impl* parent)
    : ex_(std::move(ex)),
      parent_(parent),
      stream_(ex_),
      writer_signal_(ex_),
      sweeper_timer_(ex_),
      backoff_timer_(ex_),
      health_timer_(ex_),
      connect_timer_(ex_) {}

connection_impl::~connection_impl() {
    fail_waiting(asio::error::operation_aborted);
    fail_written(asio::error::operation_aborted);
}

void connection_impl::run(config cfg, run_handler handler) {
    diagnostics diag;
    error_code ec = validate(cfg, diag);
    if (!ec && state_ == run_state::running) {
        ec = error::invalid_argument;
        diag.set_client_message("async_run is already running on this connection");
    }
    if (ec) {
        run_diag_ = diag;
        if (handler) asio::post(ex_, asio::append(std::move(handler), ec));
        return;
    }
    cfg_ = std::move(cfg);
    parser_ = resp3::parser(limits_of(cfg_));
    state_ = run_state::running;
    stopping_ = false;
    assign(run_handler_, std::move(handler));
    if (run_handler_) {
        run_slot_ = asio::get_associated_cancellation_slot(run_handler_);
        if (run_slot_.is_connected())
            run_slot_.assign([this](asio::cancellation_type) { stop(); });
    }
    for (auto& b : blocked_before_run_)
        side_for_blocking().exec(*b.req, b.adapter, b.diag, b.inline_ok, std::move(b.handler));
    blocked_before_run_.clear();
    asio::co_spawn(ex_, run_loop(shared_from_this()), asio::detached);
}

// `self` keeps the implementation alive for as long as the loop runs.
asio::awaitable<void> connection_impl::run_loop([[maybe_unused]] std::shared_ptr<connection_impl> self) {
    int attempt = 0;
    int first_failures = 0;
    bool ever_connected = false;
    error_code final_ec;
    while (!stopping_) {
        error_code ec = co_await connect_once();
        if (stopping_) break;
        if (!ec) {
            connected_ = true;
            ++usage_.connects;
            attempt = 0;
            if (ever_connected) {
                push_message gap;
                gap.kind = "gap";
                gap.gap_reason = "reconnect";
                deliver_push(std::move(gap));
            }
            ever_connected = true;
            notify_writer();
            ec = co_await serve();
            connected_ = false;
            stream_.close();
            if (stopping_) break;
            ++usage_.connection_losses;
            run_diag_.set_client_message("connection lost: " + ec.message());
            fail_written(error::connection_lost);
        } else {
            stream_.close();
            if (!ever_connected && cfg_.abort_connect && ++first_failures >= cfg_.connect_retry) {
                final_ec = ec;
                break;
            }
        }
        fail_fast_waiting();
        backoff_timer_.expires_after(backoff(attempt++));
        co_await backoff_timer_.async_wait(use_nothrow);
    }
    if (!final_ec) final_ec = asio::error::operation_aborted;
    state_ = run_state::stopped;
    connected_ = false;
    stream_.close();
    fail_written(final_ec);
    fail_waiting(final_ec);
    for (auto& s : sides_) s->stop();
    if (receive_handler_ && pushes_.empty() && !push_overflow_)
        complete_receive(error::run_not_started);
    if (run_handler_) {
        if (run_slot_.is_connected()) run_slot_.clear();
        auto h = std::move(run_handler_);
        asio::dispatch(ex_, asio::append(std::move(h), final_ec));
    }
}

asio::awaitable<error_code> connection_impl::connect_once() {
    using namespace asio::experimental::awaitable_operators;
    std::vector<endpoint> targets = cfg_.endpoints;
    if (!cfg_.unix_socket.empty()) targets = {endpoint{}};
    if (!cfg_.service_name.empty() && cfg_.unix_socket.empty()) {
        endpoint master;
        if (auto ec = co_await resolve_sentinel(master)) co_return ec;
        targets = {master};
    }
    error_code ec;
    for (const auto& target : targets) {
        if (stopping_) co_return asio::error::operation_aborted;
        auto attempt = [this, target]() -> asio::awaitable<error_code> {
            if (auto ec = co_await stream_.connect(cfg_, target)) {
                run_diag_.set_client_message("connect to " + target.host + ":" +
                                             std::to_string(target.port) + ": " + ec.message());
                co_return ec;
            }
            co_return co_await handshake();
        };
        if (cfg_.connect_timeout.count() == 0) {
            ec = co_await attempt();
        } else {
            connect_timer_.expires_after(cfg_.connect_timeout);
            auto r = co_await (attempt() || connect_timer_.async_wait(use_nothrow));
            if (r.index() == 1) {
                ec = error::connect_timeout;
                run_diag_.set_client_message("connecting to " + target.host + ":" +
                                             std::to_string(target.port) + " took longer than " +
                                             std::to_string(cfg_.connect_timeout.count()) + " ms");
            } else {
                ec = std::get<0>(r);
            }
        }
        if (!ec) co_return ec;
        stream_.close();
    }
    co_return ec;
}

asio::awaitable<error_code> connection_impl::resolve_sentinel(endpoint& master) {
    // Ask each sentinel in turn which node is the master of the service.
    config sentinel_cfg = cfg_;
    for (const auto& sentinel : cfg_.endpoints) {
        if (stopping_) co_return asio::error::operation_aborted;
        if (co_await stream_.connect(sentinel_cfg, sentinel)) continue;
        request req;
        req.push("SENTINEL", "get-master-addr-by-name", cfg_.service_name);
        read_begin_ = read_end_ = 0;
        parser_.clear();
        if (co_await stream_.write(asio::buffer(req.payload()))) continue;
        if (co_await read_message()) continue;
        std::optional<std::pair<std::string, std::string>> addr;
        error_code ec;
        from_resp3(parser_.message(), addr, ec);
        parser_.clear();
        stream_.close();
        if (ec || !addr) continue;
        std::uint16_t port = 0;
        auto [p, e] = std::from_chars(addr->second.data(), addr->second.data() + addr->second.size(), port);
        if (e != std::errc{}) continue;
        master = {addr->first, port};
        co_return error_code{};
    }
    run_diag_.set_client_message("no sentinel named a master for service '" + cfg_.service_name + "'");
    co_return error::sentinel_unavailable;
}

asio::awaitable<error_code> connection_impl::handshake() {
    read_begin_ = read_end_ = 0;
    parser_.clear();
    request req;
    std::vector<std::string> hello = {"3"};
    if (!cfg_.password.empty()) {
        hello.insert(hello.end(), {"AUTH", cfg_.username.empty() ? "default" : cfg_.username,
                                   cfg_.password});
    }
    std::string name = cfg_.client_name;
    if (parent_ && !name.empty()) name += ":blocking";
    if (!name.empty()) hello.insert(hello.end(), {"SETNAME", name});
    req.push("HELLO", hello);
    if (cfg_.database != 0) req.push("SELECT", cfg_.database);

    if (auto ec = co_await stream_.write(asio::buffer(req.payload()))) co_return ec;
    for (std::size_t reply = 0; reply < req.expected_responses();) {
        if (auto ec = co_await read_message()) co_return ec;
        auto msg = parser_.message();
        const auto& head = msg[first_value(msg)];
        if (head.data_type == resp3::type::push) {
            on_push(msg);
            parser_.clear();
            continue;
        }
        if (resp3::is_error(head.data_type)) {
            run_diag_.set_server_message(head.value);
            const bool auth = starts_with(head.value, "WRONGPASS") ||
                              starts_with(head.value, "NOAUTH") ||
                              starts_with(head.value, "NOPERM");
            parser_.clear();
            co_return auth ? error::auth_failed : error::handshake_failed;
        }
        if (reply == 0) {
            // HELLO's map carries our client id, needed to CLIENT UNBLOCK a side connection.
            std::map<std::string, resp3::tree> info;
            error_code ec;
            from_resp3(msg, info, ec);
            if (auto it = info.find("id"); !ec && it != info.end())
                std::from_chars(it->second.value.data(),
                                it->second.value.data() + it->second.value.size(), client_id_);
        }
        parser_.clear();
        ++reply;
    }
    run_diag_.clear();
    if (auto restore = restore_subscriptions_request()) {
        if (auto ec = co_await stream_.write(asio::buffer(restore->payload()))) co_return ec;
    }
    co_return error_code{};
}

asio::awaitable<error_code> connection_impl::serve() {
    using namespace asio::experimental::awaitable_operators;
    last_read_ = clock::now();
    ping_outstanding_ = false;
    auto r = co_await (reader() || writer() || health_checker());
    co_return std::visit([](error_code ec) { return ec; }, r);
}

// ---------------------------------------------------------------------------------------------
// Reading.

// Parses what the read buffer holds; true when a complete message is in parser_.
bool connection_impl::parse_buffered(error_code& ec) {
    if (read_begin_ == read_end_) return false;
    const std::size_t n = parser_.consume(
        std::string_view(read_buf_.data() + read_begin_, read_end_ - read_begin_), ec);
    read_begin_ += n;
    message_bytes_ += n;
    return !ec && parser_.done();
}

asio::awaitable<error_code> connection_impl::fill_read_buffer() {
    if (read_begin_ == read_end_) {
        read_begin_ = read_end_ = 0;
    } else if (read_begin_ > 0) {
        // Keep the unconsumed tail (an incomplete header line) at the front.
        std::memmove(read_buf_.data(), read_buf_.data() + read_begin_, read_end_ - read_begin_);
        read_end_ -= read_begin_;
        read_begin_ = 0;
    }
    constexpr std::size_t min_free = 16 * 1024;
    if (read_buf_.size() - read_end_ < min_free)
        read_buf_.resize(std::max<std::size_t>(read_buf_.size() * 2, 64 * 1024));
    auto [ec, n] = co_await stream_.read_some(
        asio::buffer(read_buf_.data() + read_end_, read_buf_.size() - read_end_));
    if (ec) co_return ec;
    read_end_ += n;
    usage_.bytes_read += n;
    last_read_ = clock::now();
    co_return error_code{};
}

asio::awaitable<error_code> connection_impl::read_message() {
    for (;;) {
        error_code ec;
        if (parse_buffered(ec)) co_return error_code{};
        if (ec) co_return ec;
        if (auto ec = co_await fill_read_buffer()) co_return ec;
    }
}

// The hot loop: every complete message in the buffer is handled before the next read, without
// a coroutine call per message.
asio::awaitable<error_code> connection_impl::reader() {
    co_await asio::this_coro::throw_if_cancelled(false);
    for (;;) {
        error_code ec;
        std::size_t handled = 0;
        while (parse_buffered(ec)) {
            ec = on_message(parser_.message());
            parser_.clear();
            message_bytes_ = 0;
            if (ec) co_return ec;
            // The handlers resumed by these replies have queued new requests: let the writer
            // send them now, so the server works on them while the rest of the buffer is
            // handled here (the two overlap instead of taking turns).
            if ((++handled % flush_every == 0 || queued_bytes_ >= flush_bytes) &&
                !waiting_.empty()) {
                co_await asio::post(ex_, asio::use_awaitable);
                if (stopping_) co_return asio::error::operation_aborted;
            }
        }
        if (ec) co_return ec;
        if (auto ec = co_await fill_read_buffer()) co_return ec;
    }
}

error_code connection_impl::on_message(std::span<const resp3::node_view> msg) {
    const auto& head = msg[first_value(msg)];
    if (head.data_type == resp3::type::push) {
        on_push(msg);
        return {};
    }
    if (written_.empty()) return error::unexpected_reply;
    ++usage_.replies_received;
    pending_request* p = written_.front();
    p->bytes += message_bytes_;
    if (!p->completed) {
        error_code ec;
        if (resp3::is_error(head.data_type)) {
            ec = starts_with(head.value, "NOSCRIPT") ? error::noscript : error::server_error;
            if (p->adapter.wants_errors()) {
                error_code ignored;
                p->adapter(p->received, msg, ignored);
            }
            if (!p->first_error && p->diag) p->diag->set_server_message(head.value);
        } else {
            p->adapter(p->received, msg, ec);
            if (ec && !p->first_error && p->diag) {
                // An error inside an aggregate (e.g. one command of EXEC) carries its own text.
                auto err = std::find_if(msg.begin(), msg.end(), [](const auto& n) {
                    return resp3::is_error(n.data_type);
                });
                if (err != msg.end())
                    p->diag->set_server_message(err->value);
                else
                    p->diag->set_client_message("reply " + std::to_string(p->received) + " (" +
                                                std::string(resp3::to_string(head.data_type)) +
                                                "): " + ec.message());
            }
        }
        if (ec && !p->first_error) p->first_error = ec;
    }
    if (++p->received < p->expected) return {};
    written_.pop_front();
    if (p->blocking && --blocking_in_flight_ == 0) blocked_until_ = clock::time_point::min();
    if (p->is_ping) ping_outstanding_ = false;
    if (!p->completed) complete(p, p->first_error, true);
    release(p);
    return {};
}

void connection_impl::on_push(std::span<const resp3::node_view> msg) {
    push_message out;
    out.nodes.reserve(msg.size());
    for (const auto& n : msg) out.nodes.emplace_back(n);
    // The push's scalar elements, in order: kind, then channel/pattern/payload by kind.
    std::vector<std::string_view> elems;
    std::size_t i = first_value(msg) + 1;
    while (i < msg.size()) {
        const auto& n = msg[i];
        elems.push_back(resp3::is_aggregate(n.data_type) ? std::string_view{} : n.value);
        skip_value(msg, i);
    }
    auto at = [&](std::size_t k) { return k < elems.size() ? std::string(elems[k]) : std::string(); };
    out.kind = at(0);
    if (out.kind == "pmessage") {
        out.pattern = at(1);
        out.channel = at(2);
        out.payload = at(3);
    } else if (out.kind == "psubscribe" || out.kind == "punsubscribe") {
        out.pattern = at(1);
        out.payload = at(2);
    } else {
        out.channel = at(1);
        out.payload = at(2);
    }
    deliver_push(std::move(out));
}

void connection_impl::deliver_push(push_message msg) {
    if (!msg.is_gap()) ++usage_.pushes_received;
    if (receive_handler_ && !push_overflow_ && pushes_.empty()) {
        *receive_out_ = std::move(msg);
        complete_receive({});
        return;
    }
    pushes_.push_back(std::move(msg));
    if (pushes_.size() > cfg_.max_pending_pushes) {
        pushes_.pop_front();
        ++usage_.pushes_dropped;
        push_overflow_ = true;
    }
    if (receive_handler_) take_push(*receive_out_), complete_receive({});
}

void connection_impl::take_push(push_message& out) {
    if (push_overflow_) {
        push_overflow_ = false;
        out = push_message{};
        out.kind = "gap";
        out.gap_reason = "overflow";
        return;
    }
    out = std::move(pushes_.front());
    pushes_.pop_front();
}

void connection_impl::receive(push_message& out, run_handler handler) {
    error_code ec;
    if (receive_handler_) {
        ec = error::invalid_argument;  // one receiver at a time
    } else if (push_overflow_ || !pushes_.empty()) {
        take_push(out);
    } else if (state_ == run_state::stopped) {
        ec = error::run_not_started;
    } else {
        receive_out_ = &out;
        assign(receive_handler_, std::move(handler));
        receive_slot_ = asio::get_associated_cancellation_slot(receive_handler_);
        if (receive_slot_.is_connected())
            receive_slot_.assign([this](asio::cancellation_type) {
                complete_receive(asio::error::operation_aborted);
            });
        return;
    }
    asio::post(ex_, asio::append(std::move(handler), ec));
}

void connection_impl::complete_receive(error_code ec) {
    if (!receive_handler_) return;
    if (receive_slot_.is_connected()) receive_slot_.clear();
    auto h = std::move(receive_handler_);
    receive_out_ = nullptr;
    asio::dispatch(ex_, asio::append(std::move(h), ec));
}

// ---------------------------------------------------------------------------------------------
// Writing.

asio::awaitable<error_code> connection_impl::writer() {
    co_await asio::this_coro::throw_if_cancelled(false);
    std::vector<pending_request*> no_reply;  // SUBSCRIBE and friends: done once written
    for (;;) {
        if (stopping_) co_return asio::error::operation_aborted;
        write_buf_.clear();
        queued_bytes_ = 0;
        std::size_t commands = 0;
        while (!waiting_.empty()) {
            pending_request* p = waiting_.front();
            waiting_.pop_front();
            if (p->completed) {  // cancelled or timed out before it was written
                release(p);
                continue;
            }
            write_buf_.append(p->req->payload());
            commands += p->req->commands();
            apply_subscriptions(*p->req);
            p->st = pending_request::state::written;
            if (p->expected == 0) {
                no_reply.push_back(p);
                continue;
            }
            written_.push_back(p);
            if (p->blocking) {
                ++blocking_in_flight_;
                const auto block = p->req->blocking_time();
                const auto until =
                    block ? detail::sat_add(clock::now(), *block) : clock::time_point::max();
                blocked_until_ = std::max(blocked_until_, until);
            }
        }
        if (write_buf_.empty()) {
            writer_signal_.expires_at(clock::time_point::max());
            co_await writer_signal_.async_wait(use_nothrow);
            // notify_writer() ends this wait too, so only the coroutine's state tells that serve()
            // cancelled us (the reader or the health checker ended): without this check an idle
            // writer would wait again and serve() would never return to reconnect.
            auto cs = co_await asio::this_coro::cancellation_state;
            if (cs.cancelled() != asio::cancellation_type::none)
                co_return asio::error::operation_aborted;
            continue;
        }
        auto ec = co_await stream_.write(asio::buffer(write_buf_));
        ++usage_.writes;
        usage_.bytes_written += write_buf_.size();
        usage_.commands_written += commands;
        // The subscriptions are remembered and restored on reconnect even if this write failed.
        for (auto* p : no_reply) {
            if (!p->completed) complete(p, {});
            release(p);
        }
        no_reply.clear();
        if (ec) co_return ec;
    }
}

void connection_impl::notify_writer() { writer_signal_.cancel(); }

void connection_impl::apply_subscriptions(const request& req) {
    using k = subscription_change::kind;
    for (const auto& change : req.subscription_changes()) {
        auto& set = (change.what == k::subscribe || change.what == k::unsubscribe) ? channels_
                    : (change.what == k::psubscribe || change.what == k::punsubscribe)
                        ? patterns_
                        : shard_channels_;
        const bool add = change.what == k::subscribe || change.what == k::psubscribe ||
                         change.what == k::ssubscribe;
        if (add)
            set.insert(change.channels.begin(), change.channels.end());
        else if (change.channels.empty())
            set.clear();
        else
            for (const auto& c : change.channels) set.erase(c);
    }
}

std::unique_ptr<request> connection_impl::restore_subscriptions_request() const {
    if (channels_.empty() && patterns_.empty() && shard_channels_.empty()) return nullptr;
    auto req = std::make_unique<request>();
    if (!channels_.empty()) req->push("SUBSCRIBE", channels_);
    if (!patterns_.empty()) req->push("PSUBSCRIBE", patterns_);
    if (!shard_channels_.empty()) req->push("SSUBSCRIBE", shard_channels_);
    return req;
}

// ---------------------------------------------------------------------------------------------
// Health.

asio::awaitable<error_code> connection_impl::health_checker() {
    co_await asio::this_coro::throw_if_cancelled(false);
    const auto interval = cfg_.health_check_interval;
    clock::time_point ping_at{};
    for (;;) {
        health_timer_.expires_after(interval.count() > 0 ? clock::duration(interval)
                                                         : clock::duration::max() / 2);
        const auto due = health_timer_.expiry();
        auto [ec] = co_await health_timer_.async_wait(use_nothrow);
        if (ec || stopping_) co_return asio::error::operation_aborted;
        // Woken far too late: this process was stalled, not the server, and replies may be
        // waiting unread in the socket. Judge the server again from now on.
        if (clock::now() - due > interval / 2) {
            last_read_ = clock::now();
            continue;
        }
        // A blocked command (BLPOP on a side connection, WAIT on any) silences the server
        // legitimately, for as long as it may block; past that, silence counts again.
        if (blocking_in_flight_ > 0 && clock::now() < blocked_until_) {
            last_read_ = clock::now();
            continue;
        }
        const auto idle = clock::now() - last_read_;
        // Dead only when a PING has had a whole interval to be answered: timer jitter must
        // not fail a connection that was never asked.
        if (idle >= 2 * interval && ping_outstanding_ && clock::now() - ping_at >= interval) {
            run_diag_.set_client_message("no byte from the server for " +
                                         std::to_string(2 * interval.count()) + " ms");
            co_return error::health_check_failed;
        }
        if (idle >= interval && !ping_outstanding_) {
            request ping;
            ping.push("PING");
            enqueue_internal(std::move(ping))->is_ping = true;
            ping_outstanding_ = true;
            ping_at = clock::now();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests.

void connection_impl::post_error(exec_handler handler, error_code ec) {
    asio::post(ex_, asio::append(std::move(handler), ec, std::size_t{0}));
}

void connection_impl::exec(const request& req, any_adapter adapter, diagnostics* diag,
                           bool inline_ok, exec_handler handler) {
    if (diag) diag->clear();
    auto fail = [&](error_code ec, std::string message) {
        if (diag) diag->set_client_message(message);
        post_error(std::move(handler), ec);
    };
    if (req.commands() == 0) return fail(error::invalid_argument, "the request has no command");
    if (adapter.expected() != any_adapter::npos && adapter.expected() != req.expected_responses())
        return fail(error::incompatible_size,
                    "the response holds " + std::to_string(adapter.expected()) +
                        " values but the request expects " +
                        std::to_string(req.expected_responses()) + " replies");
    if (state_ == run_state::stopped)
        return fail(error::run_not_started, "async_run has ended on this connection");

    // WAIT and WAITAOF stay here: they confirm this connection's writes, and no other's.
    if (req.has_blocking_command() && !parent_) {
        if (state_ == run_state::running)
            side_for_blocking().exec(req, adapter, diag, inline_ok, std::move(handler));
        else
            blocked_before_run_.push_back({&req, adapter, diag, inline_ok, std::move(handler)});
        return;
    }
    const auto& rc = req.get_config();
    if (rc.fail_fast.value_or(cfg_.fail_fast_when_disconnected) && !connected_)
        return fail(error::not_connected, "not connected and the request is fail-fast");

    auto p = std::make_unique<pending_request>();
    p->req = &req;
    p->adapter = adapter;
    p->diag = diag;
    p->same_executor = inline_ok;
    assign(p->handler, std::move(handler));
    p->expected = req.expected_responses();
    p->blocking = req.has_blocking_command() || req.has_wait_command();
    p->retry = rc.retry_on_connection_lost;
    auto timeout = rc.timeout.value_or(cfg_.request_timeout);
    if (timeout.count() > 0 && p->blocking) {
        if (auto block = req.blocking_time())
            timeout = detail::sat_add(timeout, *block);
        else
            timeout = std::chrono::milliseconds(0);  // blocks without limit: cancel to stop it
    }
    if (timeout.count() > 0) {
        p->deadline = detail::sat_add(clock::now(), timeout);
        arm_sweeper(p->deadline);
    }
    p->slot = asio::get_associated_cancellation_slot(p->handler);
    if (p->slot.is_connected())
        p->slot.assign([this, raw = p.get()](asio::cancellation_type) { cancel_request(raw); });
    enqueue(std::move(p));
}

void connection_impl::enqueue(std::unique_ptr<pending_request> p) {
    queued_bytes_ += p->req->payload().size();
    waiting_.push_back(p.release());
    if (connected_) notify_writer();
}

void connection_impl::complete(pending_request* p, error_code ec, bool from_reader) {
    p->completed = true;
    if (p->slot.is_connected()) p->slot.clear();
    if (!p->handler) return;
    exec_handler h(std::move(p->handler));
    if (!from_reader) {
        // Cancellation, timeouts and failures may come from inside user code: never resume a
        // handler inside its caller.
        asio::post(ex_, asio::append(std::move(h), ec, p->bytes));
    } else if (p->same_executor) {
        // The reader runs on ex_; a handler that belongs to ex_ too (a coroutine of the same
        // io_context) is resumed right here, which is what dispatch would do, minus its
        // type-erased detours. This is the hot path of every reply.
        std::move(h)(ec, p->bytes);
    } else {
        asio::dispatch(ex_, asio::append(std::move(h), ec, p->bytes));
    }
}

void connection_impl::release(pending_request* p) { delete p; }

void connection_impl::cancel_request(pending_request* p) {
    if (!p->completed) abandon(p, asio::error::operation_aborted);
}

void connection_impl::abandon(pending_request* p, error_code ec) {
    const bool written_blocking = p->st == pending_request::state::written && p->blocking;
    // Not written: it stays in the queue as a tombstone the writer drops. Written: its reply
    // is read and discarded when it comes; a blocked command is released so that it comes now.
    complete(p, ec);
    if (written_blocking && parent_) parent_->unblock_side(*this);
}

void connection_impl::fail_waiting(error_code ec) {
    auto items = std::move(waiting_);
    waiting_.clear();
    for (auto* p : items) {
        if (!p->completed) complete(p, ec);
        release(p);
    }
}

// While disconnected. Unlike fail_waiting(), it keeps the requests whose own config opts out of
// failing fast. waiting_ is settled before any handler runs: one run inline may queue more.
void connection_impl::fail_fast_waiting() {
    std::vector<pending_request*> failing;
    std::erase_if(waiting_, [&](pending_request* p) {
        const bool fail =
            p->req->get_config().fail_fast.value_or(cfg_.fail_fast_when_disconnected);
        if (fail) failing.push_back(p);
        return fail;
    });
    for (auto* p : failing) {
        if (!p->completed) complete(p, error::not_connected);
        release(p);
    }
}

void connection_impl::fail_written(error_code ec) {
    auto items = std::move(written_);
    written_.clear();
    blocking_in_flight_ = 0;
    blocked_until_ = clock::time_point::min();
    std::vector<pending_request*> again;
    for (auto* p : items) {
        const bool retry = p->retry && p->received == 0 && !p->completed &&
                           ec == error::connection_lost;
        if (retry) {
            p->st = pending_request::state::waiting;
            again.push_back(p);
            continue;
        }
        if (!p->completed) complete(p, ec);
        release(p);
    }
    // Retried requests go first, in their original order.
    waiting_.insert(waiting_.begin(), again.begin(), again.end());
}

// ---------------------------------------------------------------------------------------------
// Timeouts: one timer for all requests, armed at the earliest deadline.

void connection_impl::arm_sweeper(clock::time_point deadline) {
    if (deadline >= sweeper_deadline_) return;
    sweeper_deadline_ = deadline;
    sweeper_timer_.expires_at(deadline);
    sweeper_timer_.async_wait([weak = weak_from_this()](error_code ec) {
        if (ec) return;  // re-armed earlier, or shutting down
        if (auto self = weak.lock()) self->sweep();
    });
}

void connection_impl::sweep() {
    const auto now = clock::now();
    sweeper_deadline_ = clock::time_point::max();
    std::vector<pending_request*> expired;
    auto next = clock::time_point::max();
    for (auto* queue : {&waiting_, &written_}) {
        for (auto* p : *queue) {
            if (p->completed) continue;
            if (p->deadline <= now)
                expired.push_back(p);
            else
                next = std::min(next, p->deadline);
        }
    }
    for (auto* p : expired) {
        if (p->completed) continue;
        if (p->diag)
            p->diag->set_client_message(p->st == pending_request::state::written
                                            ? "no reply before the request's deadline"
                                            : "not written before the request's deadline");
        abandon(p, error::timeout);
    }
    if (next != clock::time_point::max()) arm_sweeper(next);
}

// ---------------------------------------------------------------------------------------------
// Blocking commands run on side connections, one blocked command per side connection when
// possible, so a BLPOP never holds up the shared pipeline.

connection_impl& connection_impl::side_for_blocking() {
    for (auto& s : sides_)
        if (s->waiting_.empty() && s->written_.empty()) return *s;
    if (sides_.size() < cfg_.max_blocking_connections) {
        auto side = std::make_shared<connection_impl>(ex_, this);
        config side_cfg = cfg_;
        side_cfg.abort_connect = false;
        side_cfg.fail_fast_when_disconnected = false;
        side->run(side_cfg, run_handler{});
        sides_.push_back(side);
        ++usage_.blocking_connections;
        return *side;
    }
    return **std::min_element(sides_.begin(), sides_.end(), [](const auto& a, const auto& b) {
        return a->waiting_.size() + a->written_.size() < b->waiting_.size() + b->written_.size();
    });
}

void connection_impl::unblock_side(connection_impl& side) {
    // CLIENT UNBLOCK makes the blocked command return now; its reply is then discarded.
    if (side.client_id_ < 0 || stopping_) return;
    request unblock;
    unblock.push("CLIENT", "UNBLOCK", side.client_id_);
    enqueue_internal(std::move(unblock));
}

pending_request* connection_impl::enqueue_internal(request req) {
    auto p = std::make_unique<pending_request>();
    p->owned = std::make_unique<request>(std::move(req));
    p->req = p->owned.get();
    p->expected = p->req->expected_responses();
    auto* raw = p.get();
    enqueue(std::move(p));
    return raw;
}

clock::duration connection_impl::backoff(int attempt) {
    const auto cap = std::chrono::duration_cast<clock::duration>(cfg_.reconnect_wait_max);
    auto wait = std::chrono::duration_cast<clock::duration>(cfg_.reconnect_wait_min);
    for (int i = 0; i < attempt && wait < cap; ++i) wait *= 2;
    wait = std::min(wait, cap);
    // Full jitter on the upper half, so many clients do not reconnect in lockstep.
    std::uniform_int_distribution<clock::rep> half(wait.count() / 2, wait.count());
    return clock::duration(half(rng_));
}

void connection_impl::stop() {
    if (stopping_) return;
    stopping_ = true;
    stream_.close();
    writer_signal_.cancel();
    backoff_timer_.cancel();
    health_timer_.cancel();
    connect_timer_.cancel();
    sweeper_timer_.cancel();
    sweeper_deadline_ = clock::time_point::max();
    for (auto& s : sides_) s->stop();
    for (auto& b : blocked_before_run_) post_error(std::move(b.handler), asio::error::operation_aborted);
    blocked_before_run_.clear();
    if (state_ != run_state::running) {
        // No run loop to clean up after us.
        state_ = run_state::stopped;
        fail_waiting(asio::error::operation_aborted);
        complete_receive(asio::error::operation_aborted);
    }
}

}  // namespace detail
}  // namespace redcoord
