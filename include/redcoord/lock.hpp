// Distributed mutex locks (optionally reentrant or fair), and running work on one node at a
// time cluster-wide.
#pragma once

#include <redcoord/detail/with_diagnostics_handler.hpp>
#include <redcoord/diagnostics.hpp>
#include <redcoord/error.hpp>
#include <redcoord/lease.hpp>
#include <redcoord/session.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace redcoord {

/// Lock settings, named as in the reference's LockingOptions. Defaults in comments.
struct lock_options {
    /// TTL of a lock when the caller gives none (5 min).
    std::chrono::milliseconds default_ttl{std::chrono::minutes(5)};
    /// How long a caller that gives no wait waits: retry_delay * max_retries (100 ms * 10).
    /// Waiting itself is woken by the release's push, not by polling: retry_delay is also the
    /// shortest pause before a retry the push did not trigger (the fallback timer's floor).
    std::chrono::milliseconds retry_delay{100};
    int max_retries = 10;
    /// Renew held locks by the watchdog (true). Without it a lock ends at its TTL and its
    /// lease is then marked lost, so the holder still hears of it.
    bool enable_extension = true;
    /// Renewal interval; zero: the TTL times session_options::renew_fraction (a third). With
    /// enable_extension, shorter than default_ttl (a lease would end before its first
    /// renewal). Every duration here is at most max_duration, and so is the default wait.
    std::chrono::milliseconds extension_interval{0};
    /// Fair mode: waiters across the cluster acquire in arrival order (a queue in Redis).
    bool fair = false;
    /// Fair mode: a waiter's place in the queue lapses when it has not asked for this long
    /// (it died); live waiters refresh it well before (5 s).
    std::chrono::milliseconds fair_waiter_timeout{std::chrono::seconds(5)};
};

/// Per-call settings of an acquisition.
struct acquire_options {
    /// The lock's TTL; zero: lock_options::default_ttl. At most max_duration; with
    /// the watchdog on and an extension_interval set, longer than that interval.
    std::chrono::milliseconds ttl{0};
    /// How long to wait for the lock, at most max_duration; unset: retry_delay * max_retries.
    std::optional<std::chrono::milliseconds> wait;
    /// The owner token; empty: a new unique one. Pass a held lease's owner() with reentrant
    /// to acquire again in the same owner context. A view, copied when the operation starts
    /// (with asio::deferred: when it is launched). It is not a std::string because g++ 12
    /// miscompiles braced temporaries of aggregates holding one inside co_await expressions.
    std::string_view owner;
    /// The same owner may acquire again; the lock is free after as many releases.
    bool reentrant = false;
};

class lock_context;

/// Mutex locks on one session. Key `<prefix>lock:{<name>}` (a string: owner, holds, watchdog,
/// since, waiters, node), companions `<prefix>lock:{<name>}:fence` (fencing counter),
/// `...:queue`/`...:queue:deadlines` (fair mode) and the channel `...:released`.
///
/// Waiting: a waiter subscribes to the lock's channel (a push on the shared connection) and
/// tries again when the release publishes; a fallback timer bounded by the holder's remaining
/// TTL covers a lost message. Within a process only one waiter per lock asks Redis at a time;
/// a local release hands over to the next local waiter in the same pipeline.
///
/// The provider is a light handle; several may share a session. Thread safety: none; use it
/// from the session's executor. Every operation completes through the handler's associated
/// executor.
class lock_provider {
public:
    /// Throws error_with_diagnostics (error::bad_config) naming a bad option.
    explicit lock_provider(session& s, lock_options opts = {});

    session& get_session() const noexcept { return *session_; }
    const lock_options& options() const noexcept { return opts_; }

