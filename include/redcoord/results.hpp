// Task results (the reference's results backend): a task's status and metadata live in a hash,
// apart from its value, which is stored gzip-compressed JSON with its own, shorter TTL; waiters
// hear a result's arrival by push. Small task state rides along under `<prefix>state:{<key>}`.
#pragma once

#include <redcoord/detail/converting_handler.hpp>
#include <redcoord/detail/json_bridge.hpp>
#include <redcoord/detail/with_diagnostics_handler.hpp>
#include <redcoord/diagnostics.hpp>
#include <redcoord/error.hpp>
#include <redcoord/limits.hpp>
#include <redcoord/session.hpp>
#include <redcoord/state.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

namespace redcoord {

/// The status of a task's result.
enum class result_status {
    pending,    ///< known, not started
    running,    ///< started
    succeeded,  ///< finished successfully (terminal)
    failed,     ///< finished with an error (terminal)
    revoked,    ///< cancelled before it finished (terminal)
};

/// The status as stored: "pending", "running", "succeeded", "failed", "revoked".
std::string_view to_string(result_status s) noexcept;
/// The status a stored name stands for; nullopt for an unknown name.
std::optional<result_status> parse_result_status(std::string_view name) noexcept;
/// True for succeeded, failed and revoked: async_wait completes on these.
constexpr bool is_terminal(result_status s) noexcept {
    return s == result_status::succeeded || s == result_status::failed ||
           s == result_status::revoked;
}

/// Results backend settings. Defaults in comments.
struct result_options {
    /// TTL of a result's hash (status, metadata, timestamps), renewed by each write (21 days).
    /// Must be positive.
    std::chrono::milliseconds result_ttl{std::chrono::hours(24 * 21)};
    /// TTL of a result's value, set when it is stored (7 days). Must be positive.
    std::chrono::milliseconds value_ttl{std::chrono::hours(24 * 7)};
    /// TTL of task state set without one (7200 s). Must be positive.
    std::chrono::milliseconds state_ttl{std::chrono::seconds(7200)};
    /// The largest value accepted, as JSON text before compression; also the most a stored
    /// value may inflate to when read (512 MiB). Must be in [1, 512 MiB].
    std::size_t max_value_bytes = std::size_t(512) * 1024 * 1024;
};

/// What is known of a task's result.
struct result_info {
    result_status status = result_status::pending;
    boost::json::value metadata;  ///< the last metadata written (null when none)
    std::chrono::system_clock::time_point created;  ///< first write (client clock, ms)
    std::chrono::system_clock::time_point updated;  ///< last write
    /// A value was stored with the result (it may have expired since: value_ttl is shorter).
    bool has_value = false;
    /// Size of the stored value, compressed, in bytes (0 without a value).
    std::size_t value_bytes = 0;
};

/// Task results of one session.
///
/// Key layout (prefix "redcoord:"):
/// - `<prefix>result:{<id>}`: a hash with fields `status` (to_string), `metadata` (JSON text),
///   `created_ms`, `updated_ms` (Unix ms, writer's clock) and, once a value is stored,
///   `value_bytes`; PX result_ttl, renewed by each write;
/// - `<prefix>result:{<id>}:value`: the value, JSON text compressed by zlib with a gzip header
///   (RFC 1952, readable by any gzip tool); PX value_ttl;
/// - channel `<prefix>result:{<id>}:stored`: each write publishes the new status there, in the
///   same Lua script as the write;
/// - `<prefix>state:{<key>}`: task state, the same layout and JSON text as shared_state.
///
/// The hash and the value are written by one script: in Redis Cluster they live in different
/// slots (the documented layout), so the backend needs a single node or a proxy that keeps
/// them together.
///
/// The handle is light; several may share a session. Thread safety: none; use it from the
/// session's executor. Every operation completes through the handler's associated executor.
///
/// Errors (docs/connection.md, "Errors"): every operation completes with an error_code first:
/// error::invalid_argument (bad input), error::corrupt_data (a stored value that does not
/// inflate), error::decode_failed (stored text that is not JSON or does not convert),
/// error::timeout (async_wait's deadline), error::session_closed, connection errors. The
/// overloads taking a diagnostics& fill it on error with the server's text or a message naming
/// the result and what was wrong; redcoord::with_diagnostics(token) throws
/// error_with_diagnostics instead. Only the operations that run a user's function
/// (async_run_exclusive, async_get_or_set, ...) complete with an exception_ptr, that function's
/// own exception; none here does. Objects passed by reference (diagnostics) must outlive the
/// operation. Cancellation: terminal, partial and total; a write already sent may have been
/// applied.
class result_store {
public:
    /// Throws error_with_diagnostics (error::bad_config) naming a bad option.
    explicit result_store(session& s, result_options opts = {});

    session& get_session() const noexcept { return *session_; }
    const result_options& options() const noexcept { return opts_; }

