// Internals of a session: the push fan-out, the lease watchdog, lock wait queues, statistics.
#pragma once

#include "core/access.hpp"
#include "core/completion.hpp"
#include "core/eval.hpp"
#include "core/glob.hpp"
#include "core/script_batch.hpp"
#include "core/shared_stats.hpp"
#include "core/tracer.hpp"
#include "wire/time_math.hpp"

#include <redcoord/lease.hpp>
#include <redcoord/script.hpp>
#include <redcoord/session.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace redcoord::detail {

namespace asio = boost::asio;
using boost::system::error_code;
using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

class session_impl;

// One pub/sub subscription per channel (or pattern) per connection, fanned out to the local
// listeners of every session on it (each session its own owner). Gap events (reconnect,
// overflow) reach every listener. The first session on a connection makes it and starts its
// one receive loop; the last one to leave stops it.
//
// Listeners may add and remove listeners (themselves included) while a message is being
// dispatched: a listener removed then is not called again, one added then gets the next
// message; the removal itself (and an UNSUBSCRIBE) happens when the dispatch is over.
class push_router : public std::enable_shared_from_this<push_router> {
public:
    using listener = std::function<void(const push_message&)>;

    explicit push_router(connection& conn) : conn_(access::alias(conn)) {}

    // The router of conn: the one its sessions share, made when there is none.
    static std::shared_ptr<push_router> of(connection& conn);

    // A session joins; on_reconnect runs each time the connection comes back.
    std::uint64_t join(std::function<void()> on_reconnect);
    // It leaves: its listeners added with notify_close get one push_event::closed, then all of
    // its listeners go. The last one to leave stops the receive loop.
    void leave(std::uint64_t owner);

    // Adds a listener; the first listener of a channel subscribes (the SUBSCRIBE is queued on
    // the connection before anything the caller sends afterwards). A wake-up channel (one that
    // lives with its resource and shares its hash tag) is sharded on a Redis Cluster: SSUBSCRIBE
    // on the master of the resource's slot, which the scripts' SPUBLISH reaches.
    std::uint64_t add(std::uint64_t owner, const std::string& channel, bool pattern, listener fn,
                      bool notify_close, bool wake_up = false);
    // Removes a listener; the last one of a channel unsubscribes.
    void remove(std::uint64_t id);

    // Work the listeners of one owner share for the message being dispatched (a payload parsed
    // once for all of them): one slot per tag and owner, empty at the start of each message.
    // The reference is valid until the next call.
    std::shared_ptr<void>& memo(const void* tag, std::uint64_t owner);

private:
    struct slot {
        listener fn;
        std::uint64_t owner = 0;
        bool removed = false;
        bool notify_close = false;
    };
    struct entry {
        std::string channel;
        bool pattern = false;
        bool sharded = false;  // SSUBSCRIBE (a wake-up channel on a Redis Cluster)
        std::map<std::uint64_t, slot> listeners;
    };
    struct memo_slot {
        const void* tag;
        std::uint64_t owner;
        std::shared_ptr<void> value;
    };
    // While listeners are being called: removals wait for the end, the memo starts afresh.
    struct dispatch_scope {
        push_router& r;
        explicit dispatch_scope(push_router& router) : r(router) {
            if (r.dispatching_++ == 0) r.memo_.clear();
        }
        ~dispatch_scope() { r.end_dispatch(); }
        dispatch_scope(const dispatch_scope&) = delete;
        dispatch_scope& operator=(const dispatch_scope&) = delete;
    };
    void start();
    void send(std::string_view command, const std::string& channel);
    // SSUBSCRIBE of the sharded entry at key, again until it holds (a refusal such as MOVED
    // while the cluster's map is being corrected is retried, 50 ms to 1.6 s apart); with
    // gap_when_done its listeners get a gap once it holds (messages may have been missed).
    void subscribe_shard(const std::string& key, int attempt, bool gap_when_done);
    // A slot moved (an unrequested sunsubscribe) or the cluster's masters changed: the sharded
    // entries listen again on their slots' masters, and their listeners look again.
    void resubscribe_shards(const std::string* only_channel);
    void deliver_gap(entry& e);
    void dispatch(const push_message& m);
    void erase(std::uint64_t id);
    void end_dispatch();
    static asio::awaitable<void> receive_loop(std::shared_ptr<push_router> self);