    /// One attempt. Completion signature: void(error_code, lease): an empty lease when another
    /// owner holds the lock (not an error). error::invalid_argument for an empty name or a
    /// negative TTL (diag names it). Cancellation: terminal (the script may still have run:
    /// a lock granted then is released, never leaked).
    template <class Token = boost::asio::deferred_t>
    auto async_try_acquire(std::string name, acquire_options opts, diagnostics& diag,
                           Token&& token = {}) {
        return initiate(std::move(name), std::move(opts), &diag, true, std::move(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_try_acquire(std::string name, acquire_options opts = {}, Token&& token = {}) {
        return initiate(std::move(name), std::move(opts), nullptr, true, std::move(token));
    }

    /// Waits for the lock until opts.wait passes. Completion signature: void(error_code,
    /// lease): error::acquire_timeout at the deadline, error::invalid_argument for bad input,
    /// connection errors as async_exec, error::lease_lost when a grant's validity ended before
    /// the handler could run (docs/locks.md; diag says how late). Cancellation: terminal, partial and total: the waiter
    /// leaves the queue; a lock granted just before is released.
    template <class Token = boost::asio::deferred_t>
    auto async_acquire(std::string name, acquire_options opts, diagnostics& diag,
                       Token&& token = {}) {
        return initiate(std::move(name), std::move(opts), &diag, false, std::move(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_acquire(std::string name, acquire_options opts = {}, Token&& token = {}) {
        return initiate(std::move(name), std::move(opts), nullptr, false, std::move(token));
    }

    /// A new owner context: a new owner token that a call chain carries, so that its
    /// acquisitions are reentrant without passing tokens (lock_context).
    lock_context new_context();

    /// Releases a held lock: l.async_release(). Releasing twice is harmless; a lease that is
    /// no longer held gives error::not_held.
    template <class Token = boost::asio::deferred_t>
    auto async_release(lease& l, diagnostics& diag, Token&& token = {}) {
        return l.async_release(diag, std::forward<Token>(token));
    }

    /// Extends a held lock to ttl from now: l.async_extend(ttl).
    template <class Token = boost::asio::deferred_t>
    auto async_extend(lease& l, std::chrono::milliseconds ttl, diagnostics& diag,
                      Token&& token = {}) {
        return l.async_extend(ttl, diag, std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_extend(lease& l, std::chrono::milliseconds ttl, Token&& token = {}) {
        return l.async_extend(ttl, std::forward<Token>(token));
    }

    /// Extends the lock `name` held by `owner` (the reference's extend(key, ttl, owner)).
    /// Completion signature: void(error_code, bool extended): false when owner does not hold it;
    /// error::invalid_argument for an empty name or owner, or a ttl outside (0, max_duration]
    /// (diag names it).
    template <class Token = boost::asio::deferred_t>
    auto async_extend(std::string name, std::string owner, std::chrono::milliseconds ttl,
                      diagnostics& diag, Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, bool)>(
            [this](auto handler, std::string name, std::string owner,
                   std::chrono::milliseconds ttl, diagnostics* diag) {
                diag = detail::diagnostics_for(handler, diag);
                extend_by_name_impl(std::move(name), std::move(owner), ttl, diag,
                                    std::move(handler));
            },
            token, std::move(name), std::move(owner), ttl, &diag);
    }
    template <class Token = boost::asio::deferred_t>
    auto async_extend(std::string name, std::string owner, std::chrono::milliseconds ttl,
                      Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, bool)>(
            [this](auto handler, std::string name, std::string owner,
                   std::chrono::milliseconds ttl) {
                diagnostics* diag = detail::diagnostics_for(handler, nullptr);
                extend_by_name_impl(std::move(name), std::move(owner), ttl, diag,
                                    std::move(handler));
            },
            token, std::move(name), std::move(owner), ttl);
    }

    /// Deletes the lock whoever holds it and wakes its waiters. The holder's watchdog finds it
    /// gone at its next renewal and marks its lease lost.
    /// Completion signature: void(error_code, bool released): false when it was not held.
    template <class Token = boost::asio::deferred_t>
    auto async_force_release(std::string name, Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, bool)>(
            [this](auto handler, std::string name) {
                force_release_impl(std::move(name), std::move(handler));
            },
            token, std::move(name));
    }

    /// Runs fn() (a callable returning asio::awaitable<void>) while holding the lock `name`:
    /// on one node at a time cluster-wide, the building block of singleton jobs. When the
    /// lease is lost, fn is cancelled (terminal) and the operation fails with
    /// error::lease_lost; when fn ends, the lock is released.
    ///
    /// Completion signature: void(std::exception_ptr): fn's exception, or an
    /// error_with_diagnostics (error::acquire_timeout, error::lease_lost, ...).
    /// Cancellation: forwarded to the wait and to fn.
    ///
    /// Name fn before the co_await: g++ 12 destroys a lambda capturing a std::string twice when
    /// it is written inline inside the co_await (docs/connection.md, "Compilers").
    template <class Fn, class Token = boost::asio::deferred_t>
    auto async_run_exclusive(std::string name, Fn fn, acquire_options opts = {},
                             Token&& token = {}) {
        return boost::asio::co_spawn(
            session_->get_executor(),
            run_exclusive(*this, std::move(name), std::move(fn), std::move(opts)),
            std::forward<Token>(token));
    }

private:
    using acquire_handler =
        boost::asio::any_completion_handler<void(boost::system::error_code, lease)>;
    using bool_handler =
        boost::asio::any_completion_handler<void(boost::system::error_code, bool)>;

    template <class Token>
    auto initiate(std::string name, acquire_options opts, diagnostics* diag, bool once,
                  Token&& token) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, lease)>(
            [this](auto handler, std::string name, acquire_options opts, diagnostics* diag,
                   bool once) {
                diag = detail::diagnostics_for(handler, diag);
                acquire_impl(std::move(name), std::move(opts), diag, once, std::move(handler));
            },
            token, std::move(name), std::move(opts), diag, once);
    }

    template <class Fn>
    static boost::asio::awaitable<void> run_exclusive(lock_provider& self, std::string name,
                                                      Fn fn, acquire_options opts) {
        namespace asio = boost::asio;
        diagnostics diag;
        auto [ec, l] = co_await self.async_acquire(std::move(name), std::move(opts), diag,
                                                   asio::as_tuple(asio::use_awaitable));
        throw_on_error(ec, diag);
        auto ex = co_await asio::this_coro::executor;
        auto [order, ep, lost_ec] =
            co_await asio::experimental::make_parallel_group(
                asio::co_spawn(ex, fn(), asio::deferred), l.async_wait_lost(asio::deferred))
                .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
        if (order[0] == 1 && !lost_ec) {
            diag.set_client_message("lease on '" + l.resource() +
                                    "' lost: " + l.lost_reason().message());
            throw error_with_diagnostics(error::lease_lost, diag);
        }
        auto [rec] = co_await l.async_release(diag, asio::as_tuple(asio::use_awaitable));
        if (ep) std::rethrow_exception(ep);
        throw_on_error(rec, diag);
    }

    void acquire_impl(std::string name, acquire_options opts, diagnostics* diag, bool once,
                      acquire_handler handler);
    void extend_by_name_impl(std::string name, std::string owner, std::chrono::milliseconds ttl,
                             diagnostics* diag, bool_handler handler);
    void force_release_impl(std::string name, bool_handler handler);

    friend class lock_context;
    session* session_;
    lock_options opts_;
};

/// An owner context: one owner token that a call chain carries, so that a coroutine holding a
/// lock may call one that takes the same lock again without passing tokens by hand. Every
/// acquisition through it is reentrant under its owner (the lock is free after as many
/// releases as acquisitions):
///
///     asio::awaitable<void> process_payment(redcoord::lock_context locks, std::string order) {
///         auto l = co_await locks.async_acquire("order:" + order, asio::use_awaitable);  // again
///         co_await charge(order);
///     }
///     asio::awaitable<void> process_order(redcoord::lock_context locks, std::string order) {
///         auto l = co_await locks.async_acquire("order:" + order, asio::use_awaitable);
///         co_await process_payment(locks, order);
///     }
///     co_await process_order(provider.new_context(), "42");
///
/// Pass it by value down the chain in place of the lock_provider: copies share the owner.
/// Two contexts (two calls of new_context) are two owners and exclude each other, as two
/// requests handled at once should. It refers to its provider, which must outlive it.
class lock_context {
public:
    /// A context with the given owner token (lock_provider::new_context mints a new one).
    /// Throws error_with_diagnostics (error::invalid_argument) for an empty owner.
    lock_context(lock_provider& locks, std::string owner);

    const std::string& owner() const noexcept { return *owner_; }
    lock_provider& provider() const noexcept { return *locks_; }

    /// lock_provider::async_try_acquire with this context's owner, reentrant.
    template <class Token = boost::asio::deferred_t>
    auto async_try_acquire(std::string name, acquire_options opts, diagnostics& diag,
                           Token&& token = {}) {
        return locks_->async_try_acquire(std::move(name), owned(opts), diag,
                                         std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_try_acquire(std::string name, acquire_options opts = {}, Token&& token = {}) {
        return locks_->async_try_acquire(std::move(name), owned(opts), std::forward<Token>(token));
    }

    /// lock_provider::async_acquire with this context's owner, reentrant.
    template <class Token = boost::asio::deferred_t>
    auto async_acquire(std::string name, acquire_options opts, diagnostics& diag,
                       Token&& token = {}) {
        return locks_->async_acquire(std::move(name), owned(opts), diag,
                                     std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_acquire(std::string name, acquire_options opts = {}, Token&& token = {}) {
        return locks_->async_acquire(std::move(name), owned(opts), std::forward<Token>(token));
    }

    /// lock_provider::async_run_exclusive with this context's owner, reentrant: fn may take
    /// the same lock again through this context. (Name fn before the co_await: g++ 12 destroys
    /// an inline lambda capturing a std::string twice; docs/connection.md, "Compilers".)
    ///
    /// Name fn before the co_await: g++ 12 destroys a lambda capturing a std::string twice when
    /// it is written inline inside the co_await (docs/connection.md, "Compilers").
    template <class Fn, class Token = boost::asio::deferred_t>
    auto async_run_exclusive(std::string name, Fn fn, acquire_options opts = {},
                             Token&& token = {}) {
        return boost::asio::co_spawn(
            locks_->session_->get_executor(),
            run_owned(*locks_, owner_, std::move(name), std::move(fn), opts),
            std::forward<Token>(token));
    }

private:
    acquire_options owned(acquire_options o) const noexcept {
        o.owner = *owner_;
        o.reentrant = true;
        return o;
    }
    // Keeps the owner alive while the operation runs, whatever happens to the context.
    template <class Fn>
    static boost::asio::awaitable<void> run_owned(lock_provider& locks,
                                                  std::shared_ptr<const std::string> owner,
                                                  std::string name, Fn fn, acquire_options opts) {
        opts.owner = *owner;
        opts.reentrant = true;
        co_await lock_provider::run_exclusive(locks, std::move(name), std::move(fn), opts);
    }

    lock_provider* locks_;
    std::shared_ptr<const std::string> owner_;
};

}  // namespace redcoord
