// The lock protocol in one place: lock_ops.lua's attempt ("a") and release ("r") operations,
// their arguments and replies, and how a lock-shaped lease (a mutex, a leadership) is acquired
// and released. The stored value is lock_value.hpp's. The session batches the script calls
// (core/script_batch.hpp) and knows none of this.
#pragma once

#include "core/script_batch.hpp"
#include "core/session_impl.hpp"

#include <redcoord/lock.hpp>

#include <memory>
#include <string>
#include <string_view>

namespace redcoord::detail {

// The arguments of one attempt ("a"): mode letters r (reentrant), f (fair), k (the previous
// attempt's reply was lost: a grant it made is recognized by its value), y (yield to another
// node's waiter, refused then with wait_hint::yielded).
std::string_view lock_attempt_mode(bool reentrant, bool fair, bool maybe_granted, bool yield);

// Queues the release ("r") of a lock-shaped lease on the batch: KEYS = the lock's key, ARGV =
// owner, channel, "1" to publish always (else only when an attempt found it held). Its reply
// element: 1 released, 0 not held, 2 still held (a reentrant count above zero).
void lock_batch_release(script_batch& batch, const lease_state& l,
                        std::unique_ptr<batch_entry> op);

// Acquires a lease shaped like a lock (the string lock_ops.lua writes) at main_key, with the
// mutex's waiting, handoff and fair mode. kind names the resource in messages ("lock").
void acquire_lock_lease(std::shared_ptr<session_impl> s, std::string main_key,
                        std::string_view kind, std::string name, const lock_options& lo,
                        acquire_options opts, diagnostics* diag, bool once,
                        asio::any_completion_handler<void(error_code, lease)> handler);

// Throws error::bad_config naming the first option of o that is out of range.
void check_lock_options(const lock_options& o);

// The durations of an acquisition (what: "lock 'orders'"): ttl (zero: the default) and wait
// within [0, max_duration], and a given ttl longer than the renewal interval.
inline error_code check_acquire_durations(diagnostics& diag, std::string_view what,
                                          const acquire_options& o, milliseconds interval,
                                          bool watchdog) {
    error_code ec = check_duration_arg(diag, what, "ttl", o.ttl, true);
    if (!ec && o.wait) ec = check_duration_arg(diag, what, "wait", *o.wait, true);
    if (!ec && o.ttl.count() > 0) ec = check_ttl_renewable(diag, what, o.ttl, interval, watchdog);
    return ec;
}

}  // namespace redcoord::detail
