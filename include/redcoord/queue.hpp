// Reliable work queues (the reference's distributed queue and work stealing): an item taken
// by a consumer moves, atomically, to that consumer's processing list until it is
// acknowledged; the items of a consumer whose heartbeat is gone go back to the queue. Per-worker
// queues let an idle worker steal from the longest queue of the others. Payloads are text;
// typed values go in and come out as JSON (boost::json::value_from / value_to).
#pragma once

#include <redcoord/detail/with_diagnostics_handler.hpp>
#include <redcoord/diagnostics.hpp>
#include <redcoord/error.hpp>
#include <redcoord/session.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>
#include <boost/json/value_to.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace redcoord {

struct queue_item;

namespace detail {

/// Parses item's payload as JSON into out; error::decode_failed (diag names the item) when it
/// is not JSON.
boost::system::error_code parse_queue_payload(const queue_item& item, boost::json::value& out,
                                              diagnostics& diag);

/// Sets diag's message for a payload of item that is JSON but does not convert to the type
/// asked for; returns error::decode_failed.
boost::system::error_code queue_payload_mismatch(const queue_item& item, diagnostics& diag);

/// A payload stored as is: anything a std::string converts from implicitly (std::string,
/// string literals, const char*). The typed overloads take everything else.
template <class T>
inline constexpr bool is_text_payload_v = std::is_convertible_v<const T&, std::string>;

/// The text stored for a typed payload: the value's JSON, or the characters themselves for
/// text a std::string is only explicitly constructible from (std::string_view).
template <class T>
std::string encode_queue_payload(const T& value) {
    if constexpr (std::is_constructible_v<std::string, const T&>)
        return std::string(value);
    else
        return boost::json::serialize(boost::json::value_from(value));
}

}  // namespace detail

/// Queue settings. Defaults in comments.
struct queue_options {
    /// The largest payload accepted by the enqueue operations, in bytes: the text as given, or
    /// a typed value's JSON (512 MiB, the largest string Redis stores; the stored element adds
    /// 33 bytes, the id and ':'). Must be in [1, 512 MiB].
    std::size_t max_value_bytes = std::size_t(512) * 1024 * 1024;
};

/// One item taken from a queue.
struct queue_item {
    std::string id;       ///< unique per enqueue (32 hex digits)
    std::string payload;  ///< what was enqueued (a typed value: its JSON text)
    std::string worker;   ///< work stealing: the worker whose queue it came from
    /// The element as stored (id, ':', payload): what async_ack removes.
    std::string raw;

    /// The payload as a T, the inverse of the typed enqueue: parsed as JSON and converted by
    /// boost::json::value_to (user types through tag_invoke). T = std::string returns the
    /// payload text as is, the inverse of the text enqueue. Throws error_with_diagnostics
    /// (error::decode_failed, the message names the item) when the payload is not JSON or does
    /// not convert to T.
    template <class T>
    T as() const {
        boost::system::error_code ec;
        diagnostics diag;
        auto v = try_as<T>(ec, diag);
        if (ec) throw error_with_diagnostics(ec, diag);
        return std::move(*v);
    }

    /// As as<T>() without throwing: nullopt when the payload does not decode, with ec set to
    /// error::decode_failed and diag saying why.
    template <class T>
    std::optional<T> try_as(boost::system::error_code& ec, diagnostics& diag) const {
        ec.clear();
        if constexpr (std::is_same_v<T, std::string>) {
            return payload;
        } else {
            boost::json::value jv;
            ec = detail::parse_queue_payload(*this, jv, diag);
            if (ec) return std::nullopt;
            try {
                return boost::json::value_to<T>(jv);
            } catch (const std::exception&) {
                ec = detail::queue_payload_mismatch(*this, diag);
                return std::nullopt;
            }
        }
    }
};

/// What a queue holds (reliable_queue::async_stats), read atomically in one script call.
struct queue_stats {
    std::string name;
    /// Items waiting in the shared queue (`Q`).
    std::int64_t depth = 0;
    /// Items taken by consumers and not yet acknowledged (every processing list).
    std::int64_t in_flight = 0;
    /// Items async_redeliver gave back since the counter was created; it expires 30 days
    /// after the last redelivery.
    std::int64_t redeliveries = 0;
    /// Items waiting in the per-worker queues (work stealing), all workers together.
    std::int64_t worker_depth = 0;
    /// In flight per consumer (the consumers known to the queue, with 0 when idle).
    std::map<std::string, std::int64_t> consumers;
    /// Waiting per worker queue.
    std::map<std::string, std::int64_t> workers;
};

