// Runs a Lua script inside the library: EVALSHA, then on NOSCRIPT SCRIPT LOAD and EVALSHA again.
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

// One script call, and the one place that recovers from NOSCRIPT: the caller fills req with
// `EVALSHA <sha1> <numkeys> keys... args...` and adapter with where the reply goes, and keeps
// the call alive until done runs. On NOSCRIPT (a server that lost its script cache) the
// script is loaded and req sent again. done's cancellation slot, if it has one, reaches the
// sends. Without a coroutine frame, for hot paths (the lock batch, every other release);
// eval above and async_eval run on it too.
struct script_call {
    const script* sc = nullptr;
    request req;
    any_adapter adapter;
    diagnostics* diag = nullptr;
    // SCRIPT LOAD, when needed, and how it went: a script the server refuses to compile is
    // reported by that error, not by the NOSCRIPT of the call sent after it.
    request load;
    boost::system::error_code load_ec;
    diagnostics load_diag;
};

// Completion: void(error_code, std::size_t bytes) as connection::async_exec.
void run_script_call(
    connection& conn, script_call& call,
    boost::asio::any_completion_handler<void(boost::system::error_code, std::size_t)> done);

template <class Token>
auto async_script_call(connection& conn, script_call& call, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [&conn, &call](auto h) { run_script_call(conn, call, std::move(h)); }, token);
}

}  // namespace redcoord::detail