    /// Sets a result's status (creating the hash when needed), keeping its metadata, or
    /// replacing it when metadata is given. Completion signature: void(error_code).
    template <class Token = boost::asio::deferred_t>
    auto async_set_status(std::string id, result_status status, diagnostics& diag,
                          Token&& token = {}) {
        return initiate_store(std::move(id), status, std::nullopt, std::nullopt, &diag,
                              std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_set_status(std::string id, result_status status, Token&& token = {}) {
        return initiate_store(std::move(id), status, std::nullopt, std::nullopt, nullptr,
                              std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_set_status(std::string id, result_status status, boost::json::value metadata,
                          diagnostics& diag, Token&& token = {}) {
        return initiate_store(std::move(id), status, std::nullopt,
                              std::optional<boost::json::value>(std::move(metadata)), &diag,
                              std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_set_status(std::string id, result_status status, boost::json::value metadata,
                          Token&& token = {}) {
        return initiate_store(std::move(id), status, std::nullopt,
                              std::optional<boost::json::value>(std::move(metadata)), nullptr,
                              std::forward<Token>(token));
    }

    /// Stores a result: its status (and metadata, when given) in the hash, value (through
    /// boost::json::value_from) compressed under the value key, and announces it to the
    /// waiters. Completion signature: void(error_code). error::invalid_argument when the JSON
    /// text is over max_value_bytes.
    template <class T, class Token = boost::asio::deferred_t>
    auto async_store_result(std::string id, result_status status, const T& value,
                            diagnostics& diag, Token&& token = {}) {
        return initiate_store(std::move(id), status,
                              std::optional<boost::json::value>(boost::json::value_from(value)),
                              std::nullopt, &diag, std::forward<Token>(token));
    }
    template <class T, class Token = boost::asio::deferred_t>
    auto async_store_result(std::string id, result_status status, const T& value,
                            Token&& token = {}) {
        return initiate_store(std::move(id), status,
                              std::optional<boost::json::value>(boost::json::value_from(value)),
                              std::nullopt, nullptr, std::forward<Token>(token));
    }
    template <class T, class Token = boost::asio::deferred_t>
    auto async_store_result(std::string id, result_status status, const T& value,
                            boost::json::value metadata, diagnostics& diag, Token&& token = {}) {
        return initiate_store(std::move(id), status,
                              std::optional<boost::json::value>(boost::json::value_from(value)),
                              std::optional<boost::json::value>(std::move(metadata)), &diag,
                              std::forward<Token>(token));
    }
    template <class T, class Token = boost::asio::deferred_t>
    auto async_store_result(std::string id, result_status status, const T& value,
                            boost::json::value metadata, Token&& token = {}) {
        return initiate_store(std::move(id), status,
                              std::optional<boost::json::value>(boost::json::value_from(value)),
                              std::optional<boost::json::value>(std::move(metadata)), nullptr,
                              std::forward<Token>(token));
    }

    /// Reads a result's status and metadata. Completion signature:
    /// void(error_code, std::optional<result_info>): nullopt when there is none.
    template <class Token = boost::asio::deferred_t>
    auto async_get_result(std::string id, diagnostics& diag, Token&& token = {}) {
        return initiate_get_result(std::move(id), &diag, std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_get_result(std::string id, Token&& token = {}) {
        return initiate_get_result(std::move(id), nullptr, std::forward<Token>(token));
    }

    /// Reads a result's value. Completion signature: void(error_code, std::optional<T>):
    /// nullopt when there is none (never stored, or expired). error::corrupt_data when the
    /// stored bytes are not a complete gzip stream (or inflate past max_value_bytes);
    /// error::decode_failed when the text is not JSON or does not convert to T (diag names
    /// the result).
    template <class T, class Token = boost::asio::deferred_t>
    auto async_get_value(std::string id, diagnostics& diag, Token&& token = {}) {
        return initiate_get_value<T>(std::move(id), &diag, std::forward<Token>(token));
    }
    template <class T, class Token = boost::asio::deferred_t>
    auto async_get_value(std::string id, Token&& token = {}) {
        return initiate_get_value<T>(std::move(id), nullptr, std::forward<Token>(token));
    }

    /// Waits until the result has a terminal status (succeeded, failed, revoked), by push: it
    /// subscribes to the result's channel, then reads the hash; the only timer is the deadline.
    /// Completion signature: void(error_code, result_info). error::timeout when the deadline
    /// passes first.
    template <class Token = boost::asio::deferred_t>
    auto async_wait(std::string id, std::chrono::steady_clock::time_point deadline,
                    diagnostics& diag, Token&& token = {}) {
        return initiate_wait(std::move(id), deadline, &diag, std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_wait(std::string id, std::chrono::steady_clock::time_point deadline,
                    Token&& token = {}) {
        return initiate_wait(std::move(id), deadline, nullptr, std::forward<Token>(token));
    }
    /// As above, with the deadline timeout from now.
    template <class Token = boost::asio::deferred_t>
    auto async_wait(std::string id, std::chrono::milliseconds timeout, diagnostics& diag,
                    Token&& token = {}) {
        return initiate_wait(std::move(id), detail::deadline_in(timeout), &diag,
                             std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_wait(std::string id, std::chrono::milliseconds timeout, Token&& token = {}) {
        return initiate_wait(std::move(id), detail::deadline_in(timeout), nullptr,
                             std::forward<Token>(token));
    }

    /// Sets task state key to value for ttl (unset: options().state_ttl), as
    /// shared_state::async_set (watchers of the key hear it). Completion signature:
    /// void(error_code).
    template <class T, class Token = boost::asio::deferred_t>
    auto async_set_state(std::string key, const T& value,
                         std::optional<std::chrono::milliseconds> ttl, diagnostics& diag,
                         Token&& token = {}) {
        return state_.async_set(std::move(key), value, ttl, diag, std::forward<Token>(token));
    }
    template <class T, class Token = boost::asio::deferred_t>
    auto async_set_state(std::string key, const T& value,
                         std::optional<std::chrono::milliseconds> ttl = std::nullopt,
                         Token&& token = {}) {
        return state_.async_set(std::move(key), value, ttl, std::forward<Token>(token));
    }
    /// Reads task state, as shared_state::async_get. Completion signature:
    /// void(error_code, std::optional<T>).
    template <class T, class Token = boost::asio::deferred_t>
    auto async_get_state(std::string key, diagnostics& diag, Token&& token = {}) {
        return state_.async_get<T>(std::move(key), diag, std::forward<Token>(token));
    }
    template <class T, class Token = boost::asio::deferred_t>
    auto async_get_state(std::string key, Token&& token = {}) {
        return state_.async_get<T>(std::move(key), std::forward<Token>(token));
    }

private:
    using void_handler = boost::asio::any_completion_handler<void(boost::system::error_code)>;
    using info_handler = boost::asio::any_completion_handler<void(
        boost::system::error_code, std::optional<result_info>)>;
    using value_handler = boost::asio::any_completion_handler<void(
        boost::system::error_code, std::optional<boost::json::value>)>;
    using wait_handler =
        boost::asio::any_completion_handler<void(boost::system::error_code, result_info)>;

    template <class Token>
    auto initiate_store(std::string id, result_status status,
                        std::optional<boost::json::value> value,
                        std::optional<boost::json::value> metadata, diagnostics* diag,
                        Token&& token) {
        return detail::initiate_with_diagnostics<void(boost::system::error_code)>(
            token, diag, [this](auto&&... a) { store_impl(std::move(a)...); },
            std::move(id), status, std::move(value), std::move(metadata));
    }

    template <class Token>
    auto initiate_get_result(std::string id, diagnostics* diag, Token&& token) {
        return detail::initiate_with_diagnostics<
            void(boost::system::error_code, std::optional<result_info>)>(
            token, diag, [this](auto&&... a) { get_result_impl(std::move(a)...); },
            std::move(id));
    }

    template <class T, class Token>
    auto initiate_get_value(std::string id, diagnostics* diag, Token&& token) {
        return boost::asio::async_initiate<Token,
                                           void(boost::system::error_code, std::optional<T>)>(
            [this](auto handler, std::string id, diagnostics* diag) {
                diag = detail::diagnostics_for(handler, diag);
                // The id is kept for the message of a value that does not convert.
                auto convert = [diag, id](boost::system::error_code ec,
                                          std::optional<boost::json::value> jv) {
                    return detail::convert_stored<T>(ec, jv, diag, "result", id);
                };
                get_value_impl(std::move(id), diag,
                               detail::converting_handler(std::move(handler), std::move(convert)));
            },
            token, std::move(id), diag);
    }

    template <class Token>
    auto initiate_wait(std::string id, std::chrono::steady_clock::time_point deadline,
                       diagnostics* diag, Token&& token) {
        return detail::initiate_with_diagnostics<void(boost::system::error_code, result_info)>(
            token, diag, [this](auto&&... a) { wait_impl(std::move(a)...); },
            std::move(id), deadline);
    }

    // diag: the caller's diagnostics, or nullptr (the operation then writes its own).
    void store_impl(std::string id, result_status status, std::optional<boost::json::value> value,
                    std::optional<boost::json::value> metadata, diagnostics* diag,
                    void_handler handler);
    void get_result_impl(std::string id, diagnostics* diag, info_handler handler);
    void get_value_impl(std::string id, diagnostics* diag, value_handler handler);
    void wait_impl(std::string id, std::chrono::steady_clock::time_point deadline,
                   diagnostics* diag, wait_handler handler);

    session* session_;
    result_options opts_;
    shared_state state_;
};

namespace detail {
/// zlib deflate with a gzip header (windowBits 15 + 16). Throws std::bad_alloc only.
std::string gzip_compress(std::string_view data);
/// Inflates a complete gzip stream into out; false when the data is not one (corrupt,
/// truncated, trailing bytes) or inflates past max_bytes.
bool gzip_decompress(std::string_view data, std::size_t max_bytes, std::string& out);
}  // namespace detail

}  // namespace redcoord
