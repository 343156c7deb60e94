// Idempotent operations (the reference's idempotency adapter): an operation keyed by the caller
// runs once across the cluster; everyone who asks with the same key gets its stored result.
#pragma once

#include <redcoord/detail/converting_handler.hpp>
#include <redcoord/detail/json_bridge.hpp>
#include <redcoord/diagnostics.hpp>
#include <redcoord/error.hpp>
#include <redcoord/session.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <cstddef>
#include <exception>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

namespace redcoord {

/// Idempotency settings. Defaults in comments.
struct idempotency_options {
    /// How long a result is kept when async_once is given no TTL (24 h). Must be positive.
    std::chrono::milliseconds default_ttl{std::chrono::hours(24)};
    /// The in-flight marker's TTL (30 s). The watchdog renews it while the operation runs;
    /// when the node running it dies, a waiting caller takes over within this time. Must be
    /// positive.
    std::chrono::milliseconds in_flight_ttl{std::chrono::seconds(30)};
    /// The largest result accepted, as JSON text (512 MiB). Must be in [1, 512 MiB].
    std::size_t max_value_bytes = std::size_t(512) * 1024 * 1024;
};

/// Idempotent operations on one session. A result lives, as JSON text, under
/// `<prefix>idempotency:{<key>}` for its TTL; the in-flight marker is the lease
/// `<prefix>idempotency:{<key>}:running` (a string holding the runner's owner token, with a
/// short TTL), and the channel `<prefix>idempotency:{<key>}:done` announces results.
///
/// The handle is light; several may share a session. Thread safety: none; use it from the
/// session's executor. Every operation completes through the handler's associated executor.
class idempotency {
public:
    /// Throws error_with_diagnostics (error::bad_config) naming a bad option.
    explicit idempotency(session& s, idempotency_options opts = {});

    session& get_session() const noexcept { return *session_; }
    const idempotency_options& options() const noexcept { return opts_; }

    /// Runs op() (a callable returning asio::awaitable<T> or asio::awaitable<void>, run on the
    /// session's executor) once for key across the cluster, and returns its result:
    /// - the first caller marks the key in flight, runs op and stores the result (JSON via
    ///   boost::json::value_from; void: null) for ttl (unset: options().default_ttl);
    /// - callers that come while it runs, on any node, wait for that result by push (a
    ///   fallback timer bounded by the in-flight marker's TTL covers a lost message and a
    ///   runner that died) and get it without running op;
    /// - later callers get the stored result until it expires.
    /// When op throws, its caller gets the exception and the marker is removed: one waiting
    /// caller (or a later one) runs its own op. When the marker is lost while op runs (the
    /// watchdog could not renew it), op is cancelled (terminal) and the caller gets
    /// error::lease_lost.
    ///
    /// Completion signature: void(std::exception_ptr, T) (void(std::exception_ptr) for void):
    /// op's exception, or error_with_diagnostics (error::invalid_argument for an empty key, a
    /// ttl that is not positive or a result over max_value_bytes; error::decode_failed when
    /// the stored result does not convert to T; connection errors).
    /// Cancellation: terminal, partial and total: a waiter stops waiting; the runner forwards
    /// it to op, then lets a waiter take over.
    /// Name op before the co_await: g++ 12 destroys a lambda capturing a std::string
    /// twice when it is written inline inside the co_await (docs/connection.md, "Compilers").
    template <class T = detail::deduce_t, class Op, class Token = boost::asio::deferred_t>
    auto async_once(std::string key, Op op,
                    std::optional<std::chrono::milliseconds> ttl = std::nullopt,
                    Token&& token = {}) {
        using value_type = detail::value_type_of<T, Op>;
        using signature = typename detail::exception_signature<value_type>::type;
        return boost::asio::async_initiate<Token, signature>(
            [this](auto handler, std::string key, detail::json_factory make,
                   std::optional<std::chrono::milliseconds> ttl) {
                detail::json_result_converter<value_type> convert{"idempotent operation '" + key +
                                                                  "'"};
                once_impl(std::move(key), std::move(make), ttl,
                          detail::converting_handler(std::move(handler), std::move(convert)));
            },
            token, std::move(key), detail::make_json_factory<value_type>(std::move(op)), ttl);
    }

private:
    using once_handler = boost::asio::any_completion_handler<void(std::exception_ptr,
                                                                  boost::json::value)>;

    void once_impl(std::string key, detail::json_factory make,
                   std::optional<std::chrono::milliseconds> ttl, once_handler handler);

    session* session_;
    idempotency_options opts_;
};

}  // namespace redcoord
