// The fields of a held lock or leadership as Redis stores them (lock_ops.lua), split for
// tests that look at the key itself:
//   <owner> '\n' <holds> ' ' <watchdog 0/1> ' ' <since, Unix ms> ' ' <waiters 0/1> ' ' <node>
#pragma once

#include <string>

namespace redcoord::test {

struct lock_fields {
    std::string owner, holds, watchdog, since, waiters, node;
};

// Empty fields when value is not such a value.
inline lock_fields split_lock_value(const std::string& value) {
    lock_fields f;
    const auto nl = value.find('\n');
    if (nl == std::string::npos) return f;
    f.owner = value.substr(0, nl);
    std::string* parts[] = {&f.holds, &f.watchdog, &f.since, &f.waiters};
    auto pos = nl + 1;
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
