// Runs a Lua script from a coroutine inside the library: EVALSHA, then EVAL on NOSCRIPT.
// With cancellable = false the script runs to its reply even when the caller is cancelled:
// for scripts whose effect the caller must know (a grant it would otherwise leak).
#pragma once

#include <redcoord/connection.hpp>
#include <redcoord/script.hpp>

#include <boost/asio/awaitable.hpp>

#include <string>
#include <utility>
#include <vector>

namespace redcoord::detail {

boost::asio::awaitable<std::pair<boost::system::error_code, std::size_t>> eval_erased(
    connection& conn, const script& s, const std::vector<std::string>& keys,
    const std::vector<std::string>& args, any_adapter adapter, diagnostics& diag,
    request::config cfg, bool cancellable = true);

template <class Response>
boost::asio::awaitable<std::pair<boost::system::error_code, std::size_t>> eval(
    connection& conn, const script& s, const std::vector<std::string>& keys,
    const std::vector<std::string>& args, Response& resp, diagnostics& diag,
    request::config cfg = {}, bool cancellable = true) {
    return eval_erased(conn, s, keys, args, make_adapter(resp), diag, std::move(cfg),
                       cancellable);
}

}  // namespace redcoord::detail
