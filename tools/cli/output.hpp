// Output of the inspector: aligned tables for people, one JSON document (--json) for programs,
// and the formats of times and durations they share.
#pragma once

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

namespace redcoord::cli {

/// Columns aligned on the widest cell, two spaces apart, headers in capitals. Cells are shown
/// with control and non-ASCII bytes escaped (\xNN), so that any name keeps the table aligned
/// and cannot drive the terminal.
class table {
  public:
    explicit table(std::vector<std::string> headers);
    void add(std::vector<std::string> row);
    bool empty() const noexcept { return rows_.empty(); }
    /// Prints the table, or `none` when it has no rows.
    void print(std::ostream& out, std::string_view none = "(none)") const;

  private:
    std::vector<std::string> headers_;
    std::vector<std::vector<std::string>> rows_;
};

/// Text with control and non-ASCII bytes as \xNN (and '\\' as "\\\\").
std::string printable(std::string_view text);

/// A JSON array of to_json(item) for each item.
template <class Range, class F>
boost::json::array json_list(const Range& items, F to_json) {
    boost::json::array out;
    for (const auto& item : items) out.push_back(to_json(item));
    return out;
}

/// Writes v to stdout as one JSON document and a newline.
void print_json(const boost::json::value& v);

/// Unix milliseconds of t (0 for the epoch: "not set").
std::int64_t unix_ms(std::chrono::system_clock::time_point t);

/// "2026-12-04T20:30:00.123Z" (UTC), or "-" for the epoch.
std::string format_time(std::chrono::system_clock::time_point t);

/// "250ms", "1.5s", "3m12s", "2h05m", "3d04h"; "-" for a negative duration (none).
std::string format_duration(std::chrono::milliseconds d);

}  // namespace redcoord::cli
