// A cache shared by the nodes of a deployment (the reference's cache provider and
// GetOrSetArrayAsync): typed values as JSON under `<prefix>cache:{<key>}` with a native TTL, and
// get-or-set that makes a missing value once cluster-wide.
#pragma once

#include <redcoord/detail/converting_handler.hpp>
#include <redcoord/detail/json_bridge.hpp>
#include <redcoord/detail/with_diagnostics_handler.hpp>
#include <redcoord/diagnostics.hpp>
#include <redcoord/error.hpp>
#include <redcoord/session.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstddef>
#include <exception>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace redcoord {

/// Cache settings. Defaults in comments.
struct cache_options {
    /// The largest value accepted, as JSON text (512 MiB, the largest string Redis stores).
    /// Must be in [1, 512 MiB].
    std::size_t max_value_bytes = std::size_t(512) * 1024 * 1024;
    /// async_get_or_set: the lease of the caller that makes a missing value (10 s). The
    /// watchdog renews it while the factory runs; when that caller dies, the others take over
    /// within this time. Must be positive.
    std::chrono::milliseconds fill_lease_ttl{std::chrono::seconds(10)};
    /// async_clear and async_keys: the COUNT hint of each SCAN round, and the most keys one
    /// UNLINK deletes (1000). Must be positive.
    std::size_t scan_batch = 1000;
};

/// A typed cache on one session. A value lives, as JSON text, under `<prefix>cache:{<key>}`;
/// its expiry is Redis's own (PX), and a value set without TTL does not expire.
/// async_get_or_set uses companions of the entry: the filler's lease
/// `<prefix>cache:{<key>}:fill` (a string holding its owner token, with a short TTL) and the
/// channel `<prefix>cache:{<key>}:filled`.
///
/// T is anything boost::json::value_from / value_to convert (user types through tag_invoke).
/// The handle is light; several may share a session. Thread safety: none; use it from the
/// session's executor. Every operation completes through the handler's associated executor
/// (default: the session's). Cancellation of the plain operations: as connection::async_exec
/// (a command not yet written is dropped; a written one may have run). Objects passed by
/// reference (diagnostics) must outlive the operation.
class cache {
public:
    /// Throws error_with_diagnostics (error::bad_config) naming a bad option.
    explicit cache(session& s, cache_options opts = {});

    session& get_session() const noexcept { return *session_; }
    const cache_options& options() const noexcept { return opts_; }

    /// Reads key. Completion signature: void(error_code, std::optional<T>): nullopt on a miss.
    /// error::decode_failed when the stored text is not JSON or does not convert to T;
    /// error::invalid_argument for an empty key (diag names it).
    template <class T, class Token = boost::asio::deferred_t>
    auto async_get(std::string key, diagnostics& diag, Token&& token = {}) {
        return initiate_get<T>(std::move(key), &diag, std::forward<Token>(token));
    }
    template <class T, class Token = boost::asio::deferred_t>
    auto async_get(std::string key, Token&& token = {}) {
        return initiate_get<T>(std::move(key), nullptr, std::forward<Token>(token));
    }

    /// Stores value under key for ttl (nullopt: without expiry). The value is converted by
    /// this call. Completion signature: void(error_code). error::invalid_argument for an empty
    /// key, a ttl that is not positive, or a value whose JSON is longer than max_value_bytes.
    template <class T, class Token = boost::asio::deferred_t>
    auto async_set(std::string key, const T& value, std::optional<std::chrono::milliseconds> ttl,
                   diagnostics& diag, Token&& token = {}) {
        return initiate_set(std::move(key), boost::json::value_from(value), ttl, &diag,
                            std::forward<Token>(token));
    }
    template <class T, class Token = boost::asio::deferred_t>
    auto async_set(std::string key, const T& value,
                   std::optional<std::chrono::milliseconds> ttl = std::nullopt,
                   Token&& token = {}) {
        return initiate_set(std::move(key), boost::json::value_from(value), ttl, nullptr,
                            std::forward<Token>(token));
    }

