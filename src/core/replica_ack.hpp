// Replica acknowledgement (session_options::replica_ack): WAIT after a grant or a renewal, on
// the connection that carried it. WAIT counts the replicas that acknowledged every write its
// own connection made before it, so on any other connection it would confirm nothing.
#pragma once

#include "core/session_impl.hpp"

#include <redcoord/lease.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>

#include <memory>

namespace redcoord::detail {

// Throws error::bad_config naming the bad field of o ("replica_ack.replicas: -1 is negative").
void check_replica_ack(const replica_ack_options& o);

inline bool replica_ack_on(const session_impl& s) noexcept {
    return s.opts.replica_ack.replicas > 0;
}

// Confirms the writes the session's connection has made so far: sends
// `WAIT replicas timeout` on it and completes with success when at least `replicas` replicas
// acknowledged them, or with error::replicas_not_acknowledged when fewer did in time (diag:
// how many of how many, and the timeout). Errors of the WAIT request itself (not_connected,
// connection_lost, timeout) are passed on: nothing is confirmed then either. With the option
// off it completes with success (posted) and sends nothing.
//
// Call it from the handler of the reply to the write it must confirm: the WAIT is then queued
// behind that write on the same connection. The WAIT is fail-fast and never retried on another
// connection, which could not confirm it. Not cancellable: bounded by replica_ack.timeout
// plus the request timeout. diag may be null.
//
// key: the key the write went to. On a Redis Cluster the WAIT goes to that key's master (a
// PTTL of the key goes before it, in the same request); elsewhere it is not used.
void confirm_replicas(session_impl& s, diagnostics* diag,
                      asio::any_completion_handler<void(error_code)> handler,
                      std::string_view key = {});

template <class Token>
auto async_confirm_replicas(session_impl& s, diagnostics* diag, std::string_view key,
                            Token&& token) {
    return asio::async_initiate<Token, void(error_code)>(
        [&s, diag, key](auto h) { confirm_replicas(s, diag, std::move(h), key); }, token);
}

// Confirms a fresh grant, l (held). Success: l is still held and valid, and is passed back.
// Not acknowledged in time (or the WAIT failed): l is released, and the handler gets the
// error (error::replicas_not_acknowledged; diag names the resource and the counts) and an
// empty lease once Redis has answered the release. A lease lost or past its validity by the
// time the WAIT answers is dropped (error::lease_lost). With the option off the handler gets
// l back at once (dispatched). diag may be null; it must outlive the operation.
void confirm_grant(lease l, diagnostics* diag,
                   asio::any_completion_handler<void(error_code, lease)> handler);

template <class Token>
auto async_confirm_grant(lease l, diagnostics* diag, Token&& token) {
    return asio::async_initiate<Token, void(error_code, lease)>(
        [diag](auto h, lease l) { confirm_grant(std::move(l), diag, std::move(h)); }, token,
        std::move(l));
}

// The last step of every operation that gives a lease (DESIGN.md, "The lease contract"): a
// wrapper around its handler that looks at a grant once more just before the handler runs.
// A grant whose validity has passed by then (the operation's thread was held up after the
// grant, or its completion waited its turn on the executor) is released, and the handler gets
// error::lease_lost (diag says how late it was) and an empty lease. With confirm (and
// session_options::replica_ack on), a grant is first confirmed by confirm_grant, which makes
// the same last look. Errors and empty leases are passed on as they are.
//
// The wrapper has handler's cancellation slot but no executor of its own: it runs where the
// operation completes, on the session's executor (the only thread that may touch the lease),
// and then dispatches to handler's associated executor. A handler bound to another executor
// therefore runs after one more hop, which the library cannot look past. diag may be null;
// it must outlive the operation.
lease_handler delivering_grants(const session_impl& s, diagnostics* diag, lease_handler handler,
                                bool confirm = true);

}  // namespace redcoord::detail
