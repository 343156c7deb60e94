// The Lua scripts of src/lua, embedded at build time.
#pragma once

#include <span>
#include <string_view>

namespace redcoord::detail {

struct embedded_script {
    std::string_view name;    ///< file name without ".lua"
    std::string_view source;
};

std::span<const embedded_script> embedded_scripts() noexcept;

}  // namespace redcoord::detail
