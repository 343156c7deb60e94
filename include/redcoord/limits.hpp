// Bounds of what redcoord accepts.
#pragma once

#include <chrono>

namespace redcoord {

/// The longest duration redcoord accepts: every TTL, wait, timeout and interval, whether an
/// option (lock_options, session_options, ...) or an argument of an operation (a lease's TTL, a
/// wait), is at most this (3650 days, about 10 years). Longer is refused: an option with
/// error::bad_config, an argument with error::invalid_argument, the diagnostics naming the
/// field, the value and this maximum. Deadlines computed from such durations stay far inside
/// the clocks' range, so they never overflow.
inline constexpr std::chrono::milliseconds max_duration = std::chrono::hours(24 * 3650);

namespace detail {
/// The deadline `timeout` from now, for the operations that also take a deadline: a timeout
/// beyond max_duration means none (time_point::max()) instead of an overflow.
inline std::chrono::steady_clock::time_point deadline_in(std::chrono::milliseconds timeout) {
    return timeout > max_duration ? std::chrono::steady_clock::time_point::max()
                                  : std::chrono::steady_clock::now() + timeout;
}
}  // namespace detail

}  // namespace redcoord
