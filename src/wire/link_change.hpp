// What happened to a connection's link, for its observers (connection_impl::watch_link).
#pragma once

#include <cstdint>

namespace redcoord::detail {

enum class link_change : std::uint8_t {
    up,        // connected (again)
    down,      // the link dropped
    retrying,  // an attempt to connect failed; another comes after the backoff
};

}  // namespace redcoord::detail
