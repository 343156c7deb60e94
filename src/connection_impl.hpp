// The machinery behind redcoord::connection; compiled once, in src/.
#pragma once

#include "stream.hpp"

#include <redcoord/connection.hpp>
#include <redcoord/resp3/parser.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <deque>
#include <memory>
#include <random>
#include <set>
#include <vector>

namespace redcoord::detail {

using clock = std::chrono::steady_clock;

/// One async_exec in progress (or an internal request of the connection itself).
struct pending_request {
    enum class state : std::uint8_t { waiting, written };

    const request* req = nullptr;
    std::unique_ptr<request> owned;  // internal requests own theirs
    any_adapter adapter;
    diagnostics* diag = nullptr;
    boost::asio::any_completion_handler<void(boost::system::error_code, std::size_t)> handler;
    boost::asio::cancellation_slot slot;
    clock::time_point deadline = clock::time_point::max();
    state st = state::waiting;
    bool completed = false;  // handler invoked (cancelled, timed out, or done)
    std::size_t expected = 0;
    std::size_t received = 0;
    std::size_t bytes = 0;
    boost::system::error_code first_error;
    bool blocking = false;
    bool retry = false;
    bool is_ping = false;  // the health checker's own PING
    bool same_executor = false;  // the handler's executor is the connection's
};

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
    void stop();

    const boost::asio::any_io_executor& get_executor() const noexcept { return ex_; }
    bool connected() const noexcept { return connected_; }
    const usage& get_usage() const noexcept { return usage_; }
    const diagnostics& run_diagnostics() const noexcept { return run_diag_; }

    // Cancellation and timeouts of one request.
    void cancel_request(pending_request* p);

private:
    enum class run_state : std::uint8_t { not_started, running, stopped };

    boost::asio::awaitable<void> run_loop(std::shared_ptr<connection_impl> self);
    boost::asio::awaitable<boost::system::error_code> connect_once();
    boost::asio::awaitable<boost::system::error_code> resolve_sentinel(endpoint& master);
    boost::asio::awaitable<boost::system::error_code> handshake();
    boost::asio::awaitable<boost::system::error_code> serve();
    boost::asio::awaitable<boost::system::error_code> reader();
    boost::asio::awaitable<boost::system::error_code> writer();
    boost::asio::awaitable<boost::system::error_code> health_checker();

    // Reads until the parser holds a complete message (or an error).
    boost::asio::awaitable<boost::system::error_code> read_message();
    boost::asio::awaitable<boost::system::error_code> fill_read_buffer();
    bool parse_buffered(boost::system::error_code& ec);
    boost::system::error_code on_message(std::span<const resp3::node_view> msg);
    void on_push(std::span<const resp3::node_view> msg);
    void deliver_push(push_message msg);
    void take_push(push_message& out);
    void complete_receive(boost::system::error_code ec);
    void sweep();

    void enqueue(std::unique_ptr<pending_request> p);
    // Queues a request of the connection's own (PING, CLIENT UNBLOCK); nobody awaits it.
    pending_request* enqueue_internal(request req);
    // Completes p before its reply (cancellation, timeout); releases a blocked side command.
    void abandon(pending_request* p, boost::system::error_code ec);
    void complete(pending_request* p, boost::system::error_code ec, bool from_reader = false);
    void release(pending_request* p);  // deletes p; it must be out of both queues
    void fail_written(boost::system::error_code ec);
    void fail_waiting(boost::system::error_code ec);
    void fail_fast_waiting();  // fails the waiting requests that are fail-fast
    void apply_subscriptions(const request& req);
    std::unique_ptr<request> restore_subscriptions_request() const;
    void arm_sweeper(clock::time_point deadline);
    void notify_writer();
    clock::duration backoff(int attempt);
    connection_impl& side_for_blocking();
    void unblock_side(connection_impl& side);
    void post_error(exec_handler handler, boost::system::error_code ec);

    boost::asio::any_io_executor ex_;
    connection_impl* parent_;  // set on the side connections of blocking commands
    config cfg_;
    run_state state_ = run_state::not_started;
    bool connected_ = false;
    bool stopping_ = false;

    stream stream_;
    resp3::parser parser_;
    std::vector<char> read_buf_;
    std::size_t read_begin_ = 0;
    std::size_t read_end_ = 0;
    std::string write_buf_;

    std::deque<pending_request*> waiting_;
    std::size_t queued_bytes_ = 0;  // enqueued since the writer last took the queue
    std::deque<pending_request*> written_;
    boost::asio::steady_timer writer_signal_;
    boost::asio::steady_timer sweeper_timer_;
    boost::asio::steady_timer backoff_timer_;
    boost::asio::steady_timer health_timer_;
    boost::asio::steady_timer connect_timer_;
    std::size_t message_bytes_ = 0;  // bytes of the message being parsed
    clock::time_point sweeper_deadline_ = clock::time_point::max();
    clock::time_point last_read_ = clock::now();
    bool ping_outstanding_ = false;
    std::size_t blocking_in_flight_ = 0;
    clock::time_point blocked_until_ = clock::time_point::min();  // when they may reply by

    // Subscriptions to restore after a reconnect.
    std::set<std::string> channels_, patterns_, shard_channels_;

    // Pushes.
    std::deque<push_message> pushes_;
    bool push_overflow_ = false;
    push_message* receive_out_ = nullptr;
    run_handler receive_handler_;
    boost::asio::cancellation_slot receive_slot_;

    run_handler run_handler_;
    boost::asio::cancellation_slot run_slot_;
    diagnostics run_diag_;
    usage usage_;
    std::int64_t client_id_ = -1;
    std::minstd_rand rng_{std::random_device{}()};

    std::vector<std::shared_ptr<connection_impl>> sides_;
    // Blocking requests made before async_run: sent to a side connection once it runs.
    struct deferred_blocking {
        const request* req;
        any_adapter adapter;
        diagnostics* diag;
        bool inline_ok;
        exec_handler handler;
    };
    std::vector<deferred_blocking> blocked_before_run_;
};

}  // namespace redcoord::detail
