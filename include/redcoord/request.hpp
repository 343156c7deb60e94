// A request: one or more commands serialized as RESP3, written to the server in one go.
#pragma once

#include <boost/system/error_code.hpp>

#include <charconv>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace redcoord {

/// How a pub/sub command changes the connection's subscriptions (kept to restore them).
struct subscription_change {
    enum class kind : std::uint8_t {
        subscribe, unsubscribe, psubscribe, punsubscribe, ssubscribe, sunsubscribe
    };
    kind what;
    std::vector<std::string> channels;  ///< empty for "unsubscribe from all"
    /// Replies the request's commands before this one have: where its confirmations (pushes,
    /// or one error when refused) come among the request's replies.
    std::size_t replies_before = 0;
};

namespace detail {

inline void append_bulk(std::string& out, std::string_view s) {
    char len[24];
    auto r = std::to_chars(len, len + sizeof len, s.size());
    out.push_back('$');
    out.append(len, r.ptr);
    out.append("\r\n", 2);
    out.append(s);
    out.append("\r\n", 2);
}

template <class T>
concept string_like = std::convertible_to<const T&, std::string_view>;

template <class T>
concept byte_span_like =
    std::ranges::contiguous_range<T> && std::ranges::sized_range<T> &&
    (std::same_as<std::ranges::range_value_t<T>, std::byte> ||
     std::same_as<std::ranges::range_value_t<T>, unsigned char> ||
     std::same_as<std::ranges::range_value_t<T>, std::uint8_t>);

template <class T>
concept pair_like = requires(const T& t) {
    t.first;
    t.second;
};

template <class T>
concept arg_range = std::ranges::range<T> && !string_like<T> && !byte_span_like<T>;

}  // namespace detail

class request;
namespace detail {
// Appends a command serialized by request::push (a Redis Cluster splitting a request per node).
void append_serialized(request& req, std::string_view command);
}

/// Serializes one argument as a RESP bulk string. Overload `to_bulk(std::string&, const T&)` in
/// your type's namespace to pass your own types as arguments.
inline void to_bulk(std::string& out, std::string_view s) { detail::append_bulk(out, s); }

template <class T>
    requires(std::integral<T> && !std::same_as<T, bool> && !std::same_as<T, char>)
void to_bulk(std::string& out, T v) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    detail::append_bulk(out, std::string_view(buf, r.ptr));
}

/// Doubles in the shortest form that reads back exactly; infinities as "inf"/"-inf", which is
/// what Redis accepts (e.g. ZADD, ZRANGEBYSCORE).
template <std::floating_point T>
void to_bulk(std::string& out, T v) {
    if (std::isinf(v)) return detail::append_bulk(out, v > 0 ? "inf" : "-inf");
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    detail::append_bulk(out, std::string_view(buf, r.ptr));
}

template <detail::byte_span_like T>
void to_bulk(std::string& out, const T& bytes) {
    detail::append_bulk(out, std::string_view(reinterpret_cast<const char*>(std::ranges::data(bytes)),
                                              std::ranges::size(bytes)));
}

/// One or more commands to send together. Arguments are binary safe: strings, string views,
/// integers, doubles, spans of bytes, and ranges of those (ranges of pairs, such as maps, are
/// flattened into key value key value ...).
///
/// A request may be executed many times and by several connections; it must outlive every
/// async_exec that uses it.
class request {
public:
    /// Per-request behaviour; unset fields take the connection's config.
    struct config {
        /// Deadline of this request; zero means none. Blocking commands and WAIT/WAITAOF get
        /// their own block time added to it.
        std::optional<std::chrono::milliseconds> timeout;
        /// Fail at once with error::not_connected while the connection is down.
        std::optional<bool> fail_fast;
        /// When the connection drops after this request was written, write it again after the
        /// reconnect instead of failing with error::connection_lost. Only for idempotent work.
        bool retry_on_connection_lost = false;
    };

