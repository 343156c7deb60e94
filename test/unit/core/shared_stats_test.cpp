// The histogram and the reading of the cluster-wide lock statistics (core/shared_stats), with
// no server.
#include "core/shared_stats.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <map>
#include <string>

namespace {

using redcoord::detail::stats_delta;
using redcoord::detail::stats_from_hash;
using redcoord::detail::wait_bucket;
using redcoord::detail::wait_bucket_bound;

TEST_CASE("shared stats: a wait lies within its bucket's bound, at most 19% below it",
          "[unit][stats]") {
    for (std::int64_t us : {1LL, 2LL, 3LL, 7LL, 100LL, 1000LL, 123456LL, 9999999LL,
                            315360000000000LL}) {
        const auto b = wait_bucket(us);
        const auto bound = wait_bucket_bound(b);
        INFO("wait " << us << " us, bucket " << b << ", bound " << bound);
        CHECK(bound >= us);
        CHECK(static_cast<double>(bound) <= static_cast<double>(us) * 1.19 + 1);
        // The bucket below ends where this one starts: at or under the wait.
        CHECK(wait_bucket_bound(b - 1) <= us);
    }
    CHECK(wait_bucket(0) == 0);
    CHECK(wait_bucket(-5) == 0);
    CHECK(wait_bucket_bound(0) == 0);
}

// The hash stats_add.lua would build from these deltas.
std::map<std::string, std::string> summed(std::initializer_list<stats_delta> deltas) {
    std::map<std::string, std::string> out;
    std::int64_t max = -1;
    for (const auto& d : deltas) {
        const auto args = d.args();
        max = std::max<std::int64_t>(max, std::stoll(args[1]));
        for (std::size_t i = 2; i + 1 < args.size(); i += 2) {
            auto& v = out[args[i]];
            v = std::to_string((v.empty() ? 0 : std::stoll(v)) + std::stoll(args[i + 1]));
        }
    }
    if (max >= 0) out["wait_max_us"] = std::to_string(max);
    return out;
}

TEST_CASE("shared stats: counts add up, the mean is exact, p50 and p99 are bucket bounds never "
          "above the maximum",
          "[unit][stats]") {
    stats_delta a, b;
    for (int i = 0; i < 98; ++i) a.add_wait(100, false);  // 98 fast
    b.add_wait(50'000, true);                             // 2 slow
    b.add_wait(80'000, true);
    ++b.timeouts;
    ++a.lost;
    a.renewals = 7;
    const auto st = stats_from_hash(summed({a, b}));
    CHECK(st.acquisitions == 100);
    CHECK(st.contended_acquisitions == 2);
    CHECK(st.timeouts == 1);
    CHECK(st.leases_lost == 1);
    CHECK(st.renewals == 7);
    CHECK(st.wait_mean.count() == (98 * 100 + 50'000 + 80'000) / 100);
    CHECK(st.wait_max.count() == 80'000);
    CHECK(st.wait_p50.count() >= 100);
    CHECK(st.wait_p50.count() <= 119);
    CHECK(st.wait_p99.count() >= 50'000);
    CHECK(st.wait_p99.count() <= 80'000);

    // Nothing reported: all zero.
    const auto none = stats_from_hash({});
    CHECK(none.acquisitions == 0);
    CHECK(none.wait_p99.count() == 0);
    CHECK(stats_delta{}.empty());
    CHECK_FALSE(b.empty());
}

}  // namespace
