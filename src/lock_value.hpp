// The value of a held lock or leadership, as lock_ops.lua writes it (a string with the
// lease's TTL):
//   <owner> '\n' <holds> ' ' <watchdog 0/1> ' ' <since, Unix ms> ' ' <waiters 0/1> ' ' <node>
// (waiters: an attempt found it held, so the release publishes).
// The holder's fencing token is not in it: it is the resource's fencing counter (the companion
// key "fence"), which only a grant increments.
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace redcoord::detail {

struct lock_value {
    std::string owner;
    std::int64_t holds = 0;
    bool watchdog = false;
    std::int64_t since_ms = 0;
    bool waiters = false;
    std::string node;
};

// nullopt when v is not such a value (a key written by something else).
inline std::optional<lock_value> parse_lock_value(std::string_view v) {
    const auto nl = v.find('\n');
    if (nl == std::string_view::npos || nl == 0) return std::nullopt;
    lock_value out;
    out.owner = std::string(v.substr(0, nl));
    const char* p = v.data() + nl + 1;
    const char* end = v.data() + v.size();
    auto number = [&](std::int64_t& n) {
        auto [q, ec] = std::from_chars(p, end, n);
        if (ec != std::errc() || q == end || *q != ' ') return false;
        p = q + 1;
        return true;
    };
    std::int64_t wd = 0, waiters = 0;
    if (!number(out.holds) || !number(wd) || !number(out.since_ms) || !number(waiters))
        return std::nullopt;
    out.watchdog = wd == 1;
    out.waiters = waiters == 1;
    out.node = std::string(p, end);
    return out;
}

}  // namespace redcoord::detail
