// What the dashboard shows, read through the library's public API and written as JSON: nodes,
// leaders, held leases, lock contention, queues, jobs, recurring jobs and health. Each read
// throws boost::system::system_error (or error_with_diagnostics) when Redis cannot answer.
#pragma once

#include <redcoord/jobs.hpp>
#include <redcoord/leader.hpp>
#include <redcoord/lock_monitor.hpp>
#include <redcoord/membership.hpp>
#include <redcoord/session.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace redcoord::tools::detail {

/// Unix milliseconds (0 for the epoch: "not yet").
std::int64_t unix_ms(std::chrono::system_clock::time_point t) noexcept;

class views {
  public:
    views(session& s, const std::string& scheduler_name);

    session& get_session() const noexcept { return s_; }
    membership& members() noexcept { return members_; }
    scheduler& jobs() noexcept { return jobs_; }
    lock_monitor& monitor() noexcept { return monitor_; }

    /// [{"id", "alive", "last_heartbeat", "heartbeat_age_ms", "started_at", "pid", "host",
    /// "version"}], by id.
    boost::asio::awaitable<boost::json::array> nodes();
    /// Every held lease: [{"kind", "name", "node", "owner", "ttl_ms", "fencing_token",
    /// "acquired_at", "holds", "waiters"}].
    boost::asio::awaitable<boost::json::array> holders();
    /// [{"name", "kind", "acquisitions", "contended", "timeouts", "wait_mean_us", ...}].
    boost::asio::awaitable<boost::json::array> contention();
    /// The leaderships among `holders` (held_kind::leadership), as leaders: [{"name", "node",
    /// "owner", "term", "ttl_ms", "since"}].
    static boost::json::array leaders_of(const boost::json::array& holders);
    /// Queues found by SCAN: [{"name", "length", "consumers", "in_flight", "workers"}].
    boost::asio::awaitable<boost::json::array> queues();
    /// {"<state>": count} for every job state.
    boost::asio::awaitable<boost::json::object> job_counts();
    /// {"jobs": [...], "total", "offset", "count"}.
    boost::asio::awaitable<boost::json::object> job_list(job_state state, std::string function,
                                                         std::uint64_t offset, std::uint32_t count);
    /// A job with its history; nullopt when there is none.
    boost::asio::awaitable<std::optional<boost::json::object>> job(std::string id);
    /// [{"name", "cron", "time_zone", "function", "last_fired", "next"}].
    boost::asio::awaitable<boost::json::array> recurring();
    /// async_check_health's report (health_report::to_json).
    boost::asio::awaitable<boost::json::value> health();

    static boost::json::object to_json(const job_record& r, bool with_history);

  private:
    session& s_;
    membership members_;
    scheduler jobs_;
    lock_monitor monitor_;
};

}  // namespace redcoord::tools::detail
