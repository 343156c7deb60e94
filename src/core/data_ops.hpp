// What the data primitives (cache, circuit breaker, checkpoints, idempotency, results, shared
// state, queues) share: the one completion path (core/completion.hpp) on the session's
// executor, and the size limits of stored values.
#pragma once

#include "core/completion.hpp"
#include "core/session_impl.hpp"

#include <boost/asio/append.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstddef>
#include <exception>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

namespace redcoord::detail {

inline constexpr auto data_nothrow = asio::as_tuple(asio::use_awaitable);

// For the coroutines that report errors by throwing: throws error_with_diagnostics.
[[noreturn]] inline void fail(error_code ec, const diagnostics& d) {
    throw error_with_diagnostics(ec, d);
}

// Throws operation_aborted when the running coroutine's cancellation state is set.
inline asio::awaitable<void> stop_if_cancelled() {
    auto cs = co_await asio::this_coro::cancellation_state;
    if (cs.cancelled() != asio::cancellation_type::none)
        throw boost::system::system_error(asio::error::operation_aborted);
}

// The one completion path (core/completion.hpp), on the session's executor.
template <class Handler, class T>
void launch(session_impl& s, asio::awaitable<T> coro, Handler handler) {
    launch(s.conn.get_executor(), std::move(coro), std::move(handler));
}

template <class Handler, class V>
void launch_throwing(session_impl& s, asio::awaitable<V> coro, Handler handler) {
    launch_throwing(s.conn.get_executor(), std::move(coro), std::move(handler));
}

template <class Handler, class... Args>
void complete_later(session_impl& s, Handler&& h, Args&&... args) {
    complete_later(s.conn.get_executor(), std::forward<Handler>(h), std::forward<Args>(args)...);
}

inline std::exception_ptr make_error(error_code ec, const diagnostics& d) {
    return std::make_exception_ptr(error_with_diagnostics(ec, d));
}

// The largest string Redis stores (512 MiB): the default and the most of every size limit
// option (max_value_bytes, max_value_bytes, max_value_bytes).
inline constexpr std::size_t redis_max_string = std::size_t(512) * 1024 * 1024;

// Throws error_with_diagnostics (error::bad_config) naming the option when the size limit v of
// option name is outside [1, 512 MiB].
inline void check_size_option(std::string_view name, std::size_t v) {
    if (v != 0 && v <= redis_max_string) return;
    diagnostics diag;
    diag.set_client_message(std::string(name) + ": " + std::to_string(v) +
                            " is not in [1, 536870912] (512 MiB)");
    throw error_with_diagnostics(error::bad_config, diag);
}

// error::invalid_argument (diag names what, the size and the limit) when text of size bytes,
// stored as is, is longer than max_bytes, the option limit_name; noun says what the text is
// ("payload"). Values stored as JSON use serialize_limited (fill_once.hpp), with the same
// wording.
inline error_code check_size(const std::string& what, std::string_view noun, std::size_t size,
                             std::size_t max_bytes, std::string_view limit_name,
                             diagnostics& diag) {
    if (size <= max_bytes) return {};
    return invalid(diag, what + ": " + std::string(noun) + " of " + std::to_string(size) +
                             " bytes exceeds " + std::string(limit_name) + " (" +
                             std::to_string(max_bytes) + ")");
}


}  // namespace redcoord::detail
