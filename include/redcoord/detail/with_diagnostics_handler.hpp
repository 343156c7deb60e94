// The completion handler behind redcoord::with_diagnostics (with_diagnostics.hpp), and the one
// call through which an operation's initiation finds the diagnostics it is to fill.
#pragma once

#include <redcoord/diagnostics.hpp>

#include <boost/asio/associator.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/system/error_code.hpp>

#include <exception>
#include <memory>
#include <utility>

namespace redcoord::detail {

/// Wraps the handler of the token given to with_diagnostics: completes it with
/// (exception_ptr, R...) for the operation's (error_code, R...), the exception an
/// error_with_diagnostics carrying the operation's diagnostics. Keeps the wrapped handler's
/// associated executor, allocator and cancellation slot (the associator below).
template <class Handler>
class with_diagnostics_handler {
public:
    explicit with_diagnostics_handler(Handler handler) : handler_(std::move(handler)) {}

    /// The diagnostics the operation fills: the caller's when it passed some (the exception
    /// then carries a copy of them), else this handler's own. Those live on the heap, so
    /// their address stays valid while the handler moves into the operation.
    diagnostics* target(diagnostics* caller) {
        if (caller) return caller_ = caller;
        if (!own_) own_ = std::make_unique<diagnostics>();
        return own_.get();
    }

    template <class... Args>
    void operator()(boost::system::error_code ec, Args&&... args) {
        std::exception_ptr ep;
        if (ec) {
            // An operation that takes no diagnostics never asked for any: the code alone.
            const diagnostics none;
            const diagnostics& diag = caller_ ? *caller_ : own_ ? *own_ : none;
            ep = std::make_exception_ptr(error_with_diagnostics(ec, diag));
        }
        own_.reset();  // the operation is done with it; the handler may run for long
        std::move(handler_)(std::move(ep), std::forward<Args>(args)...);
    }

    const Handler& get_inner() const noexcept { return handler_; }

private:
    Handler handler_;
    std::unique_ptr<diagnostics> own_;
    diagnostics* caller_ = nullptr;
};

/// What an operation's initiation passes on as its diagnostics: diag (the caller's, or null)
/// for an ordinary handler; for a handler made by with_diagnostics, diag when given, else the
/// handler's own, so that the exception it completes with says what went wrong. Every public
/// operation that takes an optional diagnostics calls this on its handler before moving it.
template <class Handler>
diagnostics* diagnostics_for(Handler&, diagnostics* diag) noexcept {
    return diag;
}
template <class Handler>
diagnostics* diagnostics_for(with_diagnostics_handler<Handler>& handler, diagnostics* diag) {
    return handler.target(diag);
}

/// The initiation of an operation with an optional diagnostics (the caller's, or null):
/// impl(args..., diagnostics*, handler), with the diagnostics found by diagnostics_for and the
/// handler converted by impl's parameter (an any_completion_handler of Signature). The
/// arguments are taken by value: with a deferred token they outlive the initiating call.
template <class Signature, class Token, class Impl, class... Args>
auto initiate_with_diagnostics(Token&& token, diagnostics* diag, Impl impl, Args&&... args) {
    return boost::asio::async_initiate<Token, Signature>(
        [impl](auto handler, diagnostics* diag, auto... args) mutable {
            diag = diagnostics_for(handler, diag);
            impl(std::move(args)..., diag, std::move(handler));
        },
        token, diag, std::forward<Args>(args)...);
}

}  // namespace redcoord::detail

namespace boost::asio {

template <template <class, class> class Associator, class Handler, class DefaultCandidate>
struct associator<Associator, redcoord::detail::with_diagnostics_handler<Handler>,
                  DefaultCandidate> : Associator<Handler, DefaultCandidate> {
    static typename Associator<Handler, DefaultCandidate>::type get(
        const redcoord::detail::with_diagnostics_handler<Handler>& h) noexcept {
        return Associator<Handler, DefaultCandidate>::get(h.get_inner());
    }
    static auto get(const redcoord::detail::with_diagnostics_handler<Handler>& h,
                    const DefaultCandidate& c) noexcept
        -> decltype(Associator<Handler, DefaultCandidate>::get(h.get_inner(), c)) {
        return Associator<Handler, DefaultCandidate>::get(h.get_inner(), c);
    }
};

}  // namespace boost::asio
