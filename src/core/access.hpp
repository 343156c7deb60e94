// The library's own way into the public classes' internals: the session's state, a lease's
// state and a lease made from it, and the connection's type-erased exec. Not installed, so
// these are not part of the public API.
#pragma once

#include <redcoord/connection.hpp>
#include <redcoord/lease.hpp>
#include <redcoord/session.hpp>

#include "wire/link_change.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>
#include <utility>

namespace redcoord::detail {

struct access {
    static const std::shared_ptr<session_impl>& impl(const session& s) noexcept {
        return s.impl_;
    }
    static const std::shared_ptr<lease_state>& state(const lease& l) noexcept {
        return l.state_;
    }
    static lease make_lease(std::shared_ptr<lease_state> st) noexcept {
        return lease(std::move(st));
    }
    // A handle on c's connection that stays valid after c is destroyed (and then finds the
    // connection stopped); its own destruction does not stop it.
    static connection alias(const connection& c) noexcept {
        return connection(connection::alias_tag{}, c);
    }
    // True when c runs on a Redis Cluster (known once async_run has started).
    static bool is_cluster(const connection& c) noexcept;
    // The masters of c's cluster (empty when not a cluster).
    static std::vector<endpoint> cluster_masters(const connection& c);
    // Asks c's cluster to read its slot map again soon (nothing when not a cluster).
    static void refresh_cluster(const connection& c) noexcept;
    // The master serving slot on c's cluster, as an opaque identity (null when unknown, not a
    // cluster, or while the slot's requests wait out a redirection).
    static const void* cluster_node_of_slot(const connection& c, std::uint16_t slot) noexcept;
    // The connection's link observers (connection_impl::watch_link): told (what, error, peer)
    // when the link comes up, drops or a reconnect attempt fails, on the connection's executor.
    static std::uint64_t watch_link(
        const connection& c,
        std::function<void(link_change, boost::system::error_code, std::string_view)> fn);
    static void unwatch_link(const connection& c, std::uint64_t id) noexcept;
    // The connection's request observer (connection_impl::request_observer); empty: none.
    static void observe_requests(
        const connection& c,
        std::function<void(std::chrono::nanoseconds, boost::system::error_code)> fn);
    template <class... Args>
    static auto exec_erased(connection& c, Args&&... args) {
        return c.async_exec_erased(std::forward<Args>(args)...);
    }
};

}  // namespace redcoord::detail
