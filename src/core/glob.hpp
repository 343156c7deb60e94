// Redis glob patterns (SCAN MATCH, PSUBSCRIBE) built from literal text.
#pragma once

#include <string>
#include <string_view>

namespace redcoord::detail {

// Escapes the characters Redis's glob gives a meaning ("*?[]\"), so that text used in a
// pattern (a prefix, say) matches only itself.
std::string glob_escape(std::string_view text);

}  // namespace redcoord::detail
