// The bridge between the typed public templates of the data primitives (cache, idempotency,
// checkpoints, circuit breaker) and their type-erased implementations compiled in the library:
// user values become boost::json::value on the way in and come back through value_to.
#pragma once

#include <redcoord/diagnostics.hpp>
#include <redcoord/error.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>
#include <boost/json/value_to.hpp>

#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

namespace redcoord::detail {

/// Marks "deduce the value type from the callable" in templates like async_once<T = deduce_t>.
struct deduce_t {};

template <class A>
struct awaitable_value;
template <class T, class Executor>
struct awaitable_value<boost::asio::awaitable<T, Executor>> {
    using type = T;
};

/// The T of the awaitable<T> that Fn returns, or Explicit when the caller named one.
template <class Explicit, class Fn>
using value_type_of = std::conditional_t<
    std::is_same_v<Explicit, deduce_t>,
    typename awaitable_value<std::decay_t<std::invoke_result_t<Fn&>>>::type, Explicit>;

/// A callable producing a JSON value, the type-erased form of a user's factory.
using json_factory = std::function<boost::asio::awaitable<boost::json::value>()>;

/// Wraps fn (returning awaitable<U>, U convertible to T) as a json_factory: the result goes
/// through boost::json::value_from (void: null). fn may be move-only; it is called on the
/// library's side at most once per operation.
template <class T, class Fn>
json_factory make_json_factory(Fn fn) {
    auto p = std::make_shared<Fn>(std::move(fn));
    return [p]() -> boost::asio::awaitable<boost::json::value> {
        if constexpr (std::is_void_v<T>) {
            co_await (*p)();
            co_return boost::json::value(nullptr);
        } else {
            T v = co_await (*p)();
            boost::json::value out = boost::json::value_from(v);
            co_return out;
        }
    };
}

/// value_to<T>; false (and out untouched) when the JSON does not convert.
template <class T>
bool json_value_to(const boost::json::value& v, T& out) noexcept {
    try {
        out = boost::json::value_to<T>(v);
        return true;
    } catch (const std::exception&) {
        return false;
    }
}

/// Converts the (error_code, JSON) completion of a library read to (error_code, optional<T>):
/// JSON that does not convert becomes error::decode_failed, and diag (when given) names the
/// `kind` and `name` read ("cache 'k': ..."). The message is built only then.
template <class T>
std::tuple<boost::system::error_code, std::optional<T>> convert_stored(
    boost::system::error_code ec, const std::optional<boost::json::value>& jv, diagnostics* diag,
    std::string_view kind, std::string_view name) {
    std::optional<T> out;
    if (!ec && jv && !json_value_to(*jv, out.emplace())) {
        out.reset();
        ec = error::decode_failed;
        if (diag)
            diag->set_client_message(std::string(kind) + " '" + std::string(name) +
                                     "': the stored value does not convert to the requested type");
    }
    return {ec, std::move(out)};
}

/// Converts the (exception_ptr, JSON) completion of a library operation to (exception_ptr, T):
/// a value that does not convert becomes error_with_diagnostics (error::decode_failed) naming
/// `what`. For T = void: (exception_ptr).
template <class T>
struct json_result_converter {
    std::string what;
    auto operator()(std::exception_ptr ep, boost::json::value v) const {
        if constexpr (std::is_void_v<T>) {
            return std::tuple<std::exception_ptr>(ep);
        } else {
            T out{};
            if (!ep && !json_value_to(v, out)) {
                diagnostics diag;
                diag.set_client_message(what + ": the stored value does not convert to the "
                                               "requested type");
                ep = std::make_exception_ptr(error_with_diagnostics(error::decode_failed, diag));
            }
            return std::tuple<std::exception_ptr, T>(ep, std::move(out));
        }
    }
};

/// The completion signature of an operation that yields a T or an exception.
template <class T>
struct exception_signature {
    using type = void(std::exception_ptr, T);
};
template <>
struct exception_signature<void> {
    using type = void(std::exception_ptr);
};

}  // namespace redcoord::detail
