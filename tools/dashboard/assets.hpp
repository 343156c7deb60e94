// The dashboard's page and its assets, embedded at build time (cmake/embed_assets.cmake).
#pragma once

#include <span>
#include <string_view>

namespace redcoord::tools::detail {

struct asset {
    std::string_view path;  ///< "/index.html"
    std::string_view content_type;
    std::string_view body;
};

std::span<const asset> assets() noexcept;

}  // namespace redcoord::tools::detail