    connection conn_;  // an alias (access::alias): valid while the router lives
    std::map<std::string, entry> channels_;  // key: "c:", "p:" or "s:" (sharded) + name
    std::unordered_map<std::uint64_t, std::string> by_id_;
    std::map<std::uint64_t, std::function<void()>> owners_;
    std::uint64_t next_id_ = 1;
    std::uint64_t next_owner_ = 1;
    int dispatching_ = 0;                  // nesting depth of dispatches under way
    std::vector<std::uint64_t> removed_;   // removed during a dispatch, erased after it
    std::vector<memo_slot> memo_;
    std::string key_;                      // lookup scratch, so dispatch does not allocate
    asio::cancellation_signal stop_;
    bool running_ = false;
};

// A session's share of its connection's push router: the listeners it adds are its own.
class push_hub {
public:
    using listener = push_router::listener;

    explicit push_hub(connection& conn) : router_(push_router::of(conn)) {}

    // Adds a listener (see push_router::add). With notify_close it also gets one
    // push_event::closed when the session closes.
    std::uint64_t add(const std::string& channel, bool pattern, listener fn,
                      bool notify_close = false) {
        return router_->add(owner_, channel, pattern, std::move(fn), notify_close);
    }
    // Adds a listener on a resource's wake-up channel (sharded on a Redis Cluster).
    std::uint64_t add_wake_up(const std::string& channel, listener fn, bool notify_close = false) {
        return router_->add(owner_, channel, false, std::move(fn), notify_close, true);
    }
    void remove(std::uint64_t id) { router_->remove(id); }
    std::shared_ptr<void>& memo(const void* tag) { return router_->memo(tag, owner_); }

    // Joins the router (reconnects renew the session's leases and read the server's policy
    // again); stop() leaves it.
    void start(const std::shared_ptr<session_impl>& owner);
    void stop();

private:
    std::shared_ptr<push_router> router_;
    std::uint64_t owner_ = 0;
};

// How to renew and release one kind of lease. Renew: KEYS = keys, ARGV = owner, ttl_ms,
// extra...; replies 1 when renewed, 0 when gone or taken. Release: ARGV = owner, extra...;
// replies 0 when not held, 1 when released, 2 when still held (a reentrant count above zero).
// Without a release script (locks and leaderships), batch_release queues the release on the
// session's script batch (the kind's protocol knows its arguments). on_release, when set, is
// what happens when a lease of this kind stops being held by its release, called once with the
// lease before the release's reply (the kind's local handoff: the next local waiter's attempt
// rides the same pipeline, behind the release).
struct lease_state;
struct lease_spec {
    const script* renew = nullptr;
    const script* release = nullptr;
    void (*batch_release)(script_batch&, const lease_state&, std::unique_ptr<batch_entry>) =
        nullptr;
    void (*on_release)(lease_state&) = nullptr;
};

// One entry of the watchdog's schedule; a lease has at most one (lease_state::dog_entry).
struct watchdog_item {
    clock::time_point when;
    std::uint64_t seq;
    std::weak_ptr<lease_state> lease;
    bool operator<(const watchdog_item& o) const noexcept {
        return when != o.when ? when < o.when : seq < o.seq;
    }
};
using watchdog_schedule = std::set<watchdog_item>;

struct lease_state : std::enable_shared_from_this<lease_state> {
    std::shared_ptr<session_impl> session;
    const lease_spec* spec = nullptr;
    std::string resource;
    std::vector<std::string> keys;
    std::vector<std::string> extra_args;
    std::string owner;
    std::int64_t fence = 0;
    milliseconds ttl{0};
    milliseconds renew_interval{0};  // 0: ttl * renew_fraction
    bool watchdog = true;

    lease::status status = lease::status::held;
    error_code lost_reason;
    clock::time_point deadline;
    clock::time_point next_renewal;
    bool scheduled = false;  // in the watchdog's schedule, at dog_entry
    watchdog_schedule::iterator dog_entry;
    std::uint64_t renewals = 0;

