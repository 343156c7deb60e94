// Typed responses: how replies become C++ values.
#pragma once

#include <redcoord/error.hpp>
#include <redcoord/resp3/node.hpp>

#include <boost/json/value.hpp>
#include <boost/system/error_code.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace redcoord {

/// Accepts and discards any number of replies (server errors are still reported).
struct ignore_t {
    friend bool operator==(ignore_t, ignore_t) = default;
};
inline constexpr ignore_t ignore{};

/// One C++ value per reply: response<std::string, long long, ignore_t>.
template <class... Ts>
using response = std::tuple<Ts...>;

/// Every reply of the request as owning RESP3 nodes in pre-order, errors included.
using generic_response = std::vector<resp3::node>;

using node_span = std::span<const resp3::node_view>;

/// Converts the RESP3 value at nodes[i] to T and advances i past it. Specialize it for your own
/// types; the library's own cover strings, integers, floating point, bool, std::optional,
/// sequences, sets, maps, pairs, tuples, boost::json::value, resp3::tree and ignore_t.
template <class T, class Enable = void>
struct converter;

namespace detail {

// Non-template conversions, compiled once in src/wire/adapt.cpp. Each reads the value at nodes[i]
// (attributes skipped), advances i past it, and sets ec on failure.
void skip_attributes(node_span nodes, std::size_t& i) noexcept;
void skip_value(node_span nodes, std::size_t& i) noexcept;
void convert_string(node_span nodes, std::size_t& i, std::string& out, boost::system::error_code& ec);
void convert_signed(node_span nodes, std::size_t& i, std::int64_t& out, boost::system::error_code& ec);
void convert_unsigned(node_span nodes, std::size_t& i, std::uint64_t& out, boost::system::error_code& ec);
void convert_double(node_span nodes, std::size_t& i, double& out, boost::system::error_code& ec);
void convert_bool(node_span nodes, std::size_t& i, bool& out, boost::system::error_code& ec);
void convert_json(node_span nodes, std::size_t& i, boost::json::value& out, boost::system::error_code& ec);

/// Opens the aggregate at nodes[i]: checks its type and returns its element count
/// (pairs for maps). `flat_pairs` accepts an even-sized array as a map (RESP2 style).
std::size_t open_aggregate(node_span nodes, std::size_t& i, bool want_map,
                           boost::system::error_code& ec);

/// True when the value at nodes[i] (after attributes) is null; skips it then.
bool take_null(node_span nodes, std::size_t& i) noexcept;

template <class T>
concept insertable_sequence = requires(T& c, typename T::value_type v) {
    c.push_back(std::move(v));
    c.clear();
};
template <class T>
concept insertable_set = requires(T& c, typename T::key_type k) {
    c.insert(std::move(k));
    typename T::key_type;
    requires std::same_as<typename T::key_type, typename T::value_type>;
};
template <class T>
concept insertable_map = requires(T& c, typename T::key_type k, typename T::mapped_type m) {
    c.insert_or_assign(std::move(k), std::move(m));
};

}  // namespace detail

template <>
struct converter<ignore_t> {
    static void apply(node_span n, std::size_t& i, ignore_t&, boost::system::error_code&) {
        detail::skip_value(n, i);
    }
};

template <>
struct converter<std::string> {
    static void apply(node_span n, std::size_t& i, std::string& out, boost::system::error_code& ec) {
        detail::convert_string(n, i, out, ec);
    }
};

template <class T>
struct converter<T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>>> {
    static void apply(node_span n, std::size_t& i, T& out, boost::system::error_code& ec) {
        if constexpr (std::is_signed_v<T>) {
            std::int64_t v = 0;
            detail::convert_signed(n, i, v, ec);
            if (!ec && !std::in_range<T>(v)) ec = error::not_a_number;
            if (!ec) out = static_cast<T>(v);
        } else {
            std::uint64_t v = 0;
            detail::convert_unsigned(n, i, v, ec);
            if (!ec && !std::in_range<T>(v)) ec = error::not_a_number;
            if (!ec) out = static_cast<T>(v);
        }
    }
};

template <class T>
struct converter<T, std::enable_if_t<std::is_floating_point_v<T>>> {
    static void apply(node_span n, std::size_t& i, T& out, boost::system::error_code& ec) {
        double v = 0;
        detail::convert_double(n, i, v, ec);
        if (!ec) out = static_cast<T>(v);
    }
};

template <>
struct converter<bool> {
    static void apply(node_span n, std::size_t& i, bool& out, boost::system::error_code& ec) {
        detail::convert_bool(n, i, out, ec);
    }
};

template <>
struct converter<boost::json::value> {
    static void apply(node_span n, std::size_t& i, boost::json::value& out,
                      boost::system::error_code& ec) {
        detail::convert_json(n, i, out, ec);
    }
};

template <>
struct converter<resp3::tree> {
    static void apply(node_span n, std::size_t& i, resp3::tree& out, boost::system::error_code&) {
        const std::size_t extent = resp3::value_extent(n.subspan(i));
        out = resp3::make_tree(n.subspan(i, extent));
        i += extent;
    }
};

template <class T>
struct converter<std::optional<T>> {
    static void apply(node_span n, std::size_t& i, std::optional<T>& out,
                      boost::system::error_code& ec) {
        if (detail::take_null(n, i)) {
            out.reset();
            return;
        }
        T v{};
        converter<T>::apply(n, i, v, ec);
        if (!ec) out = std::move(v);
    }
};

