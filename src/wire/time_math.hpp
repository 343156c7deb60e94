// Durations from the API and from Redis, and the deadlines computed from them: bounds
// (max_duration) and arithmetic that saturates at the ends of its type instead of overflowing.
// A PTTL that another client wrote, or a TTL near the limit, must not turn a deadline into one
// in the past (a lease lost at once, a waiter that spins).
#pragma once

#include <redcoord/limits.hpp>

#include <chrono>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

namespace redcoord::detail {

// a + b, clamped to the range of milliseconds.
inline std::chrono::milliseconds sat_add(std::chrono::milliseconds a,
                                         std::chrono::milliseconds b) noexcept {
    std::int64_t out = 0;
    if (!__builtin_add_overflow(a.count(), b.count(), &out)) return std::chrono::milliseconds(out);
    return b.count() > 0 ? std::chrono::milliseconds::max() : std::chrono::milliseconds::min();
}

// d * n, clamped to the range of milliseconds.
inline std::chrono::milliseconds sat_mul(std::chrono::milliseconds d, std::int64_t n) noexcept {
    std::int64_t out = 0;
    if (!__builtin_mul_overflow(d.count(), n, &out)) return std::chrono::milliseconds(out);
    return (d.count() < 0) != (n < 0) ? std::chrono::milliseconds::min()
                                      : std::chrono::milliseconds::max();
}

// d in the finer (or equal) unit To, clamped to To's range.
template <class To, class Rep, class Period>
To sat_cast(std::chrono::duration<Rep, Period> d) noexcept {
    using from = std::chrono::duration<Rep, Period>;
    static_assert(std::ratio_less_equal_v<typename To::period, Period>,
                  "sat_cast converts to a unit at least as fine");
    constexpr auto hi = std::chrono::duration_cast<from>(To::max());
    constexpr auto lo = std::chrono::duration_cast<from>(To::min());
    if (d >= hi) return To::max();
    if (d <= lo) return To::min();
    return std::chrono::duration_cast<To>(d);
}

// t + d, clamped to the clock's range (time_point::max() stands for "never").
template <class Clock, class Dur, class Rep, class Period>
std::chrono::time_point<Clock, Dur> sat_add(std::chrono::time_point<Clock, Dur> t,
                                            std::chrono::duration<Rep, Period> d) noexcept {
    using tp = std::chrono::time_point<Clock, Dur>;
    const auto step = sat_cast<Dur>(d);
    typename Dur::rep out = 0;
    if (!__builtin_add_overflow(t.time_since_epoch().count(), step.count(), &out))
        return tp(Dur(out));
    return step.count() > 0 ? tp::max() : tp::min();
}

// A duration of `ms` milliseconds as Redis reports it (a PTTL, a wait), at most max_duration.
inline std::chrono::milliseconds bounded_ms(std::int64_t ms) noexcept {
    return std::chrono::milliseconds(ms) < max_duration ? std::chrono::milliseconds(ms)
                                                        : max_duration;
}

// What is wrong with d as a duration the API takes, or empty when nothing is: it must be in
// [0, max_duration] (zero_ok) or in [1 ms, max_duration]. Reads "-5 ms is negative",
// "0 ms is not positive" or "... ms exceeds max_duration (315360000000 ms, 3650 days)".
inline std::string duration_problem(std::chrono::milliseconds d, bool zero_ok) {
    const auto ms = std::to_string(d.count()) + " ms";
    if (d.count() < 0 || (d.count() == 0 && !zero_ok))
        return ms + (zero_ok ? " is negative" : " is not positive");
    if (d > max_duration)
        return ms + " exceeds max_duration (" + std::to_string(max_duration.count()) +
               " ms, " + std::to_string(std::chrono::duration_cast<std::chrono::hours>(
                                            max_duration)
                                            .count() /
                                        24) +
               " days)";
    return {};
}

}  // namespace redcoord::detail
