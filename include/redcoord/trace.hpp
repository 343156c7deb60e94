// Coordination tracing: a structured event for each thing that happens to a lock, a lease, an
// election, a node, the connection or a job, handed to a sink the application chooses (the
// reference's EnableLockTracing, EnableLeaderElectionLogging and LogCoordinationEvents).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <string_view>

namespace redcoord {

/// What happened (trace_event::kind). Each belongs to one trace_options switch.
enum class trace_kind : std::uint8_t {
    // trace_options::lock_tracing: mutexes, read and write holds, permits, fill leases.
    lock_acquired,   ///< granted; duration: the wait from the call
    lock_contended,  ///< the first attempt found it held: the caller waits
    lock_timeout,    ///< given up at the deadline; duration: the wait
    lock_released,   ///< released by its holder; duration: how long it was held
    waiter_woken,    ///< a waiter woken by a release (push or local handoff); duration: its sleep
    lease_renewed,   ///< a watchdog renewal confirmed; duration: after its planned time
    renewal_late,    ///< as lease_renewed, when later than a quarter of the renewal interval
    lease_lost,      ///< a held lease was lost; detail: why; duration: how long it was held
    // trace_options::leader_election_logging: leaderships, primitive "leadership". Their
    // leases' other events (contended, timeout, waiter woken, renewed, renewal late) come
    // with the lock_* and lease_* kinds, under this switch too.
    election_won,       ///< this node became leader; token: the term
    election_lost,      ///< this node's leadership was lost; detail: why
    election_resigned,  ///< this node resigned
    // trace_options::coordination_events: the cluster, the connection and jobs.
    node_joined,      ///< a node joined the membership (resource: its id)
    node_left,        ///< a node left gracefully
    node_dead,        ///< a node's heartbeat lapsed
    heartbeat,        ///< this process wrote its nodes' heartbeats; duration: lateness of the tick
    connection_up,    ///< connected (again); resource: the server; duration: time it was down
    connection_down,  ///< the connection was lost; detail: why
    connection_reconnecting,  ///< an attempt to connect failed, another follows; detail: why;
                              ///< duration: how long it has been down
    job_transition,   ///< a job of this node changed state; detail: the new state
    // trace_options::queue_events: one event per message of a reliable_queue (resource: the
    // queue's name, detail: the consumer or worker).
    queue_sent,         ///< enqueued
    queue_received,     ///< taken by a consumer (dequeue, try-dequeue, steal)
    queue_acked,        ///< acknowledged by its consumer
    queue_redelivered,  ///< given back by async_redeliver; token: how many messages
};

/// "lock.acquired", "lock.contended", ..., "election.won", "node.dead", "connection.up",
/// "job.transition", "queue.sent".
std::string_view to_string(trace_kind k) noexcept;

/// One coordination event. The views are valid only during the sink's call: copy what you
/// keep.
struct trace_event {
    trace_kind kind = trace_kind::lock_acquired;
    /// When it happened (system clock of this process).
    std::chrono::system_clock::time_point time{};
    /// What kind of thing: "mutex", "read", "write", "permit", "fill", "leadership", "node",
    /// "connection", "job".
    std::string_view primitive;
    /// Its name: the lock, semaphore or leadership name, the cache or idempotency key of a
    /// fill lease, a node id, the server's address, a job id.
    std::string_view resource;
    /// The node this session runs as (session_options::node_id).
    std::string_view node;
    /// The holder's owner token (leases), empty otherwise.
    std::string_view owner;
    /// The fencing token of a lease, the term of a leadership, a job's attempt; 0 when none.
    std::int64_t token = 0;
    /// See trace_kind: a wait, a hold, a lateness, a job's run; zero when it has none.
    std::chrono::microseconds duration{0};
    /// Why (a lost lease's or connection's reason), a job's new state, its function after a
    /// space ("succeeded send-mail"); empty when none.
    std::string_view detail;
};

/// Where events go: called on the session's executor, in order; must not throw and should not
/// block (a sink that writes to a slow file holds up the session).
using trace_sink = std::function<void(const trace_event&)>;

/// Which events a session emits (session_options::trace). All off by default: with every switch
/// off, or no sink, nothing is built and the cost is one test of a flag.
struct trace_options {
    /// Locks, read-write locks, semaphore permits and fill leases: acquired, contended,
    /// timeout, released, waiter woken, renewal late, lease lost.
    bool lock_tracing = false;
    /// Leaderships: won, lost, resigned.
    bool leader_election_logging = false;
    /// Nodes joined, left, dead and heartbeats; the connection up and down; job transitions
    /// of this node.
    bool coordination_events = false;
    /// Every message a reliable_queue of the session sends, receives, acknowledges or gives
    /// back (one event per message: for metrics, or for debugging a queue).
    bool queue_events = false;
    /// Receives the events chosen above. Empty: none are emitted.
    trace_sink sink{};
};

/// One line of text per event, for people: time, kind, primitive, resource, then the fields
/// that are set ("2026-12-04T20:51:07.123Z lock.acquired mutex 'orders' node=web-1
/// owner=web-1:9f.. token=42 duration=1.250ms").
std::string format_line(const trace_event& e);

/// One JSON object per event, for machines (JSON Lines): {"time": ISO 8601 UTC with
/// milliseconds, "event": to_string(kind), "primitive", "resource", "node", and "owner",
/// "token", "duration_us", "detail" when set}.
std::string format_json(const trace_event& e);

/// A sink writing format_line (json = false) or format_json (json = true) and a newline to
/// out, flushing after each event. out must outlive the sessions using the sink.
trace_sink stream_sink(std::ostream& out, bool json = false);

}  // namespace redcoord
