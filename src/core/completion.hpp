// The one completion path of every asynchronous operation of the library (DESIGN.md, "Errors
// and completion"): an operation either runs as a coroutine (launch) or completes without one
// (complete_later, or its own op object); in every case
//   - the handler is invoked through its associated executor, never inside the initiating call;
//   - the handler's cancellation slot reaches the work (launch binds it to the coroutine);
//   - the diagnostics an operation writes are the caller's or the operation's own
//     (diag_target), never an object another operation may be writing at the same time.
#pragma once

#include <redcoord/diagnostics.hpp>
#include <redcoord/error.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>

#include <exception>
#include <tuple>
#include <type_traits>
#include <utility>

namespace redcoord::detail {

namespace asio = boost::asio;
using boost::system::error_code;

/// Where an operation writes its diagnostics: the caller's object when it passed one, else the
/// operation's own. It moves with the operation (it keeps no pointer into itself), so two
/// operations never share one object — not even when the io_context runs on several threads.
class diag_target {
  public:
    explicit diag_target(diagnostics* caller = nullptr) noexcept : caller_(caller) {}
    diag_target(diag_target&& o) noexcept : caller_(o.caller_), own_(std::move(o.own_)) {}
    diag_target& operator=(diag_target&& o) noexcept {
        caller_ = o.caller_;
        own_ = std::move(o.own_);
        return *this;
    }

    diagnostics& get() noexcept { return caller_ ? *caller_ : own_; }
    diagnostics* caller() const noexcept { return caller_; }

  private:
    diagnostics* caller_;
    diagnostics own_;
};

/// Completes h with args later: posted to ex, then run through h's associated executor.
template <class Handler, class... Args>
void complete_later(const asio::any_io_executor& ex, Handler&& h, Args&&... args) {
    asio::post(ex, asio::append(std::forward<Handler>(h), std::forward<Args>(args)...));
}

/// Completes h with args from inside a completion that runs on ex (a reply arrived, so never
/// inside the initiating call): called right here when h's associated executor is ex
/// (inline_ok, what dispatch would do, without its type-erased hops), else dispatched to it.
template <class Handler, class... Args>
void complete_from_reply(const asio::any_io_executor& ex, bool inline_ok, Handler&& h,
                         Args&&... args) {
    if (inline_ok) {
        std::forward<Handler>(h)(std::forward<Args>(args)...);
        return;
    }
    asio::dispatch(ex, asio::append(std::forward<Handler>(h), std::forward<Args>(args)...));
}

namespace completion {

// How a coroutine's result becomes the handler's arguments.
template <class T>
struct error_code_result;  // error_code, std::tuple<error_code, R...> or std::pair<error_code, T>

template <>
struct error_code_result<error_code> {
    static error_code aborted() { return asio::error::operation_aborted; }
    template <class F>
    static void apply(F&& f, error_code ec) {
        f(ec);
    }
};

template <class... R>
struct error_code_result<std::tuple<error_code, R...>> {
    static std::tuple<error_code, R...> aborted() {
        std::tuple<error_code, R...> r{};
        std::get<0>(r) = asio::error::operation_aborted;
        return r;
    }
    template <class F>
    static void apply(F&& f, std::tuple<error_code, R...> r) {
        std::apply(f, std::move(r));
    }
};

template <class T>
struct error_code_result<std::pair<error_code, T>> {
    static std::pair<error_code, T> aborted() { return {asio::error::operation_aborted, T{}}; }
    template <class F>
    static void apply(F&& f, std::pair<error_code, T> r) {
        f(r.first, std::move(r.second));
    }
};

}  // namespace completion

/// Runs coro (returning error_code, std::tuple<error_code, R...> or std::pair<error_code, T>) on ex
/// with the handler's cancellation slot bound to it, and completes the handler with (ec, R...)
/// through its associated executor. An exception out of the coroutine (cancellation of an awaited
/// operation) completes with operation_aborted.
template <class T, class Handler>
void launch(const asio::any_io_executor& ex, asio::awaitable<T> coro, Handler handler) {
    using result = completion::error_code_result<T>;
    auto slot = asio::get_associated_cancellation_slot(handler);
    asio::co_spawn(ex, std::move(coro),
                   asio::bind_cancellation_slot(slot, [h = std::move(handler)](
                                                          std::exception_ptr ep, T r) mutable {
                       if (ep) r = result::aborted();
                       result::apply(
                           [&](auto&&... args) {
                               asio::dispatch(asio::append(std::move(h), std::move(args)...));
                           },
                           std::move(r));
                   }));
}

/// For the operations that run the user's function (a circuit breaker's execute, a cache's
/// get_or_set, idempotency's once), whose completion carries that function's own exception
/// (docs/connection.md, "Errors"): runs coro (awaitable<void> or awaitable<V>) with the
/// handler's cancellation slot and completes with (exception_ptr) or (exception_ptr, V).
template <class V, class Handler>
void launch_throwing(const asio::any_io_executor& ex, asio::awaitable<V> coro, Handler handler) {
    auto slot = asio::get_associated_cancellation_slot(handler);
    if constexpr (std::is_void_v<V>) {
        asio::co_spawn(ex, std::move(coro),
                       asio::bind_cancellation_slot(
                           slot, [h = std::move(handler)](std::exception_ptr ep) mutable {
                               asio::dispatch(asio::append(std::move(h), ep));
                           }));
    } else {
        asio::co_spawn(ex, std::move(coro),
                       asio::bind_cancellation_slot(
                           slot, [h = std::move(handler)](std::exception_ptr ep, V v) mutable {
                               asio::dispatch(asio::append(std::move(h), ep, std::move(v)));
                           }));
    }
}

}  // namespace redcoord::detail
