// A trace sink for applications that log with spdlog (Debian's libspdlog-dev): coordination
// events go to their logger, at a level that fits each event. Header-only, so the library does
// not depend on spdlog; link spdlog::spdlog where this header is used.
#pragma once

#include <redcoord/trace.hpp>

#include <memory>
#include <utility>

#include <spdlog/logger.h>

namespace redcoord {

/// The level spdlog_sink logs an event at: warn for what loses or refuses something (a lease
/// or leadership lost, a timeout, a late renewal, a dead node, the connection down), debug
/// for the routine (renewals, heartbeats, wake-ups), info for the rest.
inline spdlog::level::level_enum spdlog_level(trace_kind k) noexcept {
    switch (k) {
        case trace_kind::lease_lost:
        case trace_kind::election_lost:
        case trace_kind::lock_timeout:
        case trace_kind::renewal_late:
        case trace_kind::node_dead:
        case trace_kind::connection_down:
        case trace_kind::connection_reconnecting:
            return spdlog::level::warn;
        case trace_kind::lease_renewed:
        case trace_kind::heartbeat:
        case trace_kind::waiter_woken:
            return spdlog::level::debug;
        default:
            return spdlog::level::info;
    }
}

/// A sink that logs each event to logger (format_line's text without its time stamp, which
/// spdlog adds; or format_json's object when json is true) at spdlog_level(kind). The logger's
/// own level filters as usual.
inline trace_sink spdlog_sink(std::shared_ptr<spdlog::logger> logger, bool json = false) {
    return [logger = std::move(logger), json](const trace_event& e) {
        const auto level = spdlog_level(e.kind);
        if (!logger->should_log(level)) return;
        if (json) {
            logger->log(level, "{}", format_json(e));
            return;
        }
        const std::string line = format_line(e);
        // format_line starts with the time stamp and a space.
        const auto space = line.find(' ');
        logger->log(level, "{}", space == std::string::npos ? line : line.substr(space + 1));
    };
}

}  // namespace redcoord