    request() = default;
    explicit request(config cfg) : config_(std::move(cfg)) {}

    /// Appends a command: push("SET", "key", 42, "EX", 10).
    template <class... Args>
    void push(std::string_view command, const Args&... args) {
        const std::size_t start = payload_.size();
        const std::size_t count = 1 + (count_args(args) + ... + 0);
        begin_array(count);
        detail::append_bulk(payload_, command);
        (add_arg(args), ...);
        on_command_added(start);
    }

    /// Appends a command whose arguments are the elements of a range:
    /// push_range("RPUSH", "list", values) or push_range("HSET", "hash", std::map{...}).
    template <class Range>
    void push_range(std::string_view command, std::string_view key, const Range& range) {
        push(command, key, range);
    }
    template <class Range>
    void push_range(std::string_view command, const Range& range) {
        push(command, range);
    }

    /// Number of commands in the request.
    std::size_t commands() const noexcept { return commands_; }

    /// Number of replies the server sends back (SUBSCRIBE and friends send none: their
    /// confirmations arrive as pushes).
    std::size_t expected_responses() const noexcept { return expected_responses_; }

    /// The serialized commands.
    std::string_view payload() const noexcept { return payload_; }

    /// True when a command may block the server's reply waiting for data (BLPOP, BRPOP,
    /// BLMOVE, BZPOPMIN, XREAD BLOCK, ...): such requests run on a side connection so they
    /// never stall the shared one.
    bool has_blocking_command() const noexcept { return blocking_; }

    /// True when a command is WAIT or WAITAOF. They confirm the writes made before them on the
    /// same connection, so they stay on it (unless the request also has a blocking command)
    /// and hold up its pipeline until they reply: give them a timeout (WAIT 0 waits forever).
    bool has_wait_command() const noexcept { return waits_; }

    /// How long the blocking commands and WAIT/WAITAOF may block in all; nullopt when one
    /// blocks without limit.
    std::optional<std::chrono::milliseconds> blocking_time() const noexcept { return block_time_; }

    const std::vector<subscription_change>& subscription_changes() const noexcept {
        return subscriptions_;
    }

    config& get_config() noexcept { return config_; }
    const config& get_config() const noexcept { return config_; }

    void clear() noexcept;
    void reserve(std::size_t bytes) { payload_.reserve(bytes); }

private:
    friend void detail::append_serialized(request& req, std::string_view command);

    template <class T>
    static std::size_t count_args(const T& arg) {
        if constexpr (detail::arg_range<T>) {
            using value = std::ranges::range_value_t<T>;
            std::size_t n = 0;
            if constexpr (std::ranges::sized_range<T>)
                n = std::ranges::size(arg);
            else
                n = static_cast<std::size_t>(std::ranges::distance(arg));
            return detail::pair_like<value> ? 2 * n : n;
        } else {
            return 1;
        }
    }

    template <class T>
    void add_arg(const T& arg) {
        if constexpr (detail::arg_range<T>) {
            for (const auto& v : arg) {
                if constexpr (detail::pair_like<std::ranges::range_value_t<T>>) {
                    add_one(v.first);
                    add_one(v.second);
                } else {
                    add_one(v);
                }
            }
        } else {
            add_one(arg);
        }
    }

    template <class T>
    void add_one(const T& arg) {
        if constexpr (detail::string_like<T>)
            to_bulk(payload_, std::string_view(arg));
        else
            to_bulk(payload_, arg);
    }

    void begin_array(std::size_t count);
    void on_command_added(std::size_t start);

    std::string payload_;
    std::size_t commands_ = 0;
    std::size_t expected_responses_ = 0;
    bool blocking_ = false;
    bool waits_ = false;
    std::optional<std::chrono::milliseconds> block_time_{std::chrono::milliseconds(0)};
    std::vector<subscription_change> subscriptions_;
    config config_;
};

}  // namespace redcoord
