// Short timeouts for the test suite's connections, in the tests and in the worker processes
// alike, so that failures show quickly.
#pragma once

#include <redcoord/config.hpp>

#include <chrono>

namespace redcoord::test {

inline redcoord::config with_short_timeouts(redcoord::config cfg) {
    using namespace std::chrono_literals;
    cfg.connect_timeout = 1s;
    cfg.request_timeout = 2s;
    cfg.health_check_interval = 200ms;
    cfg.reconnect_wait_min = 20ms;
    cfg.reconnect_wait_max = 200ms;
    return cfg;
}

}  // namespace redcoord::test
