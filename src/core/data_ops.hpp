// What the data primitives (cache, circuit breaker, checkpoints, idempotency, results, shared
// state, queues) share: running an operation as a coroutine under the caller's cancellation
// slot and completing it through the caller's associated executor, and the size limits of
// stored values.
#pragma once

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

// Runs coro (returning std::tuple<error_code, R...>) on the session's executor with the
// handler's cancellation slot; an exception (cancellation) completes with operation_aborted.
template <class Handler, class... R>
void launch(session_impl& s, asio::awaitable<std::tuple<error_code, R...>> coro,
            Handler handler) {
    const auto ex = s.conn.get_executor();
    auto slot = asio::get_associated_cancellation_slot(handler);
    asio::co_spawn(ex, std::move(coro),
                   asio::bind_cancellation_slot(
                       slot, [ex, h = std::move(handler)](std::exception_ptr ep,
                                                          std::tuple<error_code, R...> r) mutable {
                           if (ep) r = std::tuple<error_code, R...>{};
                           if (ep) std::get<0>(r) = asio::error::operation_aborted;
                           std::apply(
                               [&](auto&&... args) {
                                   asio::dispatch(ex, asio::append(std::move(h),
                                                                   std::move(args)...));
                               },
                               std::move(r));
                       }));
}

// Runs coro (returning awaitable<V>, throwing on errors) with the handler's cancellation slot;
// completes with (exception_ptr, V).
template <class Handler, class V>
void launch_throwing(session_impl& s, asio::awaitable<V> coro, Handler handler) {
    const auto ex = s.conn.get_executor();
    auto slot = asio::get_associated_cancellation_slot(handler);
    asio::co_spawn(ex, std::move(coro),
                   asio::bind_cancellation_slot(
                       slot, [ex, h = std::move(handler)](std::exception_ptr ep, V v) mutable {
                           asio::dispatch(ex, asio::append(std::move(h), ep, std::move(v)));
                       }));
}

// Completes handler with args later (never inside the initiating call).
template <class Handler, class... Args>
void complete_later(session_impl& s, Handler&& h, Args&&... args) {
    asio::post(s.conn.get_executor(),
               asio::append(std::forward<Handler>(h), std::forward<Args>(args)...));
}

inline std::exception_ptr make_error(error_code ec, const diagnostics& d) {
    return std::make_exception_ptr(error_with_diagnostics(ec, d));
}

// The largest string Redis stores (512 MiB): the default and the most of every size limit
// option (max_value_bytes, max_result_bytes, max_payload_bytes).
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
