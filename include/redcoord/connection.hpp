// The one multiplexed RESP3 connection a process shares.
#pragma once

#include <redcoord/config.hpp>
#include <redcoord/detail/with_diagnostics_handler.hpp>
#include <redcoord/diagnostics.hpp>
#include <redcoord/request.hpp>
#include <redcoord/response.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/system/error_code.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace redcoord {

class connection;

namespace detail {
class connection_impl;
struct access;  // the library's own way in (src/core/access.hpp)
// What the sessions on one connection share (their push router), kept by the connection
// without owning it.
std::weak_ptr<void>& shared_by_sessions(connection& conn) noexcept;
}

/// What a push_message is: a push the server sent, or an event of the connection itself.
enum class push_event : std::uint8_t {
    server,       ///< a push from the server: see push_message::kind
    reconnected,  ///< the connection was down and is back; subscriptions have been restored,
                  ///< messages published meanwhile are lost (a gap)
    overflow,     ///< the receiver fell behind and old pushes were dropped (a gap)
    closed,       ///< the session that routed pushes to a listener has closed
};

/// A server push (a pub/sub message, a subscription confirmation, an invalidation, ...) or an
/// event of the connection (push_event).
struct push_message {
    push_event event = push_event::server;
    /// The push's kind as the server names it ("message", "pmessage", "smessage", "subscribe",
    /// "unsubscribe", "invalidate", ...); empty for an event.
    std::string kind;
    std::string channel;  ///< message/smessage/subscribe...: the channel
    std::string pattern;  ///< pmessage/psubscribe: the pattern
    std::string payload;  ///< message payload; subscription count for confirmations
    generic_response nodes;  ///< the push as received (empty for an event)

    /// Pushes may have been missed just before this one (reconnected or overflow).
    bool is_gap() const noexcept {
        return event == push_event::reconnected || event == push_event::overflow;
    }
};

/// What the connection has done so far; for monitoring, tests and benchmarks.
struct usage {
    std::uint64_t writes = 0;             ///< socket writes (one per coalesced batch)
    std::uint64_t bytes_written = 0;
    std::uint64_t bytes_read = 0;
    std::uint64_t commands_written = 0;
    std::uint64_t replies_received = 0;
    std::uint64_t pushes_received = 0;
    std::uint64_t pushes_dropped = 0;     ///< dropped because nobody received them in time
    /// Replies bigger than config::max_reply_size: discarded, their request failed
    std::uint64_t replies_too_large = 0;
    /// Non-push messages that answered nothing written: the connection was replaced
    std::uint64_t unexpected_replies = 0;
    std::uint64_t connects = 0;           ///< successful connections (handshake done)
    std::uint64_t connection_losses = 0;
    std::uint64_t blocking_connections = 0;  ///< side connections opened for blocking commands
};

/// One connection to Redis carrying every request of a process, pipelined.
///
/// Call async_run once to connect and keep the connection up (it reconnects by itself); call
/// async_exec from any number of coroutines at once. Requests made before the connection is up
/// wait for it (or fail fast, per config).
///
/// Thread safety: none. Use the connection from its executor only (a strand when the
/// io_context runs on several threads). Completion handlers are invoked through their associated
/// executor.
class connection {
public:
    using executor_type = boost::asio::any_io_executor;

    explicit connection(executor_type ex);
    /// Cancels async_run and every outstanding operation.
    ~connection();
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    executor_type get_executor() const noexcept;

