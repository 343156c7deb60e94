// Error codes of redcoord, in the "redcoord" category.
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <string>
#include <type_traits>

namespace redcoord {

/// Everything that can go wrong inside redcoord. Errors of the operating system and of Asio
/// (connection refused, operation_aborted, ...) keep their own categories.
enum class error {
    // RESP3 protocol (the server sent something that is not valid RESP3).
    protocol_error = 1,     ///< malformed RESP3 input
    depth_exceeded,         ///< aggregates nested deeper than the parser's limit
    size_exceeded,          ///< a string or aggregate larger than the parser's limit
    unexpected_reply,       ///< a reply arrived when no request was waiting for one
    reply_too_large,        ///< a reply took more memory than config::max_reply_size

    // Converting replies to C++ types.
    unexpected_type,        ///< the reply's RESP3 type does not fit the C++ type
    unexpected_null,        ///< a null reply for a type that is not std::optional
    not_a_number,           ///< a string reply that does not parse as the number asked for
    incompatible_size,      ///< an aggregate whose size does not fit (std::tuple, response<>)

    // The server answered with an error (its text is in the diagnostics).
    server_error,           ///< a simple or blob error from the server
    noscript,               ///< NOSCRIPT: EVALSHA of a script the server does not have
    auth_failed,            ///< HELLO/AUTH refused: wrong password or unknown user
    handshake_failed,       ///< HELLO 3, SETNAME or SELECT refused for another reason

    // The connection.
    not_connected,          ///< fail-fast request while the connection is down
    connection_lost,        ///< the connection dropped after the request was written
    timeout,                ///< the request's deadline passed
    connect_timeout,        ///< connecting took longer than connect_timeout
    resolve_timeout,        ///< resolving the host took longer than connect_timeout
    health_check_failed,    ///< the server stayed silent past the health-check deadline
    run_not_started,        ///< the connection's async_run has ended or never started
    sentinel_unavailable,   ///< no sentinel could name a master for the service
    cluster_unavailable,    ///< no seed or node of a Redis Cluster gave its slot map, or a
                            ///< slot has no master
    cross_slot,             ///< a transaction or multi-key command whose keys are in several
                            ///< cluster slots (refused before sending)
    too_many_redirects,     ///< a cluster kept redirecting a command (MOVED, ASK, TRYAGAIN,
                            ///< CLUSTERDOWN) past config::cluster_max_redirects

    // Input checks.
    bad_config,             ///< a connection string or config field is invalid
    invalid_argument,       ///< an argument of an operation is invalid

    // Leases and the primitives built on them.
    not_held,               ///< releasing or extending something this owner does not hold
    lease_lost,             ///< the lease expired or was taken by someone else while held
    acquire_timeout,        ///< not acquired before the deadline
    session_closed,         ///< the session the operation belongs to is closed, closing or destroyed
    stale_fencing_token,    ///< a fenced write carried a token older than one already seen
    quorum_lost,            ///< a leader saw fewer live nodes than minimum_nodes and stepped down
    evicting_server,        ///< refused: the server's maxmemory-policy may evict lease keys
    replicas_not_acknowledged,  ///< fewer replicas than replica_ack asks acknowledged in time

    // Events and shared state.
    events_gap,             ///< pushes may have been missed (reconnect or overflow)
    subscriber_overflow,    ///< the subscriber fell behind and was dropped
    decode_failed,          ///< a payload is not valid JSON or does not convert to the type
    circuit_open,           ///< the circuit breaker is open (or half-open, its trial under way)

    // Results, barriers and dependencies.
    corrupt_data,           ///< stored compressed data is corrupt or truncated
    dependency_failed,      ///< a job this one depends on completed unsuccessfully
};

/// The category of `redcoord::error`; its name is "redcoord".
const boost::system::error_category& error_category() noexcept;

inline boost::system::error_code make_error_code(error e) noexcept {
    return {static_cast<int>(e), error_category()};
}

}  // namespace redcoord

namespace boost::system {
template <>
struct is_error_code_enum<redcoord::error> : std::true_type {};
}  // namespace boost::system