/// Reliable queues of one session.
///
/// Key layout for queue `name` (main key Q = `<prefix>queue:{<name>}`, a list; enqueue pushes on
/// the left, consumers take from the right):
/// - `{Q}:processing:{consumer}`: the items a consumer took and has not acknowledged;
/// - `{Q}:consumers`: the set of consumers with a processing list;
/// - `{Q}:worker:{worker}` and the set `{Q}:workers`: per-worker queues (work stealing);
/// - `{Q}:redelivered`: how many items async_redeliver gave back (30-day TTL, sliding);
/// - channel `{Q}:pushed`: each enqueue publishes there.
/// A consumer is alive while its heartbeat key `<prefix>hb:{registry}:<consumer>` (membership)
/// exists; the consumer id defaults to the session's node id. Redelivery reads heartbeat keys from
/// a script, so it needs a single node (not Redis Cluster).
///
/// The handle is light; several may share a session. Thread safety: none; use it from the
/// session's executor. Every operation completes through the handler's associated executor.
///
/// Errors (docs/connection.md, "Errors"): every operation completes with an error_code first:
/// error::invalid_argument for an empty name, consumer or worker, or a payload over
/// max_value_bytes; error::session_closed; connection errors as connection::async_exec. The
/// overloads taking a diagnostics& fill it on error with the server's text or a message naming
/// the bad input; redcoord::with_diagnostics(token) throws error_with_diagnostics instead. Only
/// the operations that run a user's function (async_run_exclusive, async_get_or_set, ...)
/// complete with an exception_ptr, that function's own exception; none here does.
/// Cancellation: terminal (a command already written may have run).
/// Objects passed by reference (diagnostics) must outlive the operation.
class reliable_queue {
public:
    /// Throws error_with_diagnostics (error::bad_config) naming a bad option.
    explicit reliable_queue(session& s, queue_options opts = {});

    session& get_session() const noexcept { return *session_; }
    const queue_options& options() const noexcept { return opts_; }

