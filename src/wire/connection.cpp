#include "wire/connection_impl.hpp"
#include "wire/time_math.hpp"

#include <boost/asio/append.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <set>
#include <mutex>

namespace redcoord {

namespace asio = boost::asio;
using boost::system::error_code;

// ---------------------------------------------------------------------------------------------
// The public class: a thin shell around the shared implementation.

connection::connection(executor_type ex)
    : impl_(std::make_shared<detail::connection_impl>(std::move(ex))) {}

connection::~connection() {
    if (owns_) impl_->stop();
}

connection::executor_type connection::get_executor() const noexcept {
    return impl_->get_executor();
}

void connection::cancel() { impl_->stop(); }
bool connection::is_connected() const noexcept {
    return impl_->is_cluster() ? impl_->cluster_connected() : impl_->connected();
}
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

void connection::receive_all_impl(detail::connection_impl& impl, std::vector<push_message>& out,
                                  run_handler handler) {
    impl.receive_all(out, std::move(handler));
}

namespace detail {

std::weak_ptr<void>& shared_by_sessions(connection& conn) noexcept {
    return conn.impl_->shared_by_sessions;
}

namespace {

constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

// Boost 1.81's any_completion_handler move assignment recurses forever (it copies from an
// lvalue, which picks the wrapping constructor); swapping with a moved-into temporary does not.
template <class Signature>
void assign(asio::any_completion_handler<Signature>& to,
            asio::any_completion_handler<Signature>&& from) noexcept {
    asio::any_completion_handler<Signature>(std::move(from)).swap(to);
}

resp3::parser_limits limits_of(const config& cfg) {
    return {cfg.max_nesting_depth, cfg.max_bulk_size, cfg.max_aggregate_size,
            cfg.max_reply_size};
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
    if (cfg.max_nesting_depth == 0 || cfg.max_bulk_size == 0 || cfg.max_aggregate_size == 0 ||
        cfg.max_reply_size == 0)
        return bad("config.max_*: parser limits must be positive");
    if (cfg.max_blocking_connections == 0)
        return bad("config.max_blocking_connections: must be at least 1");
    if (cfg.cluster) {
        if (cfg.database != 0)
            return bad("config.database: " + std::to_string(cfg.database) +
                       " with cluster: a Redis Cluster has database 0 only");
        if (!cfg.service_name.empty())
            return bad("config.service_name: Sentinel and cluster cannot be combined");
        if (!cfg.unix_socket.empty())
            return bad("config.unix_socket: a Redis Cluster is reached over TCP");
        if (cfg.cluster_max_redirects < 1)
            return bad("config.cluster_max_redirects: " +
                       std::to_string(cfg.cluster_max_redirects) + " is below 1");
        if (auto problem = detail::duration_problem(cfg.cluster_refresh_interval, true);
            !problem.empty())
            return bad("config.cluster_refresh_interval: " + problem);
    }
    return {};
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The requests the multiplexer holds: a caller's async_exec, or the connection's own.

class connection_impl::exec_elem final : public mux_elem {
public:
    // A request made before async_run, on what turned out to be a cluster connection: it goes
    // through the router instead (which waits for the slot map).
    void reroute(cluster_router& router) {
        if (slot_.is_connected()) slot_.clear();
        if (!handler_) return;
        router.exec(req(), adapter(), diag(), same_executor_, std::move(handler_));
    }

    exec_elem(connection_impl& conn, const request& req, any_adapter adapter, diagnostics* diag,
              bool same_executor, exec_handler handler)
        : mux_elem(req, adapter, diag), conn_(conn), same_executor_(same_executor) {
        if (conn_.request_observer_of()) started_ = clock::now();
        assign(handler_, std::move(handler));
        slot_ = asio::get_associated_cancellation_slot(handler_);
        if (slot_.is_connected())
            slot_.assign([this](asio::cancellation_type) {
                if (!completed()) conn_.abandon(*this, asio::error::operation_aborted);
            });
    }

private:
    void done(error_code ec, bool from_reader) override {
        if (slot_.is_connected()) slot_.clear();
        if (!handler_) return;
        if (started_ != clock::time_point{})
            if (const auto& observe = conn_.request_observer_of()) observe(clock::now() - started_, ec);
        exec_handler h(std::move(handler_));
        if (!from_reader) {
            // Cancellation, timeouts and failures may come from inside user code: never resume
            // a handler inside its caller.
            asio::post(conn_.ex_, asio::append(std::move(h), ec, bytes()));
        } else if (same_executor_) {
            // The reader runs on ex_; a handler that belongs to ex_ too (a coroutine of the same
            // io_context) is resumed right here, which is what dispatch would do, minus its
            // type-erased detours. This is the hot path of every reply.
            std::move(h)(ec, bytes());
        } else {
            asio::dispatch(conn_.ex_, asio::append(std::move(h), ec, bytes()));
        }
    }

    connection_impl& conn_;
    exec_handler handler_;
    asio::cancellation_slot slot_;
    bool same_executor_;
    clock::time_point started_{};  // when a request observer is set
};

// PING, CLIENT UNBLOCK, the restore of subscriptions: nobody awaits them.
class connection_impl::internal_elem final : public mux_elem {
public:
    internal_elem(connection_impl& conn, request req) : mux_elem(std::move(req)), conn_(conn) {}

private:
    void done(error_code, bool) override {
        if (is_ping && conn_.health_) conn_.health_->on_pong();
    }

    connection_impl& conn_;
};

// ---------------------------------------------------------------------------------------------
// Construction and the run loop.

// The live connections of one execution context, told when it shuts down (its destruction).
class connection_registry final : public asio::execution_context::service {
public:
    static inline asio::execution_context::id id;

    explicit connection_registry(asio::execution_context& ctx) : service(ctx) {}

    void add(connection_impl* c) {
        std::lock_guard lock(mutex_);
        live_.insert(c);
    }
    void remove(connection_impl* c) {
        std::lock_guard lock(mutex_);
        live_.erase(c);
    }

private:
    void shutdown() override {
        std::vector<std::weak_ptr<connection_impl>> all;
        {
            std::lock_guard lock(mutex_);
            for (auto* c : live_) all.push_back(c->weak_from_this());
        }
        for (auto& w : all)
            if (auto c = w.lock()) c->on_context_shutdown();
    }

    std::mutex mutex_;
    std::set<connection_impl*> live_;
};

connection_impl::connection_impl(asio::any_io_executor ex, connection_impl* parent)
    : ex_(std::move(ex)),
      parent_(parent),
      stream_(ex_),
      writer_signal_(ex_),
      sweeper_timer_(ex_),
      backoff_timer_(ex_),
      health_timer_(ex_),
      connect_timer_(ex_),
      seed_(std::random_device{}()) {
    registry_ = &asio::use_service<connection_registry>(asio::query(ex_, asio::execution::context));
    registry_->add(this);
}

connection_impl::~connection_impl() {
    registry_->remove(this);
    cluster_.reset();
    mux_.fail_all(asio::error::operation_aborted);
}

void connection_impl::on_context_shutdown() {
    stopping_ = true;
    state_ = run_state::stopped;
    if (cluster_) cluster_->stop();
    mux_.fail_all(asio::error::operation_aborted);  // posted: exec_elem::done, not from_reader
    if (receive_handler_) {
        if (receive_slot_.is_connected()) receive_slot_.clear();
        receive_out_ = nullptr;
        receive_all_out_ = nullptr;
        asio::post(ex_, asio::append(std::move(receive_handler_), asio::error::operation_aborted));
    }
    for (auto& b : blocked_before_run_)
        post_error(std::move(b.handler), asio::error::operation_aborted);
    blocked_before_run_.clear();
    if (run_handler_) {
        if (run_slot_.is_connected()) run_slot_.clear();
        asio::post(ex_, asio::append(std::move(run_handler_), asio::error::operation_aborted));
    }
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
    mux_.pushes().set_capacity(cfg_.max_pending_pushes);
    state_ = run_state::running;
    stopping_ = false;
    assign(run_handler_, std::move(handler));
    if (run_handler_) {
        run_slot_ = asio::get_associated_cancellation_slot(run_handler_);
        if (run_slot_.is_connected())
            run_slot_.assign([this](asio::cancellation_type) { stop(); });
    }
    if (cfg_.cluster) {
        // Every master gets a connection of its own; this one routes between them.
        cluster_ = std::make_unique<cluster_router>(*this, cfg_);
        cluster_->start(shared_from_this());
        // What was asked before async_run waited here; the router serves it now.
        for (auto& e : mux_.take_waiting())
            if (auto* x = dynamic_cast<exec_elem*>(e.get())) x->reroute(*cluster_);
        auto blocked = std::move(blocked_before_run_);
        blocked_before_run_.clear();
        for (auto& b : blocked)
            cluster_->exec(*b.req, b.adapter, b.diag, b.inline_ok, std::move(b.handler));
        return;
    }
    in_.reset(limits_of(cfg_));
    health_.emplace(cfg_.health_check_interval);
    reader_.emplace(mux_, in_, cfg_.max_reply_size);
    for (auto& b : blocked_before_run_)
        side_for_blocking().exec(*b.req, b.adapter, b.diag, b.inline_ok, std::move(b.handler));
    blocked_before_run_.clear();
    asio::co_spawn(ex_, run_loop(shared_from_this()), asio::detached);
}

namespace {
bool fails_fast(const mux_elem& e, const config& cfg) {
    return e.req().get_config().fail_fast.value_or(cfg.fail_fast_when_disconnected);
}
}  // namespace

// `self` keeps the implementation alive for as long as the loop runs.
asio::awaitable<void> connection_impl::run_loop(
    [[maybe_unused]] std::shared_ptr<connection_impl> self) {
    using type = reconnect_fsm::action::type;
    reconnect_fsm fsm(cfg_, seed_);
    auto fail_fast = [this](const mux_elem& e) { return fails_fast(e, cfg_); };
    auto act = fsm.start();
    for (;;) {
        if (stopping_) act = fsm.on_stop();
        if (act.what == type::stop) break;
        if (act.what == type::wait) {
            backoff_timer_.expires_after(act.wait);
            co_await backoff_timer_.async_wait(use_nothrow);
            act = fsm.on_waited();
            continue;
        }
        error_code ec = co_await connect_once();
        if (stopping_) continue;
        if (ec) {
            if (cluster_owner_ && cluster_owner_->cluster_)
                cluster_owner_->cluster_->on_child_link(*this, false);
            stream_.close();
            mux_.fail_waiting_if(error::not_connected, fail_fast);
            act = fsm.on_connect_failed(ec);
            if (act.what != type::stop) notify_link(link_change::retrying, ec);
            continue;
        }
        connected_ = true;
        ++usage_.connects;
        notify_link(link_change::up, {});
        if (fsm.on_connected()) deliver_event(push_event::reconnected);
        // The subscriptions come back before anything else is written.
        if (auto restore = mux_.restore_request())
            mux_.add_front(std::make_unique<internal_elem>(*this, std::move(*restore)));
        notify_writer();
        ec = co_await serve();
        connected_ = false;
        stream_.close();
        if (stopping_) continue;
        ++usage_.connection_losses;
        notify_link(link_change::down, ec);
        if (cluster_owner_ && cluster_owner_->cluster_)
            cluster_owner_->cluster_->on_child_link(*this, false);
        if (ec != error::unexpected_reply && ec != error::health_check_failed)
            run_diag_.set_client_message("connection lost: " + ec.message());
        mux_.on_connection_lost(error::connection_lost);
        mux_.fail_waiting_if(error::not_connected, fail_fast);
        act = fsm.on_lost();
    }
    const error_code final_ec =
        act.ec ? act.ec : stop_error_ ? stop_error_ : error_code(asio::error::operation_aborted);
    state_ = run_state::stopped;
    connected_ = false;
    stream_.close();
    mux_.fail_all(final_ec);
    for (auto& s : sides_) s->stop();
    if (receive_handler_ && !mux_.pushes().ready()) complete_receive(error::run_not_started);
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
        // What the target is called in messages: the socket's path, or host:port.
        const std::string name = cfg_.unix_socket.empty()
                                     ? target.host + ":" + std::to_string(target.port)
                                     : cfg_.unix_socket;
        auto attempt = [this, target, name]() -> asio::awaitable<error_code> {
            if (auto ec = co_await stream_.connect(cfg_, target)) {
                run_diag_.set_client_message("connect to " + name + ": " + ec.message());
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
                run_diag_.set_client_message("connecting to " + name + " took longer than " +
                                             std::to_string(cfg_.connect_timeout.count()) + " ms");
            } else {
                ec = std::get<0>(r);
            }
        }
        if (!ec) {
            peer_ = name;
            co_return ec;
        }
        stream_.close();
    }
    co_return ec;
}

std::uint64_t connection_impl::watch_link(link_observer fn) {
    const auto id = next_link_observer_++;
    link_observers_.emplace(id, std::move(fn));
    return id;
}

void connection_impl::notify_link(link_change what, error_code ec) {
    auto& owner = cluster_owner_ ? *cluster_owner_ : *this;
    // An observer may remove itself (a session closing): call from a copy of the ids.
    std::vector<std::uint64_t> ids;
    for (const auto& [id, fn] : owner.link_observers_) ids.push_back(id);
    for (auto id : ids)
        if (auto it = owner.link_observers_.find(id); it != owner.link_observers_.end())
            it->second(what, ec, peer_);
}

asio::awaitable<error_code> connection_impl::read_message() {
    for (;;) {
        error_code ec;
        if (in_.next(ec)) co_return error_code{};
        if (ec) co_return ec;
        auto buf = in_.prepare();
        auto [rec, n] = co_await stream_.read_some(asio::buffer(buf.data(), buf.size()));
        if (rec) co_return rec;
        in_.commit(n);
        usage_.bytes_read += n;
    }
}

asio::awaitable<error_code> connection_impl::resolve_sentinel(endpoint& master) {
    using type = sentinel_fsm::action::type;
    sentinel_fsm fsm(cfg_.endpoints, cfg_.service_name);
    auto act = fsm.resume();
    for (;;) {
        if (stopping_) co_return asio::error::operation_aborted;
        switch (act.what) {
            case type::connect:
                stream_.close();
                in_.reset(limits_of(cfg_));
                act = fsm.resume(co_await stream_.connect(cfg_, *act.target));
                break;
            case type::write:
                act = fsm.resume(co_await stream_.write(asio::buffer(fsm.payload())));
                break;
            case type::read:
                if (auto ec = co_await read_message()) {
                    act = fsm.resume(ec);
                } else {
                    act = fsm.resume({}, in_.message());
                    in_.take_message();
                }
                break;
            case type::done:
                stream_.close();
                if (act.ec) {
                    run_diag_.set_client_message(fsm.message());
                    co_return act.ec;
                }
                master = fsm.master();
                co_return error_code{};
        }
    }
}

asio::awaitable<error_code> connection_impl::handshake() {
    using type = handshake_fsm::action::type;
    in_.reset(limits_of(cfg_));
    std::string name = cfg_.client_name;
    if (parent_ && !name.empty()) name += ":blocking";
    handshake_fsm fsm(cfg_, std::move(name), seed_ + usage_.connects);
    auto act = fsm.resume();
    for (;;) {
        switch (act.what) {
            case type::write:
                if (auto ec = co_await stream_.write(asio::buffer(fsm.payload()))) co_return ec;
                act = fsm.resume();
                break;
            case type::read:
                if (auto ec = co_await read_message()) co_return ec;
                act = fsm.resume(in_.message());
                in_.take_message();
                break;
            case type::done:
                if (act.ec) {
                    run_diag_ = fsm.diag();
                    co_return act.ec;
                }
                client_id_ = fsm.client_id();
                run_diag_.clear();
                co_return error_code{};
        }
    }
}

asio::awaitable<error_code> connection_impl::serve() {
    using namespace asio::experimental::awaitable_operators;
    health_->reset(clock::now(), {reader_->messages(), reader_->bytes()});
    auto r = co_await (reader() || writer() || health_checker());
    co_return std::visit([](error_code ec) { return ec; }, r);
}

// ---------------------------------------------------------------------------------------------
// Reading: the reader state machine parses and accounts; this loop reads and yields for it.

asio::awaitable<error_code> connection_impl::reader() {
    using type = reader_fsm::action::type;
    co_await asio::this_coro::throw_if_cancelled(false);
    error_code ec;
    std::size_t n = 0;
    for (;;) {
        const auto act = reader_->resume(ec, n);
        wake_receiver();
        switch (act.what) {
            case type::read_some: {
                auto buf = in_.prepare();
                std::tie(ec, n) =
                    co_await stream_.read_some(asio::buffer(buf.data(), buf.size()));
                usage_.bytes_read += n;
                break;
            }
            case type::yield:
                co_await asio::post(ex_, asio::use_awaitable);
                if (stopping_) co_return asio::error::operation_aborted;
                ec = {};
                n = 0;
                break;
            case type::done:
                if (act.ec == error::unexpected_reply)
                    run_diag_.set_client_message(reader_->what_went_wrong());
                co_return act.ec;
        }
    }
}

void connection_impl::deliver_event(push_event e) {
    push_message m;
    m.event = e;
    mux_.pushes().push(std::move(m));
    wake_receiver();
}

// A master's connection in cluster mode hands its pushes to the connection it serves.
void connection_impl::forward_pushes() {
    if (!mux_.pushes().ready()) return;
    std::vector<push_message> all;
    mux_.pushes().take_all(all);
    // A slot left this master (an unrequested sunsubscribe): the map is read again; the
    // listener subscribes anew on the slot's new master.
    if (mux_.take_moved_shard_channels() > 0 && cluster_owner_->cluster_)
        cluster_owner_->cluster_->request_refresh();
    for (auto& m : all) cluster_owner_->mux_.pushes().push(std::move(m));
    cluster_owner_->wake_receiver();
}

void connection_impl::wake_receiver() {
    if (cluster_owner_) return forward_pushes();
    if (!receive_handler_ || !mux_.pushes().ready()) return;
    if (receive_all_out_)
        mux_.pushes().take_all(*receive_all_out_);
    else
        mux_.pushes().take(*receive_out_);
    complete_receive({});
}

void connection_impl::receive(push_message& out, run_handler handler) {
    start_receive(&out, nullptr, std::move(handler));
}

void connection_impl::receive_all(std::vector<push_message>& out, run_handler handler) {
    start_receive(nullptr, &out, std::move(handler));
}

// One push into `one`, or every push there is appended to `all`.
void connection_impl::start_receive(push_message* one, std::vector<push_message>* all,
                                    run_handler handler) {
    error_code ec;
    if (receive_handler_) {
        ec = error::invalid_argument;  // one receiver at a time
    } else if (mux_.pushes().ready()) {
        if (all)
            mux_.pushes().take_all(*all);
        else
            mux_.pushes().take(*one);
    } else if (state_ == run_state::stopped) {
        ec = error::run_not_started;
    } else {
        receive_out_ = one;
        receive_all_out_ = all;
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
    receive_all_out_ = nullptr;
    asio::dispatch(ex_, asio::append(std::move(h), ec));
}

const usage& connection_impl::get_usage() const noexcept {
    if (cluster_) {
        usage_ = usage{};
        usage_.pushes_dropped = mux_.pushes().dropped();
        cluster_->add_usage(usage_);
        return usage_;
    }
    usage_.replies_received = mux_.replies();
    usage_.pushes_received = mux_.pushes_received();
    usage_.pushes_dropped = mux_.pushes().dropped();
    usage_.unexpected_replies = mux_.unexpected_replies();
    usage_.replies_too_large = reader_ ? reader_->too_large() : 0;
    return usage_;
}

// ---------------------------------------------------------------------------------------------
// Writing: the writer state machine takes what is queued; this loop writes it.

asio::awaitable<error_code> connection_impl::writer() {
    using type = writer_fsm::action::type;
    co_await asio::this_coro::throw_if_cancelled(false);
    writer_fsm fsm(mux_);
    error_code ec;
    for (;;) {
        if (stopping_) co_return asio::error::operation_aborted;
        const auto act = fsm.resume(ec);
        switch (act.what) {
            case type::write:
                ec = co_await stream_.write(asio::buffer(fsm.buffer()));
                ++usage_.writes;
                usage_.bytes_written += fsm.buffer().size();
                usage_.commands_written += fsm.last_commands();
                break;
            case type::wait: {
                writer_signal_.expires_at(clock::time_point::max());
                co_await writer_signal_.async_wait(use_nothrow);
                // notify_writer() ends this wait too, so only the coroutine's state tells that
                // serve() cancelled us (the reader or the health checker ended): without this
                // check an idle writer would wait again and serve() would never return.
                auto cs = co_await asio::this_coro::cancellation_state;
                if (cs.cancelled() != asio::cancellation_type::none)
                    co_return asio::error::operation_aborted;
                ec = {};
                break;
            }
            case type::done: co_return act.ec;
        }
    }
}

void connection_impl::notify_writer() { writer_signal_.cancel(); }

// ---------------------------------------------------------------------------------------------
// Health: the health state machine judges; this loop ticks and sends its PINGs.

asio::awaitable<error_code> connection_impl::health_checker() {
    co_await asio::this_coro::throw_if_cancelled(false);
    const auto interval = health_->interval();
    for (;;) {
        health_timer_.expires_after(interval.count() > 0 ? clock::duration(interval)
                                                         : clock::duration::max() / 2);
        const auto due = health_timer_.expiry();
        auto [ec] = co_await health_timer_.async_wait(use_nothrow);
        if (ec || stopping_) co_return asio::error::operation_aborted;
        const auto now = clock::now();
        const bool blocked = mux_.blocking_in_flight() > 0 && now < mux_.blocked_until();
        switch (health_->on_tick(now, due, {reader_->messages(), reader_->bytes()}, blocked)) {
            case health_fsm::action::none: break;
            case health_fsm::action::ping: {
                request ping;
                ping.push("PING");
                enqueue_internal(std::move(ping))->is_ping = true;
                break;
            }
            case health_fsm::action::fail:
                run_diag_.set_client_message(
                    "no reply from the server for " + std::to_string(2 * interval.count()) +
                    " ms: a PING went unanswered (bytes trickling in do not count)");
                co_return error::health_check_failed;
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
    if (cluster_) return cluster_->exec(req, adapter, diag, inline_ok, std::move(handler));

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

    auto e = std::make_unique<exec_elem>(*this, req, adapter, diag, inline_ok, std::move(handler));
    e->blocking = req.has_blocking_command() || req.has_wait_command();
    e->retry = rc.retry_on_connection_lost;
    auto timeout = rc.timeout.value_or(cfg_.request_timeout);
    if (timeout.count() > 0 && e->blocking) {
        if (auto block = req.blocking_time())
            timeout = detail::sat_add(timeout, *block);
        else
            timeout = std::chrono::milliseconds(0);  // blocks without limit: cancel to stop it
    }
    if (timeout.count() > 0) {
        e->deadline = detail::sat_add(clock::now(), timeout);
        arm_sweeper(e->deadline);
    }
    enqueue(std::move(e));
}

void connection_impl::enqueue(std::unique_ptr<mux_elem> e) {
    mux_.add(std::move(e));
    if (connected_) notify_writer();
}

void connection_impl::abandon(mux_elem& e, error_code ec) {
    const bool written_blocking = e.get_state() == mux_elem::state::written && e.blocking;
    // Not written: it stays in the queue as a tombstone the writer drops. Written: its reply
    // is read and discarded when it comes; a blocked command is released so that it comes now.
    e.complete(ec);
    if (written_blocking && parent_) parent_->unblock_side(*this);
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
    sweeper_deadline_ = clock::time_point::max();
    std::vector<mux_elem*> expired;
    const auto next = mux_.expired(clock::now(), expired);
    for (auto* e : expired) {
        if (e->completed()) continue;
        if (e->diag())
            e->diag()->set_client_message(e->get_state() == mux_elem::state::written
                                              ? "no reply before the request's deadline"
                                              : "not written before the request's deadline");
        abandon(*e, error::timeout);
    }
    if (next != clock::time_point::max()) arm_sweeper(next);
}

// ---------------------------------------------------------------------------------------------
// Blocking commands run on side connections, one blocked command per side connection when
// possible, so a BLPOP never holds up the shared pipeline.

connection_impl& connection_impl::side_for_blocking() {
    for (auto& s : sides_)
        if (s->mux_.idle()) return *s;
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
        return a->mux_.waiting_count() + a->mux_.written_count() <
               b->mux_.waiting_count() + b->mux_.written_count();
    });
}

void connection_impl::unblock_side(connection_impl& side) {
    // CLIENT UNBLOCK makes the blocked command return now; its reply is then discarded.
    if (side.client_id_ < 0 || stopping_) return;
    request unblock;
    unblock.push("CLIENT", "UNBLOCK", side.client_id_);
    enqueue_internal(std::move(unblock));
}

mux_elem* connection_impl::enqueue_internal(request req) {
    auto e = std::make_unique<internal_elem>(*this, std::move(req));
    auto* raw = e.get();
    enqueue(std::move(e));
    return raw;
}

void connection_impl::stop() {
    if (stopping_) return;
    stopping_ = true;
    if (cluster_) {
        cluster_->stop();
        finish_cluster_run(asio::error::operation_aborted);
        return;
    }
    stream_.close();
    writer_signal_.cancel();
    backoff_timer_.cancel();
    health_timer_.cancel();
    connect_timer_.cancel();
    sweeper_timer_.cancel();
    sweeper_deadline_ = clock::time_point::max();
    for (auto& s : sides_) s->stop();
    for (auto& b : blocked_before_run_)
        post_error(std::move(b.handler), asio::error::operation_aborted);
    blocked_before_run_.clear();
    if (state_ != run_state::running) {
        // No run loop to clean up after us.
        state_ = run_state::stopped;
        mux_.fail_waiting(asio::error::operation_aborted);
        complete_receive(asio::error::operation_aborted);
    }
}

// ---------------------------------------------------------------------------------------------
// Cluster mode.

void connection_impl::finish_cluster_run(error_code ec) {
    stopping_ = true;
    state_ = run_state::stopped;
    if (cluster_) cluster_->stop();
    if (receive_handler_ && !mux_.pushes().ready()) complete_receive(error::run_not_started);
    if (run_handler_) {
        if (run_slot_.is_connected()) run_slot_.clear();
        auto h = std::move(run_handler_);
        asio::post(ex_, asio::append(std::move(h), ec));
    }
}

void connection_impl::retire() {
    cluster_owner_ = nullptr;
    mux_.fail_waiting(error::cluster_unavailable);
    stop_error_ = error::connection_lost;
    stop();
}

void connection_impl::adopt_subscriptions(connection_impl& from) {
    // Classic channels and patterns only: sharded ones belong to their slots' masters (the
    // session subscribes them again there).
    if (auto restore = from.mux_.restore_request(false))
        enqueue(std::make_unique<internal_elem>(*this, std::move(*restore)));
}

bool connection_impl::cluster_connected() const noexcept {
    return cluster_ && cluster_->connected();
}

const void* connection_impl::cluster_node_of_slot(std::uint16_t slot) const noexcept {
    return cluster_ && state_ == run_state::running ? cluster_->node_of_slot(slot) : nullptr;
}

void connection_impl::refresh_cluster() noexcept {
    if (cluster_ && state_ == run_state::running) cluster_->request_refresh();
}

std::vector<endpoint> connection_impl::cluster_masters() const {
    return cluster_ ? cluster_->masters() : std::vector<endpoint>{};
}

void connection_impl::exec_on(const endpoint& ep, const request& req, any_adapter adapter,
                              diagnostics* diag, exec_handler handler) {
    if (!cluster_ || state_ != run_state::running) {
        if (diag) diag->set_client_message("exec_on: not a running cluster connection");
        return post_error(std::move(handler), error::run_not_started);
    }
    cluster_->exec_on(ep, req, adapter, diag, std::move(handler));
}

}  // namespace detail
}  // namespace redcoord
