// Shared state (the reference's IDistributedState): typed values as JSON under
// `<prefix>state:{<key>}` with a native TTL, and change notifications for watchers.
#pragma once

#include <redcoord/detail/converting_handler.hpp>
#include <redcoord/detail/with_diagnostics_handler.hpp>
#include <redcoord/diagnostics.hpp>
#include <redcoord/error.hpp>
#include <redcoord/events.hpp>
#include <redcoord/session.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <tuple>
#include <utility>

namespace redcoord {

/// Shared state settings. Defaults in comments.
struct state_options {
    /// TTL of a value set without one (7200 s, as in the reference). Must be positive.
    std::chrono::milliseconds default_ttl{std::chrono::seconds(7200)};
    /// The largest value accepted, as JSON text (512 MiB, the largest string Redis stores).
    /// Must be in [1, 512 MiB].
    std::size_t max_value_bytes = std::size_t(512) * 1024 * 1024;
};

/// Values shared across the nodes of a deployment: `async_set` writes a value (as JSON text,
/// with PX) under `<prefix>state:{<key>}` and, in the same Lua script, publishes it on the
/// companion channel `<prefix>state:{<key>}:changed`; `async_remove` deletes it and publishes
/// an empty message there. Watchers hear both. A value that ends by its TTL is not announced.
///
/// T is anything boost::json::value_from / value_to convert (user types through tag_invoke).
/// The handle is light; several may share a session. Thread safety: none; use it from the
/// session's executor. Every operation completes through the handler's associated executor
/// (default: the session's). Cancellation: as connection::async_exec (a command not yet
/// written is dropped; a written one may have run).
class shared_state {
public:
    /// Throws error_with_diagnostics (error::bad_config) naming a bad option.
    explicit shared_state(session& s, state_options opts = {});

    session& get_session() const noexcept { return *session_; }
    const state_options& options() const noexcept { return opts_; }

    /// Sets key to value for ttl (unset: options().default_ttl) and tells the watchers.
    /// Completion signature: void(error_code). error::invalid_argument for an empty key, a ttl
    /// that is not positive, or a value whose JSON is longer than max_value_bytes (diag names
    /// it; nothing is written). The value is converted by this call; diag must outlive the
    /// operation.
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

    /// Reads key. Completion signature: void(error_code, std::optional<T>): nullopt when the
    /// key does not exist (expired or removed). error::decode_failed when the stored text is
    /// not JSON or does not convert to T; error::invalid_argument for an empty key.
    template <class T, class Token = boost::asio::deferred_t>
    auto async_get(std::string key, diagnostics& diag, Token&& token = {}) {
        return initiate_get<T>(std::move(key), &diag, std::forward<Token>(token));
    }
    template <class T, class Token = boost::asio::deferred_t>
    auto async_get(std::string key, Token&& token = {}) {
        return initiate_get<T>(std::move(key), nullptr, std::forward<Token>(token));
    }

    /// Deletes key and tells the watchers. Completion signature: void(error_code, bool removed):
    /// false when there was nothing to delete (then nobody is told).
    template <class Token = boost::asio::deferred_t>
    auto async_remove(std::string key, diagnostics& diag, Token&& token = {}) {
        return initiate_remove(std::move(key), &diag, std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_remove(std::string key, Token&& token = {}) {
        return initiate_remove(std::move(key), nullptr, std::forward<Token>(token));
    }

    /// Calls callback(error_code, std::optional<T>) on every change of key made through
    /// async_set (the new value) or async_remove (nullopt), from this or any other node, on
    /// the session's executor, inside the delivery (it must not block or throw). Errors:
    /// error::events_gap (changes may have been missed: read the key again if it matters),
    /// error::decode_failed, error::session_closed (last call); the value is then nullopt.
    /// Subscribed as event_bus::subscribe. Throws error_with_diagnostics
    /// (error::invalid_argument) for an empty key.
    template <class T, class F>
    subscription watch(std::string key, F callback) {
        return watch_impl(std::move(key),
                          [cb = std::move(callback)](boost::system::error_code ec,
                                                     const detail::event_ptr& m) mutable {
                              std::optional<T> v;
                              if (!ec && m && !m->empty_payload) {
                                  ec = m->ec;
                                  if (!ec) ec = detail::json_to(m->value, v.emplace());
                                  if (ec) v.reset();
                              }
                              cb(ec, std::move(v));
                          });
    }

private:
    using void_handler = boost::asio::any_completion_handler<void(boost::system::error_code)>;
    using text_handler = boost::asio::any_completion_handler<void(
        boost::system::error_code, std::optional<std::string>)>;
    using bool_handler =
        boost::asio::any_completion_handler<void(boost::system::error_code, bool)>;

    template <class Token>
    auto initiate_set(std::string key, boost::json::value value,
                      std::optional<std::chrono::milliseconds> ttl, diagnostics* diag,
                      Token&& token) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
            [this](auto handler, std::string key, boost::json::value value,
                   std::optional<std::chrono::milliseconds> ttl, diagnostics* diag) {
                diag = detail::diagnostics_for(handler, diag);
                set_impl(std::move(key), std::move(value), ttl, diag, std::move(handler));
            },
            token, std::move(key), std::move(value), ttl, diag);
    }

    template <class T, class Token>
    auto initiate_get(std::string key, diagnostics* diag, Token&& token) {
        return boost::asio::async_initiate<Token,
                                           void(boost::system::error_code, std::optional<T>)>(
            [this](auto handler, std::string key, diagnostics* diag) {
                diag = detail::diagnostics_for(handler, diag);
                auto convert = [diag, key](boost::system::error_code ec,
                                           std::optional<std::string> text) {
                    std::optional<T> v;
                    if (!ec && text) {
                        auto jv = boost::json::parse(*text, ec);
                        if (ec) {
                            ec = error::decode_failed;
                            if (diag) diag->set_client_message("state '" + key + "': not JSON");
                        } else if ((ec = detail::json_to(jv, v.emplace()))) {
                            v.reset();
                            if (diag)
                                diag->set_client_message("state '" + key +
                                                         "': the value does not convert");
                        }
                    }
                    return std::tuple<boost::system::error_code, std::optional<T>>(
                        ec, std::move(v));
                };
                get_impl(std::move(key), diag,
                         detail::converting_handler(std::move(handler), std::move(convert)));
            },
            token, std::move(key), diag);
    }

    template <class Token>
    auto initiate_remove(std::string key, diagnostics* diag, Token&& token) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, bool)>(
            [this](auto handler, std::string key, diagnostics* diag) {
                diag = detail::diagnostics_for(handler, diag);
                remove_impl(std::move(key), diag, std::move(handler));
            },
            token, std::move(key), diag);
    }

    void set_impl(std::string key, boost::json::value value,
                  std::optional<std::chrono::milliseconds> ttl, diagnostics* diag,
                  void_handler handler);
    void get_impl(std::string key, diagnostics* diag, text_handler handler);
    void remove_impl(std::string key, diagnostics* diag, bool_handler handler);
    subscription watch_impl(std::string key, detail::event_fn fn);

    session* session_;
    state_options opts_;
};

}  // namespace redcoord
