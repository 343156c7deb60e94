// A completion handler that converts its arguments before calling the handler it wraps, and
// keeps that handler's associated executor, allocator and cancellation slot: lets a public
// template finish a typed result (a JSON value to a T) on top of a type-erased operation
// compiled in the library.
#pragma once

#include <boost/asio/associator.hpp>

#include <tuple>
#include <utility>

namespace redcoord::detail {

/// Calls std::apply(handler, convert(args...)): convert returns a tuple of the arguments of
/// the wrapped handler's completion signature.
template <class Handler, class Convert>
class converting_handler {
public:
    converting_handler(Handler handler, Convert convert)
        : handler_(std::move(handler)), convert_(std::move(convert)) {}

    template <class... Args>
    void operator()(Args&&... args) {
        std::apply(std::move(handler_), convert_(std::forward<Args>(args)...));
    }

    const Handler& get_inner() const noexcept { return handler_; }

private:
    Handler handler_;
    Convert convert_;
};

}  // namespace redcoord::detail

namespace boost::asio {

template <template <class, class> class Associator, class Handler, class Convert,
          class DefaultCandidate>
struct associator<Associator, redcoord::detail::converting_handler<Handler, Convert>,
                  DefaultCandidate> : Associator<Handler, DefaultCandidate> {
    static typename Associator<Handler, DefaultCandidate>::type get(
        const redcoord::detail::converting_handler<Handler, Convert>& h) noexcept {
        return Associator<Handler, DefaultCandidate>::get(h.get_inner());
    }
    static auto get(const redcoord::detail::converting_handler<Handler, Convert>& h,
                    const DefaultCandidate& c) noexcept
        -> decltype(Associator<Handler, DefaultCandidate>::get(h.get_inner(), c)) {
        return Associator<Handler, DefaultCandidate>::get(h.get_inner(), c);
    }
};

}  // namespace boost::asio
