// Cron expressions evaluated in an IANA time zone: when a scheduled job fires next.
#pragma once

#include <redcoord/diagnostics.hpp>
#include <redcoord/error.hpp>

#include <boost/system/error_code.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace redcoord {

/// A parsed cron expression evaluated in one IANA time zone.
///
/// Syntax: 5 fields `minute hour day-of-month month day-of-week` (the second is 0), or 6
/// fields with `second` first, separated by spaces or tabs. Ranges: second and minute 0-59,
/// hour 0-23, day-of-month 1-31, month 1-12 or JAN-DEC, day-of-week 0-7 or SUN-SAT (0 and 7
/// are Sunday); names are case-insensitive. Each field is a comma-separated list of
/// - `*` (every value), and `?` (the same, in day-of-month and day-of-week only);
/// - a value `a`, or a range `a-b` (a <= b);
/// - a step `*/n`, `a-b/n` or `a/n` (from a to the field's maximum), n >= 1.
/// The macros `@yearly` (= `@annually`, "0 0 1 1 *"), `@monthly` ("0 0 1 * *"), `@weekly`
/// ("0 0 * * 0"), `@daily` (= `@midnight`, "0 0 * * *") and `@hourly` ("0 * * * *") stand
/// for the whole expression. Anything else (`L`, `W`, `#`, empty fields, another number of
/// fields) is refused.
///
/// Day-of-month and day-of-week combine as in Vixie cron: when both are restricted (neither
/// is exactly `*` or `?`), a day matches when either matches ("0 0 13 * 5": every 13th and
/// every Friday); otherwise only the restricted one counts. Unlike Vixie cron, a step such as
/// `*/2` is a restriction.
///
/// The fields match the zone's local wall time. Daylight saving time:
/// - gap (clocks jump forward, local times that do not exist): every occurrence whose local
///   time falls in the gap fires once, at the instant the gap ends (America/New_York,
///   2026-03-08: "30 2 * * *" fires at 03:00 EDT = 07:00 UTC). Several occurrences in one gap,
///   and an occurrence at the gap's end, make one firing;
/// - overlap (clocks go back, local times that happen twice): when the hour field matches
///   every hour (`*`, `*/1`, `0-23`), an occurrence fires in both passes, so "*/15 * * * *"
///   keeps firing every 15 minutes of real time; otherwise it fires once, in the first pass
///   (the earlier instant).
///
/// The time zone database is the operating system's (/usr/share/zoneinfo, Debian's tzdata).
/// Beyond the zone file's last listed transition (2037 for most zones) the rule in the file's
/// footer is applied, when it has one.
///
/// Occurrences are whole seconds. A schedule is immutable: copies are cheap (they share the
/// parsed form) and one can be used from several threads at once.
class cron_schedule {
public:
    using time_point = std::chrono::system_clock::time_point;

    /// Parses expression for time_zone (an IANA name such as "Europe/Berlin"). Throws
    /// error_with_diagnostics (error::invalid_argument) whose message names the bad field and
    /// its text (`cron expression "61 0 * * *": minute field: 61 is out of range 0-59`) or the
    /// unknown time zone.
    explicit cron_schedule(std::string_view expression, std::string_view time_zone = "UTC");

    /// As the constructor, without throwing: nullopt with ec = error::invalid_argument and the
    /// message in diag (client_message()).
    static std::optional<cron_schedule> parse(std::string_view expression,
                                              std::string_view time_zone,
                                              boost::system::error_code& ec, diagnostics& diag);

    /// The first occurrence strictly after t (also when t has a fraction of a second); nullopt
    /// when there is none in the 30 years after t ("0 0 30 2 *"). It jumps field by field:
    /// cheap enough to call at every firing.
    std::optional<time_point> next_after(time_point t) const;

    /// The last occurrence in (not_before, t], nullopt when there is none (or t <= not_before):
    /// for misfire handling, what should have fired while nothing ran. It walks next_after from
    /// not_before, one step per occurrence: the caller bounds the range.
    std::optional<time_point> last_at_or_before(time_point t, time_point not_before) const;

    /// The expression as given.
    const std::string& expression() const noexcept;
    /// The time zone's name as given.
    const std::string& time_zone() const noexcept;
    /// True for the 6-field form (with a second field).
    bool has_seconds() const noexcept;

private:
    struct impl;
    explicit cron_schedule(std::shared_ptr<const impl> p) noexcept : impl_(std::move(p)) {}
    std::shared_ptr<const impl> impl_;
};

}  // namespace redcoord