    /// Connects (TCP, TLS or Unix socket; through Sentinel when service_name is set), does the
    /// HELLO 3 handshake with AUTH, SETNAME and SELECT, then serves requests, checks the
    /// connection's health and reconnects with capped exponential backoff and jitter.
    ///
    /// Completion signature: void(error_code). Completes when cancelled (operation_aborted) or
    /// when the first connection attempts fail and cfg.abort_connect is set (the last attempt's
    /// error; run_diagnostics() has the server's text, e.g. for a wrong password). A bad cfg
    /// completes at once with error::bad_config.
    /// Cancellation: any type stops the connection; outstanding requests fail.
    template <class Token = boost::asio::deferred_t>
    auto async_run(config cfg, Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
            [impl = impl_](auto handler, config cfg) {
                run_impl(impl, std::move(cfg), std::move(handler));
            },
            token, std::move(cfg));
    }

    /// Sends the request's commands and stores the replies in resp: a response<Ts...> (one per
    /// reply), a single T for a one-reply request, generic_response, or ignore.
    ///
    /// Completion signature: void(error_code, std::size_t bytes_read). A server error reply
    /// gives error::server_error (error::noscript for NOSCRIPT) and its text in diag; a reply
    /// that does not fit its C++ type gives the conversion error. On error, resp may be partly
    /// filled. Other errors: error::timeout, error::not_connected (fail fast),
    /// error::connection_lost (written, then the connection dropped), error::run_not_started
    /// (async_run has ended).
    ///
    /// Cancellation (any type): a request not yet written is dropped and never reaches the
    /// server; a written one completes at once with operation_aborted and its reply is
    /// discarded when it arrives (the command may have run).
    ///
    /// Lifetimes: req, resp and diag must stay alive until completion.
    template <class Response = ignore_t, class Token = boost::asio::deferred_t>
    auto async_exec(const request& req, Response& resp, diagnostics& diag, Token&& token = {}) {
        return async_exec_erased(req, detail::make_adapter(resp), &diag,
                                 std::forward<Token>(token));
    }

    /// As above, without diagnostics.
    template <class Response = ignore_t, class Token = boost::asio::deferred_t>
    auto async_exec(const request& req, Response& resp, Token&& token = {}) {
        return async_exec_erased(req, detail::make_adapter(resp), nullptr,
                                 std::forward<Token>(token));
    }

    /// As above, discarding the replies (server errors are still reported).
    template <class Token = boost::asio::deferred_t>
    auto async_exec(const request& req, Token&& token = {}) {
        ignore_t sink;  // make_adapter keeps no reference to it
        return async_exec(req, sink, std::forward<Token>(token));
    }

    /// Waits for the next push (pub/sub messages, subscription confirmations, gap events).
    /// Pushes that arrive while nobody waits are kept, up to config::max_pending_pushes.
    ///
    /// Completion signature: void(error_code). One receiver at a time. Cancellation (any type)
    /// completes it with operation_aborted; no push is lost by that. Completes with
    /// error::run_not_started once async_run has ended and no push is left.
    template <class Token = boost::asio::deferred_t>
    auto async_receive(push_message& out, Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
            [impl = impl_.get()](auto handler, push_message* out) {
                receive_impl(*impl, *out, std::move(handler));
            },
            token, &out);
    }

    /// Waits for pushes, then takes every push there is at once (appended to out, in order):
    /// one resume for many messages, which is how a busy subscriber keeps up.
    ///
    /// Completion signature: void(error_code). Otherwise as async_receive; the two share the
    /// one receiver slot.
    template <class Token = boost::asio::deferred_t>
    auto async_receive_all(std::vector<push_message>& out, Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
            [impl = impl_.get()](auto handler, std::vector<push_message>* out) {
                receive_all_impl(*impl, *out, std::move(handler));
            },
            token, &out);
    }

    /// Stops async_run and fails every outstanding request with operation_aborted.
    void cancel();

    /// True while a connection is up and past its handshake.
    bool is_connected() const noexcept;

    /// Counters since construction.
    const usage& get_usage() const noexcept;

    /// Why the last connection attempt failed (server text, e.g. WRONGPASS), if it did.
    const diagnostics& run_diagnostics() const noexcept;

private:
    friend struct detail::access;

    // A handle on the same connection that does not stop it when destroyed: what the library's
    // own objects (a session, its push router) hold, so that a completion that reaches them
    // after the user's connection object is gone finds the connection stopped, not freed.
    struct alias_tag {};
    connection(alias_tag, const connection& other) noexcept : impl_(other.impl_), owns_(false) {}

    /// async_exec with a response already type-erased (see detail::make_adapter): what every
    /// async_exec does, and the building block of operations that are compiled in the library,
    /// such as async_eval. diag: the caller's, or null.
    template <class Token = boost::asio::deferred_t>
    auto async_exec_erased(const request& req, detail::any_adapter adapter, diagnostics* diag,
                           Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
            [this](auto handler, const request* req, detail::any_adapter ad, diagnostics* diag) {
                diag = detail::diagnostics_for(handler, diag);
                const bool inline_ok = runs_on(handler, get_executor());
                exec_impl(*impl_, *req, ad, diag, inline_ok, std::move(handler));
            },
            token, &req, adapter, diag);
    }

    friend std::weak_ptr<void>& detail::shared_by_sessions(connection& conn) noexcept;

    using run_handler = boost::asio::any_completion_handler<void(boost::system::error_code)>;
    using exec_handler =
        boost::asio::any_completion_handler<void(boost::system::error_code, std::size_t)>;

    static void run_impl(const std::shared_ptr<detail::connection_impl>& impl, config cfg,
                         run_handler handler);
    static void exec_impl(detail::connection_impl& impl, const request& req,
                          detail::any_adapter adapter, diagnostics* diag, bool inline_ok,
                          exec_handler handler);

    // True when the handler's executor is the connection's own: the connection may then resume
    // it directly instead of going through dispatch and the type-erased executor.
    template <class Handler>
    static bool runs_on(const Handler& handler, const executor_type& ex) {
        auto assoc = boost::asio::get_associated_executor(handler, ex);
        if constexpr (std::is_same_v<decltype(assoc), executor_type>)
            return assoc == ex;
        else
            return false;
    }
    static void receive_impl(detail::connection_impl& impl, push_message& out,
                             run_handler handler);
    static void receive_all_impl(detail::connection_impl& impl, std::vector<push_message>& out,
                                 run_handler handler);

    std::shared_ptr<detail::connection_impl> impl_;
    bool owns_ = true;  // false for an alias: its destruction does not stop the connection
};

}  // namespace redcoord