    /// Deletes key. Completion signature: void(error_code, bool deleted): false on a miss.
    template <class Token = boost::asio::deferred_t>
    auto async_del(std::string key, diagnostics& diag, Token&& token = {}) {
        return initiate_del(std::move(key), &diag, std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_del(std::string key, Token&& token = {}) {
        return initiate_del(std::move(key), nullptr, std::forward<Token>(token));
    }

    /// Deletes every entry of this prefix's cache (`<prefix>cache:*`, found by SCAN, deleted
    /// by UNLINK in batches of scan_batch) and nothing else. Not atomic: an entry set while it
    /// runs may survive. Completion signature: void(error_code, std::size_t deleted).
    /// Cancellation: terminal, between batches.
    template <class Token = boost::asio::deferred_t>
    auto async_clear(diagnostics& diag, Token&& token = {}) {
        return initiate_clear(&diag, std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_clear(Token&& token = {}) {
        return initiate_clear(nullptr, std::forward<Token>(token));
    }

    /// The keys of this prefix's cache entries that match pattern, a Redis glob applied to the
    /// part after `<prefix>cache:` ("user:*"; empty: every key). Found by SCAN, so an entry
    /// set or deleted meanwhile may or may not be listed. Completion signature:
    /// void(error_code, std::vector<std::string>): the keys as given to async_set, without the
    /// prefix, sorted, each once. Cancellation: terminal, between SCAN rounds.
    template <class Token = boost::asio::deferred_t>
    auto async_keys(std::string pattern, diagnostics& diag, Token&& token = {}) {
        return initiate_keys(std::move(pattern), &diag, std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_keys(std::string pattern = "*", Token&& token = {}) {
        return initiate_keys(std::move(pattern), nullptr, std::forward<Token>(token));
    }

    /// Returns the value under key or, on a miss, makes it with factory() (a callable returning
    /// asio::awaitable<T>, run on the session's executor), stores it for ttl (nullopt: without
    /// expiry) and returns it. T is deduced from factory unless given.
    ///
    /// Stampede protection: among the callers that miss together, on every node, one calls its
    /// factory; it holds a short lease (fill_lease_ttl, renewed while the factory runs) and
    /// announces the value when stored. The others wait for that announcement by push (a
    /// fallback timer bounded by the lease's remaining TTL covers a lost message and a caller
    /// that died). When the factory throws, its caller gets the exception and one waiter takes
    /// over (calls its own factory). When the lease is lost while the factory runs, the
    /// factory is cancelled (terminal) and the caller gets error::lease_lost.
    ///
    /// Completion signature: void(std::exception_ptr, T): the factory's exception, or
    /// error_with_diagnostics (error::invalid_argument for an empty key, a ttl that is not
    /// positive, or a value over max_value_bytes; error::decode_failed; connection errors).
    /// Cancellation: terminal, partial and total: a waiter stops waiting; the caller running
    /// the factory forwards it to the factory, then lets a waiter take over.
    /// Name the factory before the co_await: g++ 12 destroys a lambda capturing a std::string
    /// twice when it is written inline inside the co_await (docs/connection.md, "Compilers").
    template <class T = detail::deduce_t, class Factory, class Token = boost::asio::deferred_t>
    auto async_get_or_set(std::string key, Factory factory,
                          std::optional<std::chrono::milliseconds> ttl = std::nullopt,
                          Token&& token = {}) {
        using value_type = detail::value_type_of<T, Factory>;
        static_assert(!std::is_void_v<value_type>, "a cached value cannot be void");
        return initiate_get_or_set<value_type>(
            std::move(key), detail::make_json_factory<value_type>(std::move(factory)), ttl,
            std::forward<Token>(token));
    }

    /// async_get_or_set of a std::vector<T> (the reference's GetOrSetArrayAsync): factory
    /// returns asio::awaitable<std::vector<T>>, stored as a JSON array.
    /// Completion signature: void(std::exception_ptr, std::vector<T>).
    template <class T = detail::deduce_t, class Factory, class Token = boost::asio::deferred_t>
    auto async_get_or_set_array(std::string key, Factory factory,
                                std::optional<std::chrono::milliseconds> ttl = std::nullopt,
                                Token&& token = {}) {
        using vector_type =
            std::conditional_t<std::is_same_v<T, detail::deduce_t>,
                               detail::value_type_of<T, Factory>, std::vector<T>>;
        return async_get_or_set<vector_type>(std::move(key), std::move(factory), ttl,
                                             std::forward<Token>(token));
    }

private:
    using void_handler = boost::asio::any_completion_handler<void(boost::system::error_code)>;
    using json_handler = boost::asio::any_completion_handler<void(
        boost::system::error_code, std::optional<boost::json::value>, std::string)>;
    using bool_handler =
        boost::asio::any_completion_handler<void(boost::system::error_code, bool)>;
    using count_handler =
        boost::asio::any_completion_handler<void(boost::system::error_code, std::size_t)>;
    using keys_handler = boost::asio::any_completion_handler<void(boost::system::error_code,
                                                                  std::vector<std::string>)>;
    using fill_handler = boost::asio::any_completion_handler<void(std::exception_ptr,
                                                                  boost::json::value)>;

    // True when the handler's associated executor is the session's own: get, set and del then
    // complete it directly from the reply (they run on that executor) instead of through
    // dispatch and the type-erased executors.
    template <class Handler>
    bool runs_on_session(const Handler& handler) const {
        const auto ex = session_->get_executor();
        auto assoc = boost::asio::get_associated_executor(handler, ex);
        if constexpr (std::is_same_v<decltype(assoc), std::remove_const_t<decltype(ex)>>)
            return assoc == ex;
        else
            return false;
    }

    template <class T, class Token>
    auto initiate_get(std::string key, diagnostics* diag, Token&& token) {
        return boost::asio::async_initiate<Token,
                                           void(boost::system::error_code, std::optional<T>)>(
            [this](auto handler, std::string key, diagnostics* diag) {
                diag = detail::diagnostics_for(handler, diag);
                const bool inline_ok = runs_on_session(handler);
                // The key comes back with the value: only a failed conversion needs it.
                auto convert = [diag](boost::system::error_code ec,
                                      std::optional<boost::json::value> jv, std::string key) {
                    return detail::convert_stored<T>(ec, jv, diag, "cache", key);
                };
                get_impl(std::move(key), diag, inline_ok,
                         detail::converting_handler(std::move(handler), std::move(convert)));
            },
            token, std::move(key), diag);
    }

    template <class Token>
    auto initiate_set(std::string key, boost::json::value value,
                      std::optional<std::chrono::milliseconds> ttl, diagnostics* diag,
                      Token&& token) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
            [this](auto handler, std::string key, boost::json::value value,
                   std::optional<std::chrono::milliseconds> ttl, diagnostics* diag) {
                diag = detail::diagnostics_for(handler, diag);
                const bool inline_ok = runs_on_session(handler);
                set_impl(std::move(key), std::move(value), ttl, diag, inline_ok,
                         std::move(handler));
            },
            token, std::move(key), std::move(value), ttl, diag);
    }

    template <class Token>
    auto initiate_del(std::string key, diagnostics* diag, Token&& token) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, bool)>(
            [this](auto handler, std::string key, diagnostics* diag) {
                diag = detail::diagnostics_for(handler, diag);
                const bool inline_ok = runs_on_session(handler);
                del_impl(std::move(key), diag, inline_ok, std::move(handler));
            },
            token, std::move(key), diag);
    }

    template <class Token>
    auto initiate_clear(diagnostics* diag, Token&& token) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
            [this](auto handler, diagnostics* diag) {
                diag = detail::diagnostics_for(handler, diag);
                clear_impl(diag, std::move(handler));
            },
            token, diag);
    }