    /// Appends payload to queue name. Completion signature: void(error_code, std::string id).
    /// error::invalid_argument (nothing is pushed) when payload is longer than
    /// max_value_bytes.
    template <class Token = boost::asio::deferred_t>
    auto async_enqueue(std::string name, std::string payload, diagnostics& diag,
                       Token&& token = {}) {
        return initiate_enqueue(std::move(name), std::nullopt, std::move(payload), &diag,
                                std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_enqueue(std::string name, std::string payload, Token&& token = {}) {
        return initiate_enqueue(std::move(name), std::nullopt, std::move(payload), nullptr,
                                std::forward<Token>(token));
    }

    /// Appends a typed value to queue name, as its JSON (boost::json::value_from, converted
    /// by this call); read it back with queue_item::as<T>(). Text is stored as is: std::string
    /// and string literals take the overload above, std::string_view is copied. The JSON is
    /// the payload max_value_bytes limits. Completion signature: void(error_code,
    /// std::string id).
    template <class T, class Token = boost::asio::deferred_t>
        requires(!detail::is_text_payload_v<T>)
    auto async_enqueue(std::string name, const T& value, diagnostics& diag, Token&& token = {}) {
        return initiate_enqueue(std::move(name), std::nullopt,
                                detail::encode_queue_payload(value), &diag,
                                std::forward<Token>(token));
    }
    template <class T, class Token = boost::asio::deferred_t>
        requires(!detail::is_text_payload_v<T>)
    auto async_enqueue(std::string name, const T& value, Token&& token = {}) {
        return initiate_enqueue(std::move(name), std::nullopt,
                                detail::encode_queue_payload(value), nullptr,
                                std::forward<Token>(token));
    }

    /// Takes the oldest item of queue name into consumer's processing list (empty consumer:
    /// the session's node id), waiting up to timeout for one (BLMOVE, on the connection's side
    /// connection for blocking commands; zero: no wait). Completion signature:
    /// void(error_code, std::optional<queue_item>): nullopt when none came in time;
    /// error::invalid_argument for a timeout outside [0, max_duration].
    template <class Token = boost::asio::deferred_t>
    auto async_dequeue(std::string name, std::string consumer,
                       std::chrono::milliseconds timeout, diagnostics& diag,
                       Token&& token = {}) {
        return initiate_dequeue(std::move(name), std::move(consumer), timeout, &diag,
                                std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_dequeue(std::string name, std::string consumer,
                       std::chrono::milliseconds timeout, Token&& token = {}) {
        return initiate_dequeue(std::move(name), std::move(consumer), timeout, nullptr,
                                std::forward<Token>(token));
    }

    /// Acknowledges an item: removes it from consumer's processing list. Completion
    /// signature: void(error_code, bool): false when it was not there (redelivered).
    template <class Token = boost::asio::deferred_t>
    auto async_ack(std::string name, std::string consumer, std::string raw, diagnostics& diag,
                   Token&& token = {}) {
        return initiate_ack(std::move(name), std::move(consumer), std::move(raw), &diag,
                            std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_ack(std::string name, std::string consumer, std::string raw, Token&& token = {}) {
        return initiate_ack(std::move(name), std::move(consumer), std::move(raw), nullptr,
                            std::forward<Token>(token));
    }

    /// Puts the unacknowledged items of every consumer of queue name whose heartbeat key is
    /// gone back at the consumers' end of the queue, oldest first. Completion signature:
    /// void(error_code, std::int64_t moved).
    template <class Token = boost::asio::deferred_t>
    auto async_redeliver(std::string name, diagnostics& diag, Token&& token = {}) {
        return initiate_redeliver(std::move(name), &diag, std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_redeliver(std::string name, Token&& token = {}) {
        return initiate_redeliver(std::move(name), nullptr, std::forward<Token>(token));
    }

    /// Work stealing: appends payload to worker's own queue of name. Completion signature:
    /// void(error_code, std::string id). error::invalid_argument (nothing is pushed) when
    /// payload is longer than max_value_bytes.
    template <class Token = boost::asio::deferred_t>
    auto async_enqueue_to(std::string name, std::string worker, std::string payload,
                          diagnostics& diag, Token&& token = {}) {
        return initiate_enqueue(std::move(name), std::optional<std::string>(std::move(worker)),
                                std::move(payload), &diag, std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_enqueue_to(std::string name, std::string worker, std::string payload,
                          Token&& token = {}) {
        return initiate_enqueue(std::move(name), std::optional<std::string>(std::move(worker)),
                                std::move(payload), nullptr, std::forward<Token>(token));
    }

    /// Work stealing: appends a typed value, as its JSON, to worker's own queue of name (as
    /// the typed async_enqueue). Completion signature: void(error_code, std::string id).
    template <class T, class Token = boost::asio::deferred_t>
        requires(!detail::is_text_payload_v<T>)
    auto async_enqueue_to(std::string name, std::string worker, const T& value,
                          diagnostics& diag, Token&& token = {}) {
        return initiate_enqueue(std::move(name), std::optional<std::string>(std::move(worker)),
                                detail::encode_queue_payload(value), &diag,
                                std::forward<Token>(token));
    }
    template <class T, class Token = boost::asio::deferred_t>
        requires(!detail::is_text_payload_v<T>)
    auto async_enqueue_to(std::string name, std::string worker, const T& value,
                          Token&& token = {}) {
        return initiate_enqueue(std::move(name), std::optional<std::string>(std::move(worker)),
                                detail::encode_queue_payload(value), nullptr,
                                std::forward<Token>(token));
    }

    /// Takes the oldest item of worker's own queue. Completion signature:
    /// void(error_code, std::optional<queue_item>).
    template <class Token = boost::asio::deferred_t>
    auto async_try_dequeue(std::string name, std::string worker, diagnostics& diag,
                           Token&& token = {}) {
        return initiate_take(std::move(name), std::move(worker), false, &diag,
                             std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_try_dequeue(std::string name, std::string worker, Token&& token = {}) {
        return initiate_take(std::move(name), std::move(worker), false, nullptr,
                             std::forward<Token>(token));
    }

    /// Takes, for worker, the newest item of the longest queue of the other workers (one
    /// script: the choice and the take are atomic). Completion signature:
    /// void(error_code, std::optional<queue_item>): nullopt when the others have none; the
    /// item's worker names the victim.
    template <class Token = boost::asio::deferred_t>
    auto async_steal(std::string name, std::string worker, diagnostics& diag,
                     Token&& token = {}) {
        return initiate_take(std::move(name), std::move(worker), true, &diag,
                             std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_steal(std::string name, std::string worker, Token&& token = {}) {
        return initiate_take(std::move(name), std::move(worker), true, nullptr,
                             std::forward<Token>(token));
    }

    /// The names of every queue of the session's prefix, sorted: found with SCAN (never
    /// KEYS), from the keys a queue has while it holds anything (the queue, its consumers,
    /// its workers, its redelivery count). Completion signature: void(error_code,
    /// std::vector<std::string>); errors as connection::async_exec. Cancellation: terminal
    /// (the SCAN stops between pages).
    template <class Token = boost::asio::deferred_t>
    auto async_list_queues(diagnostics& diag, Token&& token = {}) {
        return detail::initiate_with_diagnostics<void(boost::system::error_code,
                                                      std::vector<std::string>)>(
            token, &diag, [this](auto&&... a) { list_impl(std::move(a)...); });
    }
    template <class Token = boost::asio::deferred_t>
    auto async_list_queues(Token&& token = {}) {
        return detail::initiate_with_diagnostics<void(boost::system::error_code,
                                                      std::vector<std::string>)>(
            token, nullptr, [this](auto&&... a) { list_impl(std::move(a)...); });
    }

    /// The counts of queue name (queue_stats), read atomically; an unknown queue has all
    /// counts zero. Read only. Completion signature: void(error_code, queue_stats);
    /// error::invalid_argument for an empty name. Cancellation: terminal.
    template <class Token = boost::asio::deferred_t>
    auto async_stats(std::string name, diagnostics& diag, Token&& token = {}) {
        return detail::initiate_with_diagnostics<void(boost::system::error_code, queue_stats)>(
            token, &diag, [this](auto&&... a) { stats_impl(std::move(a)...); }, std::move(name));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_stats(std::string name, Token&& token = {}) {
        return detail::initiate_with_diagnostics<void(boost::system::error_code, queue_stats)>(
            token, nullptr, [this](auto&&... a) { stats_impl(std::move(a)...); }, std::move(name));
    }

private:
    using id_handler =
        boost::asio::any_completion_handler<void(boost::system::error_code, std::string)>;
    using item_handler = boost::asio::any_completion_handler<void(boost::system::error_code,
                                                                  std::optional<queue_item>)>;
    using bool_handler =
        boost::asio::any_completion_handler<void(boost::system::error_code, bool)>;
    using count_handler =
        boost::asio::any_completion_handler<void(boost::system::error_code, std::int64_t)>;

    template <class Token>
    auto initiate_enqueue(std::string name, std::optional<std::string> worker,
                          std::string payload, diagnostics* diag, Token&& token) {
        return detail::initiate_with_diagnostics<void(boost::system::error_code, std::string)>(
            token, diag, [this](auto&&... a) { enqueue_impl(std::move(a)...); },
            std::move(name), std::move(worker), std::move(payload));
    }

    template <class Token>
    auto initiate_dequeue(std::string name, std::string consumer,
                          std::chrono::milliseconds timeout, diagnostics* diag, Token&& token) {
        return detail::initiate_with_diagnostics<
            void(boost::system::error_code, std::optional<queue_item>)>(
            token, diag, [this](auto&&... a) { dequeue_impl(std::move(a)...); },
            std::move(name), std::move(consumer), timeout);
    }

    template <class Token>
    auto initiate_ack(std::string name, std::string consumer, std::string raw, diagnostics* diag,
                      Token&& token) {
        return detail::initiate_with_diagnostics<void(boost::system::error_code, bool)>(
            token, diag, [this](auto&&... a) { ack_impl(std::move(a)...); },
            std::move(name), std::move(consumer), std::move(raw));
    }

    template <class Token>
    auto initiate_redeliver(std::string name, diagnostics* diag, Token&& token) {
        return detail::initiate_with_diagnostics<void(boost::system::error_code, std::int64_t)>(
            token, diag, [this](auto&&... a) { redeliver_impl(std::move(a)...); },
            std::move(name));
    }

    template <class Token>
    auto initiate_take(std::string name, std::string worker, bool steal, diagnostics* diag,
                       Token&& token) {
        return detail::initiate_with_diagnostics<
            void(boost::system::error_code, std::optional<queue_item>)>(
            token, diag, [this](auto&&... a) { take_impl(std::move(a)...); },
            std::move(name), std::move(worker), steal);
    }

    // diag: the caller's diagnostics, or nullptr (the operation then writes its own).
    void enqueue_impl(std::string name, std::optional<std::string> worker, std::string payload,
                      diagnostics* diag, id_handler handler);
    void dequeue_impl(std::string name, std::string consumer, std::chrono::milliseconds timeout,
                      diagnostics* diag, item_handler handler);
    void ack_impl(std::string name, std::string consumer, std::string raw, diagnostics* diag,
                  bool_handler handler);
    void redeliver_impl(std::string name, diagnostics* diag, count_handler handler);
    void take_impl(std::string name, std::string worker, bool steal, diagnostics* diag,
                   item_handler handler);
    void list_impl(diagnostics* diag,
                   boost::asio::any_completion_handler<void(boost::system::error_code,
                                                            std::vector<std::string>)>
                       handler);
    void stats_impl(
        std::string name, diagnostics* diag,
        boost::asio::any_completion_handler<void(boost::system::error_code, queue_stats)> handler);

    session* session_;
    queue_options opts_;
};

}  // namespace redcoord