    std::list<asio::cancellation_signal> signals;
    std::list<asio::any_completion_handler<void(error_code)>> lost_waiters;
    std::string wait_key;  // the key of its kind's local wait queue, for spec->on_release
    diagnostics scratch;
    // For tracing: what it is (trace_event::primitive) and when it was first granted.
    std::string_view primitive = "mutex";
    clock::time_point granted{};
};

// Renews every lease of the session from one timer: due renewals are sent together, so they
// leave in one write.
class watchdog {
public:
    void add(const std::shared_ptr<lease_state>& l);  // schedules (or reschedules)
    void remove(lease_state& l) noexcept {
        if (l.scheduled) {
            l.scheduled = false;
            items_.erase(l.dog_entry);
        }
    }
    std::size_t size() const noexcept { return items_.size(); }
    void start(const std::shared_ptr<session_impl>& owner);
    void stop();
    // After a reconnect the server may have lost its data (a restart without persistence):
    // every held lease is checked at once, before anything else the session sends.
    void renew_all_now(const std::shared_ptr<session_impl>& owner);

    using item = watchdog_item;
    const watchdog_schedule& items() const noexcept { return items_; }

private:
    static asio::awaitable<void> loop(std::shared_ptr<session_impl> owner);
    static asio::awaitable<void> renew(std::shared_ptr<session_impl> owner,
                                       std::shared_ptr<lease_state> l, clock::time_point planned);
    void send_renewal(const std::shared_ptr<session_impl>& owner,
                      const std::shared_ptr<lease_state>& l);

    void schedule(const std::shared_ptr<lease_state>& l, clock::time_point when);
    void clear() noexcept;

    watchdog_schedule items_;
    std::uint64_t seq_ = 0;
    std::unique_ptr<asio::steady_timer> timer_;
    bool stopped_ = false;
};

// What an upper layer keeps per session (the wait layer's local wait queues,
// wait/wait_queue.hpp). The session knows only that it tells it when it closes.
struct session_part {
    virtual ~session_part() = default;
    virtual void on_close() = 0;
};

class lock_stats_window {
public:
    void record(std::chrono::microseconds wait, bool contended);
    void fill(lock_statistics& out) const;
    std::uint64_t acquisitions = 0, contended = 0, timeouts = 0, lost = 0, renewals = 0;

private:
    static constexpr std::size_t window = 100000;
    std::vector<std::int64_t> samples_;
    std::size_t next_ = 0;
    double sum_ = 0;
    std::int64_t max_ = 0;
};

class session_impl : public std::enable_shared_from_this<session_impl> {
public:
    session_impl(connection& c, session_options o);

    // An alias of the user's connection (access::alias): a completion that reaches the
    // session after the user destroyed the connection finds it stopped, not freed.
    connection conn;
    session_options opts;
    keyspace keys;
    std::string node_id;
    // This session's own id (random hex, no spaces), stored in every lock value it writes
    // beside the node id: a waiter of another session is "another node" for the local handoff
    // even when both run with the same node id (processes given one node id).
    std::string instance;
    bool closed = false;
    // The command the scripts publish wake-ups with (see detail::publish_command; the waiters
    // listen through push_hub::add_wake_up).
    std::string_view publish_command() const noexcept { return detail::publish_command(conn); }
    push_hub hub;
    watchdog dog;
    lock_stats_window lock_stats;
    tracer trace;  // session_options::trace and the library's observers (metrics)
    std::uint64_t link_watch = 0;     // the connection's link observer (connection events)
    clock::time_point link_down{};    // when the link last dropped
    shared_stats shared;  // the cluster-wide statistics this session reports
    std::unique_ptr<session_part> waits;  // the local wait queues (wait/wait_queue.hpp)
    script_batch lock_ops;  // lock_ops.lua's batch (locks/lock.cpp)

    std::string new_owner_token();
    // Starts observing the connection's link (connection events for tracing).
    void watch_link();
    milliseconds drift(milliseconds ttl) const;

