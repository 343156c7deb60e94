// Where a command goes on a Redis Cluster: the hash slot of its keys. A plain function set with
// no I/O, unit tested without a server.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace redcoord::detail {

inline constexpr std::size_t cluster_slots = 16384;

/// The cluster hash slot of a key: CRC16 (XMODEM) of the key, or of its hash tag (the text
/// between the first '{' and the next '}', when not empty), modulo 16384.
std::uint16_t hash_slot(std::string_view key) noexcept;

/// The arguments (the command name first) of one serialized command: a RESP array of bulk
/// strings, as request::push writes it.
std::vector<std::string_view> command_args(std::string_view serialized);

/// Splits a request's payload into its serialized commands, in order.
std::vector<std::string_view> split_commands(std::string_view payload);

/// Where one command must run.
struct command_route {
    enum class kind : std::uint8_t {
        any,         ///< no key: any master serves it (PING, TIME, SCRIPT LOAD, PUBLISH, ...)
        slot,        ///< its keys (or its sharded channel) are in `slot`
        cross_slot,  ///< its keys are in several slots: no node can run it
    };
    kind what = kind::any;
    std::uint16_t slot = 0;
    std::string first_key;     ///< the key that decided the slot (for messages)
    std::string other_key;     ///< cross_slot: a key in another slot
};

/// The route of a command given its arguments (the name first). Knows where the keys of
/// Redis's multi-key commands are (EVAL and EVALSHA's numkeys, MSET's pairs, XREAD's STREAMS,
/// ...); any other command's key is its first argument.
command_route route_of(const std::vector<std::string_view>& args);

/// Parses "MOVED 3999 127.0.0.1:6381" and "ASK 3999 127.0.0.1:6381".
struct redirection {
    enum class kind : std::uint8_t { none, moved, ask, try_again, cluster_down };
    kind what = kind::none;
    std::uint16_t slot = 0;
    std::string host;
    std::uint16_t port = 0;
};
redirection parse_redirection(std::string_view error_text);

}  // namespace redcoord::detail
