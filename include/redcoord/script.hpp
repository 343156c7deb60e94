// Lua scripts run with EVALSHA, loaded again (SCRIPT LOAD) when the server has lost them.
#pragma once

#include <redcoord/connection.hpp>
#include <redcoord/detail/with_diagnostics_handler.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace redcoord {

/// A Lua script and its SHA1. The library's own scripts live in src/lua/*.lua and are embedded
/// at build time; script::embedded("name") returns one of them.
class script {
public:
    explicit script(std::string source);

    const std::string& source() const noexcept { return source_; }
    /// Lower-case hex SHA1 of the source, as SCRIPT LOAD returns it.
    const std::string& sha1() const noexcept { return sha1_; }

    /// One of the embedded scripts, by file name without ".lua". Throws
    /// error_with_diagnostics (error::invalid_argument) naming the unknown script.
    static const script& embedded(std::string_view name);

private:
    std::string source_;
    std::string sha1_;
};

/// Runs a script: EVALSHA first; on NOSCRIPT (after SCRIPT FLUSH, a restart or a failover)
/// SCRIPT LOAD, which caches it again on the server, then the same EVALSHA again.
///
/// Completion signature: void(error_code, std::size_t), as connection::async_exec; resp holds
/// the script's reply. Cancellation: terminal, as the underlying async_exec.
/// Lifetimes: conn, s, resp and diag must outlive the operation; keys and args are copied.
template <class Response = ignore_t, class Token = boost::asio::deferred_t>
auto async_eval(connection& conn, const script& s, std::vector<std::string> keys,
                std::vector<std::string> args, Response& resp, diagnostics& diag,
                Token&& token = {});

namespace detail {
void eval_impl(connection& conn, const script& s, std::vector<std::string> keys,
               std::vector<std::string> args, any_adapter adapter, diagnostics* diag,
               boost::asio::any_completion_handler<void(boost::system::error_code, std::size_t)>
                   handler);
}  // namespace detail

template <class Response, class Token>
auto async_eval(connection& conn, const script& s, std::vector<std::string> keys,
                std::vector<std::string> args, Response& resp, diagnostics& diag, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [](auto handler, connection* conn, const script* s, std::vector<std::string> keys,
           std::vector<std::string> args, detail::any_adapter ad, diagnostics* diag) {
            diag = detail::diagnostics_for(handler, diag);
            detail::eval_impl(*conn, *s, std::move(keys), std::move(args), ad, diag,
                              std::move(handler));
        },
        token, &conn, &s, std::move(keys), std::move(args), detail::make_adapter(resp), &diag);
}

}  // namespace redcoord
