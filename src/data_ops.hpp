// What the data primitives (cache, circuit breaker, checkpoints, idempotency) share: running
// an operation as a coroutine under the caller's cancellation slot and completing it through
// the caller's associated executor.
#pragma once

#include "session_impl.hpp"

#include <boost/asio/append.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <exception>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

namespace redcoord::detail {

inline constexpr auto data_nothrow = asio::as_tuple(asio::use_awaitable);

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


}  // namespace redcoord::detail
