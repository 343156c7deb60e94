// Membership: node heartbeats, the node registry, dead-node detection and change events.
#pragma once

#include <redcoord/diagnostics.hpp>
#include <redcoord/session.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace redcoord {

namespace detail {
class membership_impl;
}

/// Settings of membership. Defaults in comments; they follow the reference's layout.
struct membership_options {
    /// How often each hosted node writes its heartbeat (1 min).
    std::chrono::milliseconds heartbeat_interval{std::chrono::minutes(1)};
    /// The heartbeat key lives heartbeat_interval + heartbeat_grace (20 s).
    std::chrono::milliseconds heartbeat_grace{std::chrono::seconds(20)};
    /// Sliding TTL of the registry set, renewed by every heartbeat (30 days).
    std::chrono::milliseconds registry_ttl{std::chrono::hours(24 * 30)};
    /// How often this process looks for dead nodes and publishes "dead" events for them
    /// (zero: heartbeat_interval). Only while at least one node is hosted here.
    std::chrono::milliseconds dead_check_interval{0};
    /// Reaper: remove dead nodes from the registry and release the locks and leaderships they
    /// held (false).
    bool reaper = false;
    /// Free text stored in the heartbeat payload (e.g. the application's version).
    std::string version;
};

/// A node as the registry and its heartbeat describe it.
struct node_info {
    std::string id;
    bool alive = false;  ///< its heartbeat key exists
    /// From the heartbeat payload (absent for a dead node).
    std::optional<std::chrono::system_clock::time_point> last_heartbeat;
    std::optional<std::chrono::system_clock::time_point> started_at;
    std::int64_t pid = 0;
    std::string host;
    std::string version;
};

struct cluster_health {
    std::size_t total = 0;    ///< nodes in the registry
    std::size_t healthy = 0;  ///< with a live heartbeat
    std::size_t dead = 0;     ///< registered, heartbeat gone
};

/// A change of membership, published on `<prefix>nodes:{registry}:events` as JSON
/// {"event": "joined"|"left"|"dead", "node": id}.
struct member_event {
    enum class kind { joined, left, dead };
    kind what = kind::joined;
    std::string node;
};

/// Heartbeats of the nodes this process hosts, and the view of the whole cluster.
///
/// Keys (as in the reference): `<prefix>hb:{registry}:<node>` holds JSON {"node", "timestamp" (Unix ms),
/// "started_at" (Unix ms), "pid", "host", "version", "ttl_ms" (the key's TTL when written)} with TTL = heartbeat_interval +
/// heartbeat_grace; `<prefix>nodes:{registry}` is a set of node ids with a sliding TTL.
/// Heartbeats of every node hosted in one process leave in one pipelined write per tick.
///
/// Thread safety: none; use it from the session's executor. Keep the session alive while the
/// membership exists. Destroying it stops the heartbeats and removes the hosted nodes'
/// heartbeats (scheduled), as a graceful leave does.
class membership {
public:
    /// Throws error_with_diagnostics (error::bad_config) naming a bad option.
    explicit membership(session& s, membership_options opts = {});
    ~membership();
    membership(const membership&) = delete;
    membership& operator=(const membership&) = delete;

    /// Starts hosting `node` (empty: the session's node id): writes its heartbeat now, adds it
    /// to the registry, publishes "joined", then heartbeats every interval.
    /// Completion signature: void(error_code) once the first heartbeat is written.
    template <class Token = boost::asio::deferred_t>
    auto async_join(std::string node = {}, Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
            [this](auto h, std::string node) { join_impl(std::move(node), std::move(h)); },
            token, std::move(node));
    }

    /// Graceful leave: stops heartbeating `node` (empty: the session's node id), deletes its
    /// heartbeat and registry entry at once and publishes "left"; it is then not reported dead.
    /// Completion signature: void(error_code).
    template <class Token = boost::asio::deferred_t>
    auto async_leave(std::string node = {}, Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
            [this](auto h, std::string node) { leave_impl(std::move(node), std::move(h)); },
            token, std::move(node));
    }

    /// Every registered node, alive or dead. Completion: void(error_code, vector<node_info>).
    template <class Token = boost::asio::deferred_t>
    auto async_nodes(Token&& token = {}) {
        return boost::asio::async_initiate<Token,
                                           void(boost::system::error_code, std::vector<node_info>)>(
            [this](auto h) { nodes_impl(false, std::move(h)); }, token);
    }

    /// Registered nodes whose heartbeat is gone. Completion: void(error_code, vector<node_info>).
    template <class Token = boost::asio::deferred_t>
    auto async_dead_nodes(Token&& token = {}) {
        return boost::asio::async_initiate<Token,
                                           void(boost::system::error_code, std::vector<node_info>)>(
            [this](auto h) { nodes_impl(true, std::move(h)); }, token);
    }

    /// Total, healthy and dead. Completion: void(error_code, cluster_health).
    template <class Token = boost::asio::deferred_t>
    auto async_health(Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, cluster_health)>(
            [this](auto h) { health_impl(std::move(h)); }, token);
    }

    /// Looks for dead nodes now (as the periodic check does): publishes "dead" once per dead
    /// node and, with the reaper, removes it and releases its locks.
    /// Completion: void(error_code, std::vector<std::string> newly_dead).
    template <class Token = boost::asio::deferred_t>
    auto async_check_dead(Token&& token = {}) {
        return boost::asio::async_initiate<Token,
                                           void(boost::system::error_code, std::vector<std::string>)>(
            [this](auto h) { check_dead_impl(std::move(h)); }, token);
    }

    /// Receives membership changes from the whole cluster while the returned handle lives.
    /// The callback runs on the session's executor; gap events (a reconnect) are not member
    /// events and are not delivered: call async_nodes() to resynchronise when it matters.
    class watch {
    public:
        watch() = default;
        watch(watch&& o) noexcept : s_(std::move(o.s_)), id_(std::exchange(o.id_, 0)) {}
        watch& operator=(watch&& o) noexcept;
        ~watch();

    private:
        friend class membership;
        std::weak_ptr<detail::session_impl> s_;
        std::uint64_t id_ = 0;
    };
    [[nodiscard]] watch subscribe(std::function<void(const member_event&)> callback);

    /// The nodes hosted by this process.
    std::vector<std::string> hosted() const;

    const membership_options& options() const noexcept;

private:
    using ec_handler = boost::asio::any_completion_handler<void(boost::system::error_code)>;
    using nodes_handler = boost::asio::any_completion_handler<void(boost::system::error_code,
                                                                   std::vector<node_info>)>;
    void join_impl(std::string node, ec_handler h);
    void leave_impl(std::string node, ec_handler h);
    void nodes_impl(bool dead_only, nodes_handler h);
    void health_impl(
        boost::asio::any_completion_handler<void(boost::system::error_code, cluster_health)> h);
    void check_dead_impl(boost::asio::any_completion_handler<
                         void(boost::system::error_code, std::vector<std::string>)>
                             h);

    std::shared_ptr<detail::membership_impl> impl_;
};

}  // namespace redcoord
