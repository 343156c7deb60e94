// Helpers for the tests of leases (locks, read-write locks, semaphores): acquiring and releasing
// where that must succeed.
#pragma once

#include "connection_helpers.hpp"

#include <redcoord/redcoord.hpp>

#include <boost/asio/awaitable.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <utility>

namespace redcoord::test {

// Acquires the lock, which must succeed.
inline boost::asio::awaitable<redcoord::lease> must_acquire(redcoord::lock_provider& locks,
                                                            std::string name,
                                                            const redcoord::acquire_options& opts) {
    redcoord::diagnostics diag;
    auto [ec, l] = co_await locks.async_acquire(name, opts, diag, nothrow);
    require_ok(ec, diag);
    REQUIRE(l.is_held());
    co_return std::move(l);
}

// Releases the lease, which must succeed.
inline boost::asio::awaitable<void> must_release(redcoord::lease& l) {
    redcoord::diagnostics diag;
    auto [ec] = co_await l.async_release(diag, nothrow);
    require_ok(ec, diag);
}

}  // namespace redcoord::test
