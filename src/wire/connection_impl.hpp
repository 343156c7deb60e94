// The machinery behind redcoord::connection; compiled once, in src/. The decisions live in
// the multiplexer and the state machines of connection/; this class performs their actions
// with thin async operations on one stream and a few timers.
#pragma once

#include "wire/cluster_router.hpp"
#include "wire/fsm.hpp"
#include "wire/link_change.hpp"
#include "wire/multiplexer.hpp"
#include "wire/stream.hpp"

#include <redcoord/connection.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace redcoord::detail {

class connection_registry;
class cluster_router;

class connection_impl : public std::enable_shared_from_this<connection_impl> {
public:
    using exec_handler =
        boost::asio::any_completion_handler<void(boost::system::error_code, std::size_t)>;
    using run_handler = boost::asio::any_completion_handler<void(boost::system::error_code)>;

    explicit connection_impl(boost::asio::any_io_executor ex, connection_impl* parent = nullptr);
    ~connection_impl();

    void run(config cfg, run_handler handler);
    void exec(const request& req, any_adapter adapter, diagnostics* diag, bool inline_ok,
              exec_handler handler);
    void receive(push_message& out, run_handler handler);
    void receive_all(std::vector<push_message>& out, run_handler handler);
    void stop();
    // The execution context shuts down (connection_registry): every handler the connection
    // stores goes to the scheduler, which destroys it uncalled, as Asio does with the pending
    // operations of its own I/O objects. A handler that holds the connection (a session's
    // coroutine: a session holds an alias) would otherwise keep both alive forever.
    void on_context_shutdown();

    const boost::asio::any_io_executor& get_executor() const noexcept { return ex_; }
    bool connected() const noexcept { return connected_; }
    const usage& get_usage() const noexcept;
    const diagnostics& run_diagnostics() const noexcept { return run_diag_; }

    std::weak_ptr<void> shared_by_sessions;  // see detail::shared_by_sessions

    // Told when the link comes up (up, no error, peer "host:port") and when it drops (down,
    // why), on the connection's executor. A Redis Cluster's master connections tell their
    // owner's observers, with their own peer. For tracing (session_options::trace) and metrics.
    using link_observer =
        std::function<void(link_change what, boost::system::error_code ec, std::string_view peer)>;
    std::uint64_t watch_link(link_observer fn);
    void unwatch_link(std::uint64_t id) noexcept { link_observers_.erase(id); }

    // Told each request's time from async_exec to its completion, and its error (metrics);
    // empty: not measured. A Redis Cluster's master connections report to their owner's.
    std::function<void(std::chrono::nanoseconds, boost::system::error_code)> request_observer;
    const auto& request_observer_of() const noexcept {
        return cluster_owner_ ? cluster_owner_->request_observer : request_observer;
    }

    class exec_elem;
    class internal_elem;
    /// Cluster mode: the masters' endpoints (empty otherwise).
    std::vector<endpoint> cluster_masters() const;
    // A cluster connection reads its slot map again soon; nothing otherwise.
    void refresh_cluster() noexcept;
    // The master of slot (an opaque identity), or null: see cluster_router::node_of_slot.
    const void* cluster_node_of_slot(std::uint16_t slot) const noexcept;
    /// Cluster mode: runs req on the master at ep.
    void exec_on(const endpoint& ep, const request& req, any_adapter adapter, diagnostics* diag,
                 exec_handler handler);
    bool is_cluster() const noexcept { return cluster_ != nullptr; }
    bool cluster_connected() const noexcept;
    // Completes a request before its reply (cancellation, timeout); releases a blocked side
    // command so that its reply comes now.
    void abandon(mux_elem& e, boost::system::error_code ec);

private:
    friend class cluster_router;

    // Cluster mode: what the router needs of its owner and of each master's connection.
    void finish_cluster_run(boost::system::error_code ec);
    // A master's connection whose node left the slot map: requests not yet written fail with
    // error::cluster_unavailable (the router sends them elsewhere), written ones with
    // connection_lost, and the connection stops.
    void retire();
    // Takes over the subscriptions of another connection (a master that left the map).
    void adopt_subscriptions(connection_impl& from);
    void forward_pushes();

    enum class run_state : std::uint8_t { not_started, running, stopped };

    boost::asio::awaitable<void> run_loop(std::shared_ptr<connection_impl> self);
    boost::asio::awaitable<boost::system::error_code> connect_once();
    boost::asio::awaitable<boost::system::error_code> resolve_sentinel(endpoint& master);
    boost::asio::awaitable<boost::system::error_code> handshake();
    boost::asio::awaitable<boost::system::error_code> serve();
    boost::asio::awaitable<boost::system::error_code> reader();
    boost::asio::awaitable<boost::system::error_code> writer();
    boost::asio::awaitable<boost::system::error_code> health_checker();
    // Reads until message_reader holds a complete message (connecting only).
    boost::asio::awaitable<boost::system::error_code> read_message();

    void start_receive(push_message* one, std::vector<push_message>* all, run_handler handler);
    void wake_receiver();
    void complete_receive(boost::system::error_code ec);
    void deliver_event(push_event e);
    void sweep();
    void arm_sweeper(clock::time_point deadline);
    void enqueue(std::unique_ptr<mux_elem> e);
    mux_elem* enqueue_internal(request req);
    void notify_writer();
    connection_impl& side_for_blocking();
    void unblock_side(connection_impl& side);
    void post_error(exec_handler handler, boost::system::error_code ec);

    boost::asio::any_io_executor ex_;
    connection_registry* registry_ = nullptr;
    connection_impl* parent_;  // set on the side connections of blocking commands
    config cfg_;
    run_state state_ = run_state::not_started;
    bool connected_ = false;
    bool stopping_ = false;

    stream stream_;
    multiplexer mux_;
    message_reader in_;
    std::optional<reader_fsm> reader_;
    std::optional<health_fsm> health_;

    boost::asio::steady_timer writer_signal_;
    boost::asio::steady_timer sweeper_timer_;
    boost::asio::steady_timer backoff_timer_;
    boost::asio::steady_timer health_timer_;
    boost::asio::steady_timer connect_timer_;
    clock::time_point sweeper_deadline_ = clock::time_point::max();

    // The receiver waiting for pushes: one push, or all there are.
    push_message* receive_out_ = nullptr;
    std::vector<push_message>* receive_all_out_ = nullptr;
    run_handler receive_handler_;
    boost::asio::cancellation_slot receive_slot_;

    run_handler run_handler_;
    boost::asio::cancellation_slot run_slot_;
    diagnostics run_diag_;
    mutable usage usage_;
    std::int64_t client_id_ = -1;
    std::uint32_t seed_;

    std::vector<std::shared_ptr<connection_impl>> sides_;

    std::unique_ptr<cluster_router> cluster_;     // cluster mode: the masters' connections
    connection_impl* cluster_owner_ = nullptr;   // a master's connection: the one it serves
    boost::system::error_code stop_error_;       // what written requests fail with at stop
    // Blocking requests made before async_run: sent to a side connection once it runs.
    struct deferred_blocking {
        const request* req;
        any_adapter adapter;
        diagnostics* diag;
        bool inline_ok;
        exec_handler handler;
    };
    std::vector<deferred_blocking> blocked_before_run_;

    void notify_link(link_change what, boost::system::error_code ec);
    std::map<std::uint64_t, link_observer> link_observers_;
    std::uint64_t next_link_observer_ = 1;
    std::string peer_;  // "host:port" (or the socket's path) of the last connection made
};

}  // namespace redcoord::detail
