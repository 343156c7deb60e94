// Lock statistics shared by the whole cluster: every session adds what it saw since its last
// report to hashes in Redis (session_options::statistics_interval), which the lock monitor
// reads (lock_monitor::async_cluster_statistics, async_contention).
//
// Keys: `<prefix>stats:{locks}` (every lock of the deployment) and `<prefix>lock:{<name>}:stats`
// (one lock), hashes with a sliding TTL (stats_ttl) and fields acquisitions, contended,
// timeouts, lost, renewals (the total only), wait_sum_us, wait_max_us, and the wait histogram
// b<bucket> (wait_bucket).
#pragma once

#include <redcoord/session.hpp>

#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace redcoord::detail {

class session_impl;

// How long a statistics hash lives after its last report (7 days).
inline constexpr std::chrono::milliseconds stats_ttl = std::chrono::hours(24 * 7);

// The histogram bucket of a wait: 0 for under 1 µs, else 1 + floor(4 log2(us)), four buckets
// per doubling (a value read back is at most 19% above the true one).
int wait_bucket(std::int64_t us) noexcept;
// The largest wait a bucket holds (its upper bound, µs).
std::int64_t wait_bucket_bound(int bucket) noexcept;

// lock_statistics from a statistics hash (field -> value): counts, the mean, the maximum, and
// p50/p99 as the upper bound of the bucket that holds them (never above the maximum).
lock_statistics stats_from_hash(const std::map<std::string, std::string>& fields);

// What one session saw of one key's statistics since its last report.
struct stats_delta {
    std::uint64_t acquisitions = 0, contended = 0, timeouts = 0, lost = 0, renewals = 0;
    std::uint64_t wait_sum_us = 0;
    std::int64_t wait_max_us = -1;
    std::map<int, std::uint64_t> buckets;

    void add_wait(std::int64_t us, bool was_contended);
    bool empty() const noexcept {
        return acquisitions == 0 && timeouts == 0 && lost == 0 && renewals == 0;
    }
    // ARGV of stats_add.lua: ttl, max, then field/increment pairs.
    std::vector<std::string> args() const;
};

class shared_stats {
public:
    // Reports are on (session_options::statistics_interval) and the session is open.
    bool on(const session_impl& s) const noexcept;
    // An acquisition of the resource at main_key (a lock's or leadership's), and its wait.
    void acquired(session_impl& s, std::string_view main_key, std::int64_t wait_us,
                  bool contended);
    void timed_out(session_impl& s, std::string_view main_key);
    void lost(session_impl& s);
    void renewed(session_impl& s);
    // The session closes: what is not reported yet is sent now.
    void stop(session_impl& s);

private:
    void arm(session_impl& s);
    void report(session_impl& s);
    stats_delta total_;
    std::unordered_map<std::string, stats_delta> per_lock_;  // by main key
    std::unique_ptr<boost::asio::steady_timer> timer_;
    bool armed_ = false;
};

}  // namespace redcoord::detail
