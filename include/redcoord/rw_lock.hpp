// Distributed read-write locks: many readers or one writer, writers preferred.
#pragma once

#include <redcoord/detail/with_diagnostics_handler.hpp>
#include <redcoord/diagnostics.hpp>
#include <redcoord/error.hpp>
#include <redcoord/lease.hpp>
#include <redcoord/lock.hpp>
#include <redcoord/session.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>

#include <string>

namespace redcoord {

/// Read-write locks on one session: any number of readers, or one writer.
///
/// Every read or write hold is a lease of its own (lease.hpp): its own owner token, a fencing
/// token from the lock's one counter (read and write grants share it, so tokens grow across
/// both), renewal by the session's watchdog, and the lost signal.
///
/// Writer preference: a writer that is refused (readers or another writer hold the lock)
/// marks itself as waiting, and while a live mark exists no NEW reader gets in, so a steady
/// stream of readers cannot starve writers. Readers already holding keep their hold. The mark
/// lapses after lock_options::fair_waiter_timeout unless the waiting writer refreshes it (it
/// does, at a third of that), so a writer that died stops blocking readers; a writer that
/// gives up removes its mark at once. try-acquire of a write does not mark.
///
/// Key layout, all companions of `<prefix>lock:{<name>}` (one cluster hash slot; the mutex of
/// the same name uses the main key itself, so the two never collide):
/// | key | type | content |
/// | --- | --- | --- |
/// | `<prefix>lock:{<name>}:rw:writer` | hash | owner, fence, since (server ms), node; PX ttl |
/// | `<prefix>lock:{<name>}:rw:readers` | zset | reader owners scored by their expiry (server ms) |
/// | `<prefix>lock:{<name>}:rw:writers_waiting` | zset | waiting writers scored by their mark's expiry |
/// | `<prefix>lock:{<name>}:rw:fence` | string | the fencing counter (expires a day after its last token; docs/locks.md) |
/// | `<prefix>lock:{<name>}:rw:released` | channel | publishes when the lock may have become free |
/// | `<prefix>lock:{<name>}:rw:holders` | hash | each reader's "<fence> <since, server ms> <node>", for the monitor |
/// A reader that died (its lease not renewed) leaves the readers zset when its score passes:
/// every script removes lapsed readers, so it blocks writers no longer than its TTL. lease::key()
/// is the writer hash for a write hold and the readers zset for a read hold.
///
/// Waiting: a waiter subscribes to the lock's channel (a push on the shared connection) and
/// tries again when a release publishes (a writer's release, the last reader's release, a
/// writer giving up); a fallback timer bounded by the blocker's remaining TTL (for a waiting
/// writer also by its mark's refresh) covers a lost message. No polling loop.
///
/// lock_options as for the mutex: default_ttl, retry_delay and max_retries (the default
/// wait), enable_extension, extension_interval, and fair_waiter_timeout (the writer mark's
/// lifetime). fair is not supported (bad_config): writer preference is the policy here.
/// acquire_options: ttl, wait and owner as for the mutex; reentrant is not supported
/// (invalid_argument). A given owner must be unique per hold.
///
/// The provider is a light handle; several may share a session. Thread safety: none; use it
/// from the session's executor. Every operation completes through the handler's associated
/// executor.
class rw_lock_provider {
public:
    /// Throws error_with_diagnostics (error::bad_config) naming a bad option.
    explicit rw_lock_provider(session& s, lock_options opts = {});

    session& get_session() const noexcept { return *session_; }
    const lock_options& options() const noexcept { return opts_; }

    /// Waits for a read hold until opts.wait passes. Completion signature: void(error_code,
    /// lease): error::acquire_timeout at the deadline, error::lease_lost when a grant's
    /// validity ended before the handler could run, error::invalid_argument for bad input
    /// (diag names it), connection errors as async_exec. Cancellation: terminal, partial and
    /// total (a hold granted just before is released, never leaked).
    template <class Token = boost::asio::deferred_t>
    auto async_acquire_read(std::string name, acquire_options opts, diagnostics& diag,
                            Token&& token = {}) {
        return initiate(std::move(name), opts, &diag, false, false, std::move(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_acquire_read(std::string name, acquire_options opts = {}, Token&& token = {}) {
        return initiate(std::move(name), opts, nullptr, false, false, std::move(token));
    }

    /// Waits for the write hold until opts.wait passes; while it waits, new readers are kept
    /// out. Completion and cancellation as async_acquire_read.
    template <class Token = boost::asio::deferred_t>
    auto async_acquire_write(std::string name, acquire_options opts, diagnostics& diag,
                             Token&& token = {}) {
        return initiate(std::move(name), opts, &diag, true, false, std::move(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_acquire_write(std::string name, acquire_options opts = {}, Token&& token = {}) {
        return initiate(std::move(name), opts, nullptr, true, false, std::move(token));
    }

    /// One attempt at a read hold. Completion signature: void(error_code, lease): an empty
    /// lease when a writer holds or waits for the lock (not an error).
    template <class Token = boost::asio::deferred_t>
    auto async_try_acquire_read(std::string name, acquire_options opts, diagnostics& diag,
                                Token&& token = {}) {
        return initiate(std::move(name), opts, &diag, false, true, std::move(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_try_acquire_read(std::string name, acquire_options opts = {},
                                Token&& token = {}) {
        return initiate(std::move(name), opts, nullptr, false, true, std::move(token));
    }

    /// One attempt at the write hold (no waiting mark is left). Completion signature:
    /// void(error_code, lease): an empty lease when readers or another writer hold the lock.
    template <class Token = boost::asio::deferred_t>
    auto async_try_acquire_write(std::string name, acquire_options opts, diagnostics& diag,
                                 Token&& token = {}) {
        return initiate(std::move(name), opts, &diag, true, true, std::move(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_try_acquire_write(std::string name, acquire_options opts = {},
                                 Token&& token = {}) {
        return initiate(std::move(name), opts, nullptr, true, true, std::move(token));
    }

private:
    using acquire_handler =
        boost::asio::any_completion_handler<void(boost::system::error_code, lease)>;

    template <class Token>
    auto initiate(std::string name, acquire_options opts, diagnostics* diag, bool write,
                  bool once, Token&& token) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, lease)>(
            [this](auto handler, std::string name, acquire_options opts, diagnostics* diag,
                   bool write, bool once) {
                diag = detail::diagnostics_for(handler, diag);
                acquire_impl(std::move(name), opts, diag, write, once, std::move(handler));
            },
            token, std::move(name), opts, diag, write, once);
    }

    void acquire_impl(std::string name, acquire_options opts, diagnostics* diag, bool write,
                      bool once, acquire_handler handler);

    session* session_;
    lock_options opts_;
};

}  // namespace redcoord