    template <class Token>
    auto initiate_keys(std::string pattern, diagnostics* diag, Token&& token) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code,
                                                       std::vector<std::string>)>(
            [this](auto handler, std::string pattern, diagnostics* diag) {
                diag = detail::diagnostics_for(handler, diag);
                keys_impl(std::move(pattern), diag, std::move(handler));
            },
            token, std::move(pattern), diag);
    }

    template <class T, class Token>
    auto initiate_get_or_set(std::string key, detail::json_factory make,
                             std::optional<std::chrono::milliseconds> ttl, Token&& token) {
        return boost::asio::async_initiate<Token, void(std::exception_ptr, T)>(
            [this](auto handler, std::string key, detail::json_factory make,
                   std::optional<std::chrono::milliseconds> ttl) {
                detail::json_result_converter<T> convert{"cache '" + key + "'"};
                get_or_set_impl(
                    std::move(key), std::move(make), ttl,
                    detail::converting_handler(std::move(handler), std::move(convert)));
            },
            token, std::move(key), std::move(make), ttl);
    }

    void get_impl(std::string key, diagnostics* diag, bool inline_ok, json_handler handler);
    void set_impl(std::string key, boost::json::value value,
                  std::optional<std::chrono::milliseconds> ttl, diagnostics* diag,
                  bool inline_ok, void_handler handler);
    void del_impl(std::string key, diagnostics* diag, bool inline_ok, bool_handler handler);
    void clear_impl(diagnostics* diag, count_handler handler);
    void keys_impl(std::string pattern, diagnostics* diag, keys_handler handler);
    void get_or_set_impl(std::string key, detail::json_factory make,
                         std::optional<std::chrono::milliseconds> ttl, fill_handler handler);

    session* session_;
    cache_options opts_;
    std::string entry_prefix_;  // `<prefix>cache:{`, what every entry's key starts with
};

}  // namespace redcoord
