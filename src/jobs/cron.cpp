// Cron expressions: each field parsed into a bit set, then a search for the next local wall
// time that matches, mapped to real instants through the zone's offsets (date/tz.h on the OS
// tz database).
#include <redcoord/cron.hpp>
#include <redcoord/diagnostics.hpp>
#include <redcoord/error.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <exception>
#include <fstream>
#include <iterator>
#include <vector>

#include <date/tz.h>
// ptz.h names hh_mm_ss unqualified under `using namespace date; using namespace std::chrono;`,
// which C++20's std::chrono::hh_mm_ss makes ambiguous; a declaration in Posix is found first.
namespace Posix {
using date::hh_mm_ss;
}
#include <date/ptz.h>

namespace redcoord {

using boost::system::error_code;
using date::local_seconds;
using date::sys_seconds;
using std::chrono::seconds;

namespace {

constexpr std::array<const char*, 12> month_names = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                                     "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
constexpr std::array<const char*, 7> day_names = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

// One field's grammar: its values, and its names (names[i] is the value min + i).
struct field_spec {
    const char* name;
    int min;
    int max;
    const char* const* names = nullptr;
    std::size_t name_count = 0;
    const char* names_hint = "";  // how the names read in an error message
    bool question_mark = false;   // '?' allowed (as '*')
};

constexpr field_spec second_field{"second", 0, 59};
constexpr field_spec minute_field{"minute", 0, 59};
constexpr field_spec hour_field{"hour", 0, 23};
constexpr field_spec dom_field{"day-of-month", 1, 31, nullptr, 0, "", true};
constexpr field_spec month_field{
    "month", 1, 12, month_names.data(), month_names.size(), " or a month name (JAN-DEC)"};
constexpr field_spec dow_field{
    "day-of-week", 0, 7, day_names.data(), day_names.size(), " or a day name (SUN-SAT)", true};

struct macro {
    const char* name;
    const char* expansion;
};
constexpr std::array<macro, 7> macros = {{
    {"@yearly", "0 0 1 1 *"},
    {"@annually", "0 0 1 1 *"},
    {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"},
    {"@daily", "0 0 * * *"},
    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
}};

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::toupper(static_cast<unsigned char>(x)) ==
                      std::toupper(static_cast<unsigned char>(y));
           });
}

std::string quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

