// A connection to a Redis Cluster: one multiplexed connection per master (each a plain
// connection_impl, with its own lazy side connections for blocking commands), a slot map, and
// the routing of every request by the slot of its keys. Redirections (MOVED, ASK), retries
// (TRYAGAIN, CLUSTERDOWN) and lost nodes are handled here, without losing or reordering a
// command: see docs/cluster.md, "Redis Cluster".
#pragma once

#include "wire/cluster_keys.hpp"
#include "wire/cluster_topology.hpp"

#include <redcoord/config.hpp>
#include <redcoord/connection.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <deque>
#include <memory>
#include <vector>

namespace redcoord::detail {

class connection_impl;

class cluster_router {
public:
    using exec_handler =
        boost::asio::any_completion_handler<void(boost::system::error_code, std::size_t)>;
    using run_handler = boost::asio::any_completion_handler<void(boost::system::error_code)>;

    cluster_router(connection_impl& owner, config cfg);
    ~cluster_router();
    cluster_router(const cluster_router&) = delete;
    cluster_router& operator=(const cluster_router&) = delete;

    // Reads the slot map again soon (at most one refresh at a time, 100 ms apart).
    void request_refresh();

    /// Starts the discovery and refresh loop; the owner's run handler completes when the
    /// first discovery fails (abort_connect) or when stopped.
    void start(std::shared_ptr<connection_impl> self);
    void stop();
    void exec(const request& req, any_adapter adapter, diagnostics* diag, bool inline_ok,
              exec_handler handler);

    bool connected() const noexcept;
    void add_usage(usage& u) const;
    /// The masters, as last read (for listings that must cover every master).
    std::vector<endpoint> masters() const;
    /// The master serving slot as the map says, as an opaque identity; null when unknown or
    /// while the slot's requests wait out a redirection (they must keep their order).
    const void* node_of_slot(std::uint16_t slot) const noexcept {
        return parked_[slot] ? nullptr : slots_[slot];
    }
    /// Runs req on the master at ep (SCAN over every master, say).
    void exec_on(const endpoint& ep, const request& req, any_adapter adapter, diagnostics* diag,
                 exec_handler handler);
    /// Called by a child when its link goes down or comes back.
    void on_child_link(connection_impl& child, bool up);

    struct op;
    struct sub;
    struct node;

private:
    boost::asio::awaitable<void> refresh_loop(std::shared_ptr<connection_impl> self);
    boost::asio::awaitable<boost::system::error_code> refresh_once();
    boost::asio::awaitable<boost::system::error_code> read_map(connection_impl& conn,
                                                                const std::string& host,
                                                                cluster_map& out);
    void apply_map(const cluster_map& map);
    node& node_for(const endpoint& ep);
    node* pubsub_node();

    void scan(const std::shared_ptr<op>& o, const std::vector<std::string_view>& args);
    void dispatch(const std::shared_ptr<op>& o);
    void send_round(const std::shared_ptr<op>& o);
    void after_sub(const std::shared_ptr<op>& o, sub& s, boost::system::error_code ec,
                   std::size_t bytes);
    void after_round(const std::shared_ptr<op>& o);
    void finish(const std::shared_ptr<op>& o, bool from_reply);
    void fail(const std::shared_ptr<op>& o, boost::system::error_code ec, std::string message,
              bool from_reply = false);
    void wait_then_dispatch(const std::shared_ptr<op>& o, std::chrono::milliseconds delay);
    bool parked_for(const op& o) const;
    void release_slot(std::uint16_t slot);
    void flush_parked();
    void flush_waiting_for_map();
    static void on_reply(void* obj, std::size_t index, node_span msg,
                         boost::system::error_code& ec);

    connection_impl& owner_;
    config cfg_;
    bool stopping_ = false;
    bool map_ready_ = false;
    bool refresh_requested_ = false;
    std::uint64_t next_seq_ = 0;

    std::vector<std::shared_ptr<node>> nodes_;  // every node we hold a connection to
    std::array<node*, cluster_slots> slots_{};
    node* pubsub_ = nullptr;  // where classic SUBSCRIBE and PSUBSCRIBE go

    // Ordering through redirections: commands of each slot not yet finished, and the slots
    // that saw a redirection (new requests for them wait until the older ones are done).
    std::array<std::uint32_t, cluster_slots> inflight_{};
    std::array<bool, cluster_slots> parked_{};
    std::deque<std::shared_ptr<op>> parked_ops_;
    std::vector<std::shared_ptr<op>> waiting_for_map_;

    boost::asio::steady_timer refresh_timer_;
    std::string last_refresh_error_;
    std::string last_server_error_;  // the server's text of the last refused seed, if any
};

}  // namespace redcoord::detail
