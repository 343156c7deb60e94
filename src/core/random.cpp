#include "core/random.hpp"

#include <atomic>
#include <chrono>
#include <random>

#include <pthread.h>
#include <unistd.h>

namespace redcoord::detail {

namespace {

// Bumped in the child of every fork(): each thread's generator then seeds itself again.
std::atomic<std::uint64_t> fork_generation{0};

void on_fork_child() { fork_generation.fetch_add(1, std::memory_order_relaxed); }

}  // namespace

std::uint64_t random_u64() {
    static const bool registered = [] {
        ::pthread_atfork(nullptr, nullptr, &on_fork_child);
        return true;
    }();
    (void)registered;
    thread_local std::mt19937_64 rng;
    thread_local std::uint64_t seeded_for = ~std::uint64_t{0};
    const auto generation = fork_generation.load(std::memory_order_relaxed);
    if (seeded_for != generation) {
        seeded_for = generation;
        std::random_device device;
        const auto now = static_cast<std::uint64_t>(
            std::chrono::steady_clock::now().time_since_epoch().count());
        std::seed_seq seed{device(), device(), device(), device(),
                           static_cast<unsigned>(::getpid()), static_cast<unsigned>(now),
                           static_cast<unsigned>(now >> 32)};
        rng.seed(seed);
    }
    return rng();
}

void append_random_hex(std::string& out, int words) {
    static constexpr char hex[] = "0123456789abcdef";
    for (int w = 0; w < words; ++w) {
        auto v = random_u64();
        for (int i = 0; i < 16; ++i, v >>= 4) out.push_back(hex[v & 0xf]);
    }
}

}  // namespace redcoord::detail