bool parse_number(std::string_view s, int& out) {
    if (s.empty() || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return false;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    if (r.ec != std::errc()) out = 1'000'000;  // too large: reported as out of range
    return true;
}

// A value of the field, by number or by name. On failure, err says why.
bool parse_value(std::string_view s, const field_spec& f, int& out, std::string& err) {
    if (parse_number(s, out)) {
        if (out < f.min || out > f.max) {
            err = std::string(s) + " is out of range " + std::to_string(f.min) + "-" +
                  std::to_string(f.max);
            return false;
        }
        return true;
    }
    for (std::size_t i = 0; i < f.name_count; ++i) {
        if (iequals(s, f.names[i])) {
            out = f.min + static_cast<int>(i);
            return true;
        }
    }
    err = quoted(s) + " is not a number" + f.names_hint;
    return false;
}

// One list element: `*`, `?`, `a`, `a-b`, each optionally followed by `/step`.
bool parse_element(std::string_view e, const field_spec& f, std::uint64_t& bits, std::string& err) {
    std::string_view base = e;
    int step = 1;
    bool stepped = false;
    if (const auto slash = e.find('/'); slash != std::string_view::npos) {
        base = e.substr(0, slash);
        const auto step_text = e.substr(slash + 1);
        if (!parse_number(step_text, step)) {
            err = "step " + quoted(step_text) + " in " + quoted(e) + " is not a number";
            return false;
        }
        if (step < 1) {
            err = "step 0 in " + quoted(e) + ": a step must be at least 1";
            return false;
        }
        stepped = true;
    }
    int lo = f.min;
    int hi = f.max;
    if (base == "?" && !f.question_mark) {
        err = "\"?\" is allowed only in the day-of-month and day-of-week fields";
        return false;
    }
    if (base.empty()) {
        err = "no value before the step in " + quoted(e);
        return false;
    }
    if (base != "*" && base != "?") {
        if (const auto dash = base.find('-'); dash != std::string_view::npos) {
            if (!parse_value(base.substr(0, dash), f, lo, err) ||
                !parse_value(base.substr(dash + 1), f, hi, err))
                return false;
            if (lo > hi) {
                err = "reversed range " + quoted(base) + " (" + std::to_string(lo) + " > " +
                      std::to_string(hi) + ")";
                return false;
            }
        } else {
            if (!parse_value(base, f, lo, err)) return false;
            hi = stepped ? f.max : lo;  // `a/n` runs to the field's maximum
        }
    }
    for (int v = lo; v <= hi; v += step) bits |= std::uint64_t(1) << v;
    return true;
}

bool parse_field(std::string_view text, const field_spec& f, std::uint64_t& bits,
                 std::string& err) {
    bits = 0;
    std::size_t pos = 0;
    while (true) {
        const auto comma = text.find(',', pos);
        const auto e = text.substr(pos, comma == std::string_view::npos ? comma : comma - pos);
        if (e.empty()) {
            err = "empty list element in " + quoted(text);
            return false;
        }
        if (!parse_element(e, f, bits, err)) return false;
        if (comma == std::string_view::npos) break;
        pos = comma + 1;
    }
    return true;
}

std::vector<std::string_view> split_fields(std::string_view s) {
    std::vector<std::string_view> out;
    std::size_t i = 0;
    while (i < s.size()) {
        if (s[i] == ' ' || s[i] == '\t') {
            ++i;
            continue;
        }
        const auto end = s.find_first_of(" \t", i);
        const auto n = end == std::string_view::npos ? s.size() - i : end - i;
        out.push_back(s.substr(i, n));
        i += n;
    }
    return out;
}

// The first set bit at or above from, or -1.
int next_bit(std::uint64_t bits, int from) {
    const std::uint64_t rest = bits & (~std::uint64_t(0) << from);
    return rest ? std::countr_zero(rest) : -1;
}

bool has_bit(std::uint64_t bits, unsigned v) { return (bits >> v) & 1; }

// The POSIX TZ rule at the end of a TZif file (version 2 and later): how the zone goes on
// after the file's last transition. date/tz.h ignores it, so a zone would otherwise keep its
// last offset forever after 2037.
std::optional<Posix::time_zone> read_footer_rule(const std::string& zone_name) {
    std::ifstream in("/usr/share/zoneinfo/" + zone_name, std::ios::binary);
    if (!in) return std::nullopt;
    const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (data.size() < 6 || data.compare(0, 4, "TZif") != 0 || data[4] < '2' || data.back() != '\n')
        return std::nullopt;
    const auto start = data.rfind('\n', data.size() - 2);
    if (start == std::string::npos) return std::nullopt;
    const std::string rule = data.substr(start + 1, data.size() - start - 2);
    if (rule.empty()) return std::nullopt;
    try {
        return Posix::time_zone(rule);
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

}  // namespace

struct cron_schedule::impl {
    std::string expression;
    std::string zone_name;
    bool seconds_field = false;
    std::uint64_t second = 0, minute = 0, hour = 0, dom = 0, month = 0, dow = 0;
    bool dom_restricted = false;
    bool dow_restricted = false;
    bool every_hour = false;
    const date::time_zone* zone = nullptr;
    std::optional<Posix::time_zone> footer;

    // The fields of expression, or false with err naming the field.
    bool parse_fields(std::string_view text, std::string& err);
    bool day_matches(const date::year_month_day& ymd) const;
    std::optional<local_seconds> first_match(local_seconds from, local_seconds until) const;
    date::sys_info zone_info(sys_seconds s) const;
    std::optional<sys_seconds> next_after(sys_seconds from, sys_seconds limit) const;
};

bool cron_schedule::impl::parse_fields(std::string_view text, std::string& err) {
    auto fields = split_fields(text);
    if (fields.size() == 1 && fields[0].starts_with('@')) {
        const auto m = std::find_if(macros.begin(), macros.end(),
                                    [&](const macro& m) { return iequals(m.name, fields[0]); });
        if (m == macros.end()) {
            err = "unknown macro " + quoted(fields[0]) +
                  " (known: @yearly @annually @monthly @weekly @daily @midnight @hourly)";
            return false;
        }
        fields = split_fields(m->expansion);
    }
    if (fields.size() != 5 && fields.size() != 6) {
        err = "expected 5 or 6 fields, got " + std::to_string(fields.size());
        return false;
    }
    seconds_field = fields.size() == 6;
    const std::size_t first = seconds_field ? 1 : 0;
    if (seconds_field) {
        if (!parse_field(fields[0], second_field, second, err)) {
            err = "second field: " + err;
            return false;
        }
    } else {
        second = 1;
    }
    const std::array<std::pair<const field_spec*, std::uint64_t*>, 5> rest = {{
        {&minute_field, &minute},
        {&hour_field, &hour},
        {&dom_field, &dom},
        {&month_field, &month},
        {&dow_field, &dow},
    }};
    for (std::size_t i = 0; i < rest.size(); ++i) {
        if (!parse_field(fields[first + i], *rest[i].first, *rest[i].second, err)) {
            err = std::string(rest[i].first->name) + " field: " + err;
            return false;
        }
    }
    if (has_bit(dow, 7)) dow = (dow & ~(std::uint64_t(1) << 7)) | 1;  // 7 is Sunday
    const auto unrestricted = [](std::string_view f) { return f == "*" || f == "?"; };
    dom_restricted = !unrestricted(fields[first + 2]);
    dow_restricted = !unrestricted(fields[first + 4]);
    every_hour = hour == (std::uint64_t(1) << 24) - 1;
    return true;
}

bool cron_schedule::impl::day_matches(const date::year_month_day& ymd) const {
    const bool by_dom = has_bit(dom, unsigned(ymd.day()));
    const bool by_dow = has_bit(dow, date::weekday(date::sys_days(ymd)).c_encoding());
    if (dom_restricted && dow_restricted) return by_dom || by_dow;
    if (dom_restricted) return by_dom;
    if (dow_restricted) return by_dow;
    return true;
}

// The earliest local time in [from, until) that the fields match: each step moves to the next
// value of the first field (from the month down) that does not match.
std::optional<local_seconds> cron_schedule::impl::first_match(local_seconds from,
                                                              local_seconds until) const {
    using std::chrono::hours;
    using std::chrono::minutes;
    auto t = from;
    while (t < until) {
        const auto day = date::floor<date::days>(t);
        const date::year_month_day ymd{day};
        if (!has_bit(month, unsigned(ymd.month()))) {
            const auto next = date::year_month(ymd.year(), ymd.month()) + date::months(1);
            t = date::local_days(next / 1);
            continue;
        }
        if (!day_matches(ymd)) {
            t = day + date::days(1);
            continue;
        }
        const auto tod = (t - day).count();
        const int h = static_cast<int>(tod / 3600);
        const int m = static_cast<int>(tod / 60 % 60);
        const int s = static_cast<int>(tod % 60);
        const int nh = next_bit(hour, h);
        if (nh != h) {
            t = nh < 0 ? day + date::days(1) : day + hours(nh);
            continue;
        }
        const int nm = next_bit(minute, m);
        if (nm != m) {
            t = nm < 0 ? day + hours(h + 1) : day + hours(h) + minutes(nm);
            continue;
        }
        const int ns = next_bit(second, s);
        if (ns != s) {
            t = ns < 0 ? day + hours(h) + minutes(m + 1)
                       : day + hours(h) + minutes(m) + seconds(ns);
            continue;
        }
        return t;
    }
    return std::nullopt;
}

date::sys_info cron_schedule::impl::zone_info(sys_seconds s) const {
    auto info = zone->get_info(s);
    // An interval that never ends: s is past the zone file's last transition.
    const sys_seconds far_future = date::sys_days(date::year(3000) / 1 / 1);
    if (footer && info.end > far_future && s >= info.begin) {
        const auto begin = info.begin;
        info = footer->get_info(s);
        info.begin = std::max(info.begin, begin);
    }
    return info;
}

// Walks the zone's intervals of constant offset. Inside one, local time is real time plus the
// offset, so the first local match is the first occurrence; between two, a gap fires at its
// end when it holds a match.
std::optional<sys_seconds> cron_schedule::impl::next_after(sys_seconds from,
                                                           sys_seconds limit) const {
    const auto to_local = [](sys_seconds s, seconds offset) {
        return local_seconds((s + offset).time_since_epoch());
    };
    auto u = from;
    while (u < limit) {
        const auto info = zone_info(u);
        const auto end = std::min(info.end, limit);
        auto start = to_local(u, info.offset);
        // Just after clocks went back: local times the previous interval already passed
        // through fire again only when the hour field is every hour.
        if (!every_hour && u - info.begin < std::chrono::hours(24)) {
            const auto before = zone_info(info.begin - seconds(1));
            if (before.offset > info.offset)
                start = std::max(start, to_local(info.begin, before.offset));
        }
        if (const auto m = first_match(start, to_local(end, info.offset)))
            return sys_seconds((*m - info.offset).time_since_epoch());
        if (end >= limit) break;
        const auto after = zone_info(end);
        if (after.offset > info.offset &&
            first_match(to_local(end, info.offset), to_local(end, after.offset)))
            return end;
        u = end;
    }
    return std::nullopt;
}

std::optional<cron_schedule> cron_schedule::parse(std::string_view expression,
                                                  std::string_view time_zone, error_code& ec,
                                                  diagnostics& diag) {
    ec.clear();
    diag.clear();
    const auto fail = [&](const std::string& why) {
        ec = error::invalid_argument;
        diag.set_client_message("cron expression " + quoted(expression) + ": " + why);
        return std::nullopt;
    };
    auto p = std::make_shared<impl>();
    p->expression.assign(expression);
    p->zone_name.assign(time_zone);
    std::string err;
    if (!p->parse_fields(expression, err)) return fail(err);
    try {
        p->zone = date::locate_zone(p->zone_name);
    } catch (const std::exception& e) {
        // date/tz.h says "<name> not found in timezone database"; anything else (no database
        // at all, say) is worth passing on.
        const std::string_view what = e.what();
        const bool plain = what.ends_with("not found in timezone database");
        return fail("unknown time zone " + quoted(time_zone) +
                    (plain ? "" : " (" + std::string(what) + ")"));
    }
    p->footer = read_footer_rule(p->zone->name());
    return cron_schedule(std::shared_ptr<const impl>(std::move(p)));
}

cron_schedule::cron_schedule(std::string_view expression, std::string_view time_zone) {
    error_code ec;
    diagnostics diag;
    auto s = parse(expression, time_zone, ec, diag);
    if (!s) throw error_with_diagnostics(ec, diag);
    impl_ = std::move(s->impl_);
}

std::optional<cron_schedule::time_point> cron_schedule::next_after(time_point t) const {
    const sys_seconds from = std::chrono::floor<seconds>(t) + seconds(1);
    // 30 years, and no further than time_point can hold.
    const sys_seconds last = std::chrono::floor<seconds>(time_point::max());
    const auto horizon = std::chrono::duration_cast<seconds>(std::chrono::years(30));
    const sys_seconds limit = from < last - horizon ? from + horizon : last;
    if (const auto r = impl_->next_after(from, limit)) return time_point(*r);
    return std::nullopt;
}

std::optional<cron_schedule::time_point> cron_schedule::last_at_or_before(
    time_point t, time_point not_before) const {
    std::optional<time_point> last;
    for (auto n = next_after(not_before); n && *n <= t; n = next_after(*n)) last = n;
    return last;
}

const std::string& cron_schedule::expression() const noexcept { return impl_->expression; }
const std::string& cron_schedule::time_zone() const noexcept { return impl_->zone_name; }
bool cron_schedule::has_seconds() const noexcept { return impl_->seconds_field; }

}  // namespace redcoord