    // Until when a lease Redis granted or renewed for ttl, asked at sent, is certainly held.
    clock::time_point lease_deadline(clock::time_point sent, milliseconds ttl) const;
    milliseconds renew_interval(const lease_state& l) const;
    // Starts holding (or holds on after an extension): the deadline Redis just confirmed for
    // a request sent at sent, and the watchdog's schedule.
    void hold(const std::shared_ptr<lease_state>& l, clock::time_point sent);
    // Marks a held lease lost: completes waiters, emits the cancellation signals.
    void mark_lost(lease_state& l, error_code why);
    // Stops holding because of a release (no renewal after this) and runs the release hook
    // (what it wakes runs in a later turn, after the caller has queued the release).
    void mark_released(lease_state& l);
    // Sends l's release (the status is the caller's business); handler may be empty.
    void send_release(const std::shared_ptr<lease_state>& l, diagnostics* diag,
                      asio::any_completion_handler<void(error_code)> handler);

    // Steps of the graceful close that primitives register (a membership's leave): each
    // starts when called and completes its handler.
    using close_step = std::function<void(asio::any_completion_handler<void(error_code)>)>;
    std::map<std::uint64_t, close_step> close_steps;
    std::uint64_t next_close_step = 1;
    bool closing = false;  // async_close is under way: no new acquisitions
    // Refuses a new acquisition once the session closes (or is closing), saying so in diag.
    error_code check_open(diagnostics& diag) const;

    // The server's maxmemory-policy (session_options::on_warning, refuse_evicting_server),
    // read as the session starts and after each reconnect. unknown: a read is under way, or
    // the last one got no answer.
    enum class policy_state { unknown, safe, evicting, unreadable };
    policy_state policy = policy_state::unknown;
    std::string policy_name;
    bool policy_reading = false;
    std::vector<asio::any_completion_handler<void(error_code)>> policy_waiters;
    // Starts a read of the policy (unless one is under way or nothing asks for it).
    void read_policy();
    void policy_read(error_code ec, const std::map<std::string, std::string>& reply,
                     const diagnostics& diag);
    // With refuse_evicting_server, while the policy is unknown: keeps then, which runs with
    // the outcome of the read (success, or why the server did not answer), and returns true.
    bool wait_for_policy(asio::any_completion_handler<void(error_code)> then);
    // With refuse_evicting_server: error::evicting_server when the last read found an evicting
    // policy (diag says so, naming what was refused).
    error_code policy_refusal(diagnostics& diag, std::string_view what) const;


    // Closes at once (the destructor's close): held leases are marked lost and their
    // releases sent, not awaited.
    void close();
    static asio::awaitable<error_code> close_gracefully(std::shared_ptr<session_impl> s);
};

// An acquisition's look at the server's policy (session_options::refuse_evicting_server;
// what: "lock 'orders'"): false when it may go on now. Else it has taken handler over: it
// completes it with error::evicting_server, or, while the policy is unknown, calls
// resume(handler) once a read has found it (or completes handler with the read's error).
using lease_handler = asio::any_completion_handler<void(error_code, lease)>;
bool policy_gate(session_impl& s, diag_target& diag, std::string_view what,
                 lease_handler& handler, std::function<void(lease_handler)> resume);


// An operation never completes with a lease whose validity has passed (its reply was delayed
// past it, the attempt waited for a reconnect, or its completion was held up after the
// grant): drop_expired_grant releases such a grant at once, leaves l empty and says why in
// diag. keep_if_valid does so when l's deadline has passed and tells whether l is still good.
// stage: where the grant was looked at, for the message (when its reply came, or just before
// its handler ran: delivering_grants in replica_ack.hpp).
// A grant is kept only with at least min_validity_at_grant of its validity left: less
// protects no work (no command goes to Redis and back in that time), and the margin covers
// the moment between the last look and the handler's first instruction.
enum class grant_stage { reply, hand_over };
inline constexpr milliseconds min_validity_at_grant{1};
void drop_expired_grant(lease& l, diagnostics& diag, grant_stage stage = grant_stage::reply);
bool keep_if_valid(lease& l, diagnostics& diag, grant_stage stage = grant_stage::reply);

