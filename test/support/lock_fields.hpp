// The fields of a held lock or leadership as Redis stores them (lock_ops.lua), split for
// tests that look at the key itself:
//   <#owner> ':' <owner> ' ' <holds> ' ' <watchdog 0/1> ' ' <since, Unix ms> ' ' <waiters 0/1/2>
//   ' ' <session> ' ' <node>
// (written out here rather than taken from the library, so a library bug cannot hide here).
#pragma once

#include <string>

namespace redcoord::test {

struct lock_fields {
    std::string owner, holds, watchdog, since, waiters, session, node;
};

// Empty fields when value is not such a value.
inline lock_fields split_lock_value(const std::string& value) {
    lock_fields f;
    const auto colon = value.find(':');
    if (colon == std::string::npos || colon == 0 || colon > 9 ||
        value.find_first_not_of("0123456789") != colon)
        return f;
    const auto size = std::stoul(value.substr(0, colon));
    if (colon + 1 + size >= value.size() || value[colon + 1 + size] != ' ') return f;
    f.owner = value.substr(colon + 1, size);
    std::string* parts[] = {&f.holds, &f.watchdog, &f.since, &f.waiters, &f.session};
    auto pos = colon + 1 + size + 1;
    for (auto* part : parts) {
        const auto space = value.find(' ', pos);
        if (space == std::string::npos) return lock_fields{};
        *part = value.substr(pos, space - pos);
        pos = space + 1;
    }
    f.node = value.substr(pos);
    return f;
}

}  // namespace redcoord::test
