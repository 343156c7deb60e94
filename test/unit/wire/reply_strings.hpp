// For the unit tests of the multiplexer and the state machines: a response that appends every
// reply of a request, converted to a string, in order (a reply of another type sets ec).
#pragma once

#include <redcoord/response.hpp>

#include <string>
#include <vector>

namespace redcoord::test {

inline void store_each(void* obj, std::size_t, redcoord::node_span reply,
                       boost::system::error_code& ec) {
    std::string s;
    std::size_t i = 0;
    redcoord::detail::convert_string(reply, i, s, ec);
    if (!ec) static_cast<std::vector<std::string>*>(obj)->push_back(std::move(s));
}

inline redcoord::detail::any_adapter each_reply(std::vector<std::string>& out) {
    return {&out, &store_each, redcoord::detail::any_adapter::npos, false};
}

}  // namespace redcoord::test