// What an acquisition that gave up at its deadline says: what, the wait, the last error, and
// whether a grant came too late.
// Errors after which waiting on makes sense: the connection may come back before the deadline.
inline bool transient_error(error_code ec) {
    return ec == error::not_connected || ec == error::connection_lost || ec == error::timeout ||
           ec == error::run_not_started;
}

inline std::string timeout_message(const std::string& what, milliseconds wait,
                                   error_code last_error, bool expired_grant) {
    std::string out = what + " not acquired within " + std::to_string(wait.count()) + " ms";
    if (last_error) out += " (last error: " + last_error.message() + ")";
    if (expired_grant)
        out += " (a grant came after its validity had passed and was released: a TTL too "
               "short for the round trip)";
    return out;
}

// Runs f on the session's executor as a detached coroutine, keeping the session alive.
void spawn_detached(session_impl& s, asio::awaitable<void> f);

// Refuses a bad option: throws error_with_diagnostics(error::bad_config) with msg.
[[noreturn]] inline void throw_bad_config(std::string msg) {
    diagnostics diag;
    diag.set_client_message(std::move(msg));
    throw error_with_diagnostics(error::bad_config, diag);
}

inline error_code invalid(diagnostics& diag, std::string msg) {
    diag.set_client_message(msg);
    return error::invalid_argument;
}

// Bounds of a duration option (time_math.hpp's duration_problem): throws error::bad_config
// "field: <what is wrong>".
inline void check_duration_option(std::string_view field, milliseconds d, bool zero_ok = false) {
    if (auto problem = duration_problem(d, zero_ok); !problem.empty())
        throw_bad_config(std::string(field) + ": " + problem);
}

// Bounds of a duration argument: error::invalid_argument, diag "what: field <what is wrong>".
inline error_code check_duration_arg(diagnostics& diag, std::string_view what,
                                     std::string_view field, milliseconds d,
                                     bool zero_ok = false) {
    if (auto problem = duration_problem(d, zero_ok); !problem.empty())
        return invalid(diag, std::string(what) + ": " + std::string(field) + " " + problem);
    return {};
}

// retry_delay and max_retries of lock-like options: a caller that gives no wait waits their
// product, which must stay within max_duration too.
inline void check_retry_options(milliseconds retry_delay, int max_retries) {
    check_duration_option("retry_delay", retry_delay);
    if (max_retries < 0)
        throw_bad_config("max_retries: " + std::to_string(max_retries) + " is negative");
    const auto wait = sat_mul(retry_delay, max_retries);
    if (wait > max_duration)
        throw_bad_config("max_retries: " + std::to_string(max_retries) + " times retry_delay (" +
                         std::to_string(retry_delay.count()) + " ms) is " +
                         duration_problem(wait, true));
}

// The wait of a caller that gives none (options checked by check_retry_options).
inline milliseconds default_wait(milliseconds retry_delay, int max_retries) {
    return std::min(sat_mul(retry_delay, std::max(max_retries, 0)), max_duration);
}

// A lease the watchdog renews every `interval` (zero: a fraction of its TTL) ends before its
// first renewal when interval >= ttl. As an option (the default TTL): error::bad_config.
inline void check_interval_option(std::string_view interval_field, milliseconds interval,
                                  std::string_view ttl_field, milliseconds ttl, bool watchdog) {
    check_duration_option(interval_field, interval, true);
    if (watchdog && interval.count() > 0 && interval >= ttl)
        throw_bad_config(std::string(interval_field) + ": " + std::to_string(interval.count()) +
                         " ms is not shorter than " + std::string(ttl_field) + " (" +
                         std::to_string(ttl.count()) +
                         " ms): a lease would end before its first renewal");
}

// As check_interval_option, for a TTL given with an acquisition: error::invalid_argument.
inline error_code check_ttl_renewable(diagnostics& diag, std::string_view what, milliseconds ttl,
                                      milliseconds interval, bool watchdog) {
    if (!watchdog || interval.count() == 0 || ttl > interval) return {};
    return invalid(diag, std::string(what) + ": ttl " + std::to_string(ttl.count()) +
                             " ms is not longer than extension_interval (" +
                             std::to_string(interval.count()) +
                             " ms): the lease would end before its first renewal");
}

}  // namespace redcoord::detail
