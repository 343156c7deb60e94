// The value of a held lock or leadership, as lock_ops.lua writes it (a string with the
// lease's TTL):
//   <#owner> ':' <owner> ' ' <holds> ' ' <watchdog 0/1> ' ' <since, Unix ms> ' ' <waiters 0/1/2>
//   ' ' <session> ' ' <node>
// The owner is length-prefixed, so it may hold any byte and no owner's head is a prefix of
// another's (waiters: an attempt found it held, so the release publishes; 2 when the attempt
// came from another session). The session is the writing session's random id (hex): it tells
// two processes apart when they share a node id. The holder's fencing
// token is not in it: it is the resource's fencing counter (the companion key "fence"), which
// only a grant increments.
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
    std::string session;
    std::string node;
};

// Appends the value a grant stores, with one hold and no waiter.
inline void append_lock_value(std::string& out, std::string_view owner, bool watchdog,
                              std::int64_t since_ms, std::string_view session,
                              std::string_view node) {
    out.append(std::to_string(owner.size())).append(1, ':').append(owner);
    out.append(watchdog ? " 1 1 " : " 1 0 ").append(std::to_string(since_ms));
    out.append(" 0 ").append(session).append(1, ' ').append(node);
}

// nullopt when v is not such a value (a key written by something else).
inline std::optional<lock_value> parse_lock_value(std::string_view v) {
    const char* p = v.data();
    const char* end = v.data() + v.size();
    std::size_t owner_size = 0;
    auto [colon, lec] = std::from_chars(p, end, owner_size);
    if (lec != std::errc() || colon == p || colon == end || *colon != ':' || owner_size == 0 ||
        owner_size >= static_cast<std::size_t>(end - colon - 1) || colon[1 + owner_size] != ' ')
        return std::nullopt;
    lock_value out;
    out.owner = std::string(colon + 1, owner_size);
    p = colon + 1 + owner_size + 1;
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
    out.waiters = waiters != 0;
    const std::string_view rest(p, static_cast<std::size_t>(end - p));
    const auto space = rest.find(' ');
    if (space == 0 || space == std::string_view::npos) return std::nullopt;
    out.session = std::string(rest.substr(0, space));
    out.node = std::string(rest.substr(space + 1));
    return out;
}

}  // namespace redcoord::detail