template <class A, class B>
struct converter<std::pair<A, B>> {
    static void apply(node_span n, std::size_t& i, std::pair<A, B>& out,
                      boost::system::error_code& ec) {
        const std::size_t size = detail::open_aggregate(n, i, false, ec);
        if (ec) return;
        if (size != 2) {
            ec = error::incompatible_size;
            return;
        }
        converter<A>::apply(n, i, out.first, ec);
        if (!ec) converter<B>::apply(n, i, out.second, ec);
    }
};

template <class... Ts>
struct converter<std::tuple<Ts...>> {
    static void apply(node_span n, std::size_t& i, std::tuple<Ts...>& out,
                      boost::system::error_code& ec) {
        const std::size_t size = detail::open_aggregate(n, i, false, ec);
        if (ec) return;
        if (size != sizeof...(Ts)) {
            ec = error::incompatible_size;
            return;
        }
        std::apply([&](auto&... e) { ((ec ? void() : converter<std::decay_t<decltype(e)>>::apply(n, i, e, ec)), ...); }, out);
    }
};

template <class C>
    requires(detail::insertable_sequence<C> && !std::is_same_v<C, std::string> &&
             !std::is_same_v<C, generic_response>)
struct converter<C> {
    static void apply(node_span n, std::size_t& i, C& out, boost::system::error_code& ec) {
        const std::size_t size = detail::open_aggregate(n, i, false, ec);
        out.clear();
        for (std::size_t k = 0; k < size && !ec; ++k) {
            typename C::value_type v{};
            converter<typename C::value_type>::apply(n, i, v, ec);
            out.push_back(std::move(v));
        }
    }
};

template <class C>
    requires detail::insertable_set<C>
struct converter<C> {
    static void apply(node_span n, std::size_t& i, C& out, boost::system::error_code& ec) {
        const std::size_t size = detail::open_aggregate(n, i, false, ec);
        out.clear();
        for (std::size_t k = 0; k < size && !ec; ++k) {
            typename C::key_type v{};
            converter<typename C::key_type>::apply(n, i, v, ec);
            out.insert(std::move(v));
        }
    }
};

template <class C>
    requires detail::insertable_map<C>
struct converter<C> {
    static void apply(node_span n, std::size_t& i, C& out, boost::system::error_code& ec) {
        const std::size_t size = detail::open_aggregate(n, i, true, ec);
        out.clear();
        for (std::size_t k = 0; k < size && !ec; ++k) {
            typename C::key_type key{};
            typename C::mapped_type value{};
            converter<typename C::key_type>::apply(n, i, key, ec);
            if (!ec) converter<typename C::mapped_type>::apply(n, i, value, ec);
            out.insert_or_assign(std::move(key), std::move(value));
        }
    }
};

/// Converts a whole reply (one message) to T; a reply with nodes left over is an error.
template <class T>
void from_resp3(node_span reply, T& out, boost::system::error_code& ec) {
    std::size_t i = 0;
    converter<T>::apply(reply, i, out, ec);
    if (!ec && i != reply.size()) ec = error::incompatible_size;
}

namespace detail {

/// What async_exec needs of a response, without knowing its type: a pointer to it and a
/// function that stores reply number `index`. Cheap to copy; never allocates.
class any_adapter {
public:
    using fn_type = void (*)(void*, std::size_t, node_span, boost::system::error_code&);

    any_adapter() = default;
    any_adapter(void* obj, fn_type fn, std::size_t expected, bool wants_errors)
        : obj_(obj), fn_(fn), expected_(expected), wants_errors_(wants_errors) {}

    void operator()(std::size_t index, node_span reply, boost::system::error_code& ec) const {
        if (fn_) fn_(obj_, index, reply, ec);
    }
    /// Number of replies the response holds; npos when it takes any number.
    std::size_t expected() const noexcept { return expected_; }
    /// generic_response stores error replies as nodes instead of skipping them.
    bool wants_errors() const noexcept { return wants_errors_; }

    static constexpr std::size_t npos = static_cast<std::size_t>(-1);

private:
    void* obj_ = nullptr;
    fn_type fn_ = nullptr;
    std::size_t expected_ = npos;
    bool wants_errors_ = false;
};

template <class... Ts>
void store_tuple(void* obj, std::size_t index, node_span reply, boost::system::error_code& ec) {
    auto& tup = *static_cast<std::tuple<Ts...>*>(obj);
    std::size_t k = 0;
    std::apply([&](auto&... e) { ((k++ == index ? from_resp3(reply, e, ec) : void()), ...); }, tup);
}

template <class T>
void store_single(void* obj, std::size_t, node_span reply, boost::system::error_code& ec) {
    from_resp3(reply, *static_cast<T*>(obj), ec);
}

inline void store_generic(void* obj, std::size_t, node_span reply, boost::system::error_code&) {
    auto& out = *static_cast<generic_response*>(obj);
    for (const auto& n : reply) out.emplace_back(n);
}

template <class Response>
any_adapter make_adapter(Response& resp) {
    if constexpr (std::is_same_v<std::remove_const_t<Response>, ignore_t>) {
        return {};
    } else if constexpr (std::is_same_v<Response, generic_response>) {
        return {&resp, &store_generic, any_adapter::npos, true};
    } else if constexpr (requires { std::tuple_size<Response>::value; } &&
                         !requires { typename Response::first_type; }) {
        return [&]<class... Ts>(std::tuple<Ts...>*) {
            return any_adapter{&resp, &store_tuple<Ts...>, sizeof...(Ts), false};
        }(static_cast<Response*>(nullptr));
    } else {
        return {&resp, &store_single<Response>, 1, false};
    }
}

}  // namespace detail
}  // namespace redcoord
