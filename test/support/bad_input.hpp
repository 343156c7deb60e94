// Checks of how bad input is refused: the error, and a message that names what was wrong.
#pragma once

#include <redcoord/diagnostics.hpp>
#include <redcoord/error.hpp>

#include <catch2/catch.hpp>

#include <functional>
#include <string>
#include <vector>

namespace redcoord::test {

inline bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

// Checks that message names every one of parts (the key, the value, the limit, ...).
inline void check_names(const std::string& message, const std::vector<std::string>& parts) {
    INFO("message: " << message);
    for (const auto& part : parts) CHECK(contains(message, part));
}

// Checks that make() throws error_with_diagnostics (error::bad_config) whose message names
// option and every one of parts.
inline void check_bad_config(const std::function<void()>& make, const std::string& option,
                             const std::vector<std::string>& parts = {}) {
    try {
        make();
        FAIL("accepted a bad " << option);
    } catch (const redcoord::error_with_diagnostics& e) {
        CHECK(e.code() == redcoord::error::bad_config);
        check_names(e.get_diagnostics().message(), {option});
        check_names(e.get_diagnostics().message(), parts);
    }
}

}  // namespace redcoord::test
