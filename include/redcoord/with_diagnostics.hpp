// The throwing form of the operations, as a completion token (Boost.MySQL's with_diagnostics):
//
//   auto id = co_await q.async_enqueue("jobs", payload,
//                                      redcoord::with_diagnostics(asio::use_awaitable));
//
// throws error_with_diagnostics, whose get_diagnostics() (and what()) hold the server's text or
// the name of the bad input, where use_awaitable alone would throw a bare system_error.
#pragma once

#include <redcoord/detail/with_diagnostics_handler.hpp>
#include <redcoord/diagnostics.hpp>

#include <boost/asio/async_result.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/error_code.hpp>

#include <exception>
#include <type_traits>
#include <utility>

namespace redcoord {

/// A completion token adapter (docs/connection.md, "Errors") for the operations that complete
/// with void(error_code, R...): the operation completes token with void(std::exception_ptr,
/// R...) instead, the exception an error_with_diagnostics carrying the operation's diagnostics
/// (null on success). A token that throws on an exception_ptr (use_awaitable, use_future) then
/// throws it, and returns the values otherwise.
///
/// The diagnostics: those the caller passed to the operation, if it did; else the adapter's
/// own, which every operation of redcoord that takes an optional diagnostics fills (through
/// detail::diagnostics_for). An operation without diagnostics (e.g. leader_election's) throws
/// with the error code alone. Put with_diagnostics outermost when combining adapters
/// (with_diagnostics(asio::bind_executor(ex, token)), not the reverse): the operation finds the
/// diagnostics on the handler it is given.
///
/// The wrapped handler's associated executor, allocator and cancellation slot are kept.
/// The operations that run the user's function complete with an exception_ptr already, the
/// function's own exception (async_run_exclusive, async_run_as_leader, circuit_breaker's
/// async_execute, async_get_or_set, async_once): they take their token as is.
template <class CompletionToken>
class with_diagnostics_t {
public:
    constexpr explicit with_diagnostics_t(CompletionToken token) : token_(std::move(token)) {}

    CompletionToken token_;
};

/// Adapts token to throw error_with_diagnostics; see with_diagnostics_t. The default is
/// asio::use_awaitable, not the operations' asio::deferred: Asio 1.81 cannot co_await a
/// deferred operation that completes with (exception_ptr, T).
template <class CompletionToken = boost::asio::use_awaitable_t<>>
constexpr with_diagnostics_t<std::decay_t<CompletionToken>> with_diagnostics(
    CompletionToken&& token = {}) {
    return with_diagnostics_t<std::decay_t<CompletionToken>>(
        std::forward<CompletionToken>(token));
}

}  // namespace redcoord

namespace boost::asio {

template <class CompletionToken, class... Signatures>
struct async_result<redcoord::with_diagnostics_t<CompletionToken>, Signatures...> {
    static_assert(sizeof...(Signatures) == 0,
                  "redcoord::with_diagnostics takes operations that complete with "
                  "void(error_code, ...)");
};

template <class CompletionToken, class... Args>
struct async_result<redcoord::with_diagnostics_t<CompletionToken>,
                    void(boost::system::error_code, Args...)>
    : async_result<CompletionToken, void(std::exception_ptr, Args...)> {
    using base_async_result = async_result<CompletionToken, void(std::exception_ptr, Args...)>;

    // The operation's initiation, given the wrapped handler.
    template <class Initiation>
    struct init_wrapper {
        explicit init_wrapper(Initiation init) : initiation_(std::move(init)) {}

        template <class Handler, class... InitArgs>
        void operator()(Handler&& handler, InitArgs&&... args) {
            std::move(initiation_)(
                redcoord::detail::with_diagnostics_handler<std::decay_t<Handler>>(
                    std::forward<Handler>(handler)),
                std::forward<InitArgs>(args)...);
        }

        Initiation initiation_;
    };

    template <class Initiation, class RawCompletionToken, class... InitArgs>
    static auto initiate(Initiation&& initiation, RawCompletionToken&& token,
                         InitArgs&&... args) {
        return base_async_result::initiate(
            init_wrapper<std::decay_t<Initiation>>(std::forward<Initiation>(initiation)),
            token.token_, std::forward<InitArgs>(args)...);
    }
};

}  // namespace boost::asio
