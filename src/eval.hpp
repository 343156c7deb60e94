// Runs a Lua script from a coroutine inside the library: EVALSHA, then EVAL on NOSCRIPT.
// With cancellable = false the script runs to its reply even when the caller is cancelled:
// for scripts whose effect the caller must know (a grant it would otherwise leak).
#pragma once

#include <redcoord/connection.hpp>
#include <redcoord/script.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
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

// A script call for hot paths, without a coroutine frame: the caller fills req with
// `EVALSHA <sha1> <numkeys> keys... args...` and adapter with where the reply goes, and keeps
// the call alive until done runs. On NOSCRIPT (a server that lost its script cache) the script
// is loaded and req sent again. Not cancellable: the reply is always awaited, so the caller
// always knows what the script did.
struct script_call {
    const script* sc = nullptr;
    request req;
    any_adapter adapter;
    diagnostics* diag = nullptr;

    // Used by run_script_call.
    any_adapter filter_inner;
    request load;
};

void run_script_call(connection& conn, script_call& call,
                     boost::asio::any_completion_handler<void(boost::system::error_code)> done);

template <class Token>
auto async_script_call(connection& conn, script_call& call, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
        [&conn, &call](auto h) { run_script_call(conn, call, std::move(h)); }, token);
}

}  // namespace redcoord::detail
