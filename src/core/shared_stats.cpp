#include "core/shared_stats.hpp"

#include "core/session_impl.hpp"

#include <boost/asio/post.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>

namespace redcoord::detail {

int wait_bucket(std::int64_t us) noexcept {
    if (us < 1) return 0;
    return 1 + static_cast<int>(std::floor(4.0 * std::log2(static_cast<double>(us))));
}

std::int64_t wait_bucket_bound(int bucket) noexcept {
    if (bucket <= 0) return 0;
    return static_cast<std::int64_t>(std::ceil(std::exp2(static_cast<double>(bucket) / 4.0)));
}

namespace {

std::int64_t number(const std::map<std::string, std::string>& f, const std::string& name) {
    auto it = f.find(name);
    if (it == f.end()) return 0;
    std::int64_t v = 0;
    std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
    return v;
}

}  // namespace

lock_statistics stats_from_hash(const std::map<std::string, std::string>& fields) {
    lock_statistics out;
    out.acquisitions = static_cast<std::uint64_t>(number(fields, "acquisitions"));
    out.contended_acquisitions = static_cast<std::uint64_t>(number(fields, "contended"));
    out.timeouts = static_cast<std::uint64_t>(number(fields, "timeouts"));
    out.leases_lost = static_cast<std::uint64_t>(number(fields, "lost"));
    out.renewals = static_cast<std::uint64_t>(number(fields, "renewals"));
    if (out.acquisitions == 0) return out;
    const auto max = std::max<std::int64_t>(number(fields, "wait_max_us"), 0);
    out.wait_max = std::chrono::microseconds(max);
    out.wait_mean = std::chrono::microseconds(number(fields, "wait_sum_us") /
                                              static_cast<std::int64_t>(out.acquisitions));
    std::map<int, std::int64_t> buckets;
    std::int64_t counted = 0;
    for (const auto& [name, value] : fields) {
        if (name.size() < 2 || name[0] != 'b') continue;
        int b = 0;
        auto [p, ec] = std::from_chars(name.data() + 1, name.data() + name.size(), b);
        if (ec != std::errc() || p != name.data() + name.size()) continue;
        const auto n = number(fields, name);
        buckets[b] += n;
        counted += n;
    }
    auto at = [&](double q) {
        const auto rank = static_cast<std::int64_t>(std::ceil(q * static_cast<double>(counted)));
        std::int64_t seen = 0;
        for (const auto& [b, n] : buckets) {
            seen += n;
            if (seen >= std::max<std::int64_t>(rank, 1))
                return std::chrono::microseconds(std::min(wait_bucket_bound(b), max));
        }
        return std::chrono::microseconds(max);
    };
    out.wait_p50 = at(0.50);
    out.wait_p99 = at(0.99);
    return out;
}

void stats_delta::add_wait(std::int64_t us, bool was_contended) {
    ++acquisitions;
    if (was_contended) ++contended;
    wait_sum_us += static_cast<std::uint64_t>(std::max<std::int64_t>(us, 0));
    wait_max_us = std::max(wait_max_us, us);
    ++buckets[wait_bucket(us)];
}

std::vector<std::string> stats_delta::args() const {
    std::vector<std::string> out{std::to_string(stats_ttl.count()), std::to_string(wait_max_us)};
    auto add = [&](std::string field, std::uint64_t n) {
        if (n == 0) return;
        out.push_back(std::move(field));
        out.push_back(std::to_string(n));
    };
    add("acquisitions", acquisitions);
    add("contended", contended);
    add("timeouts", timeouts);
    add("lost", lost);
    add("renewals", renewals);
    add("wait_sum_us", wait_sum_us);
    for (const auto& [b, n] : buckets) add("b" + std::to_string(b), n);
    return out;
}

bool shared_stats::on(const session_impl& s) const noexcept {
    return s.opts.statistics_interval.count() > 0 && !s.closed;
}

void shared_stats::acquired(session_impl& s, std::string_view main_key, std::int64_t wait_us,
                            bool contended) {
    if (!on(s)) return;
    total_.add_wait(wait_us, contended);
    auto it = per_lock_.find(std::string(main_key));
    if (it == per_lock_.end())
        it = per_lock_.emplace(std::string(main_key), stats_delta{}).first;
    it->second.add_wait(wait_us, contended);
    arm(s);
}

void shared_stats::timed_out(session_impl& s, std::string_view main_key) {
    if (!on(s)) return;
    ++total_.timeouts;
    ++per_lock_[std::string(main_key)].timeouts;
    arm(s);
}

void shared_stats::lost(session_impl& s) {
    if (!on(s)) return;
    ++total_.lost;
    arm(s);
}

void shared_stats::renewed(session_impl& s) {
    if (!on(s)) return;
    ++total_.renewals;
    arm(s);
}

// One report per interval, and only when something happened: the timer runs from the first
// event after a report.
void shared_stats::arm(session_impl& s) {
    if (armed_) return;
    armed_ = true;
    if (!timer_) timer_ = std::make_unique<boost::asio::steady_timer>(s.conn.get_executor());
    timer_->expires_after(s.opts.statistics_interval);
    timer_->async_wait([w = s.weak_from_this()](boost::system::error_code ec) {
        auto self = w.lock();
        if (!self) return;
        self->shared.armed_ = false;
        if (!ec) self->shared.report(*self);
    });
}

void shared_stats::stop(session_impl& s) {
    if (timer_) timer_->cancel();
    armed_ = false;
    report(s);
}

// One request: the script loaded, then one call per hash (the total and each lock seen).
// Statistics are best effort: a report that fails is not sent again.
void shared_stats::report(session_impl& s) {
    if (total_.empty() && per_lock_.empty()) return;
    static const script& add = script::embedded("stats_add");
    auto req = std::make_shared<request>();
    req->push("SCRIPT", "LOAD", add.source());
    auto call = [&](const std::string& key, const stats_delta& d) {
        const std::vector<std::string> keys{key};
        req->push("EVALSHA", add.sha1(), 1, keys, d.args());
    };
    if (!total_.empty()) call(s.keys.lock_statistics(), total_);
    for (const auto& [main_key, d] : per_lock_)
        if (!d.empty()) call(keyspace::companion(main_key, "stats"), d);
    total_ = stats_delta{};
    per_lock_.clear();
    s.conn.async_exec(*req, [req](boost::system::error_code, std::size_t) {});
}

}  // namespace redcoord::detail
