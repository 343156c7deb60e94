// What an exception_ptr holds, for the tests of operations that complete with one.
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <exception>
#include <string>

namespace redcoord::test {

// The error code of a boost::system::system_error (redcoord::error_with_diagnostics is one);
// success when ep is null or holds another exception.
inline boost::system::error_code code_of(std::exception_ptr ep) {
    if (!ep) return {};
    try {
        std::rethrow_exception(ep);
    } catch (const boost::system::system_error& e) {
        return e.code();
    } catch (...) {
        return {};
    }
}

// The what() of the std::exception ep holds, or "(no exception)" when ep is null.
inline std::string message_of(std::exception_ptr ep) {
    if (!ep) return "(no exception)";
    try {
        std::rethrow_exception(ep);
    } catch (const std::exception& e) {
        return e.what();
    }
}

}  // namespace redcoord::test
