// HTTP requests to the library's and the tools' endpoints (status_server, the dashboard), one
// per fresh connection, with Beast.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace redcoord::test {

struct http_reply {
    int status = 0;
    std::string content_type, body;
};

using http_headers = std::vector<std::pair<std::string, std::string>>;

// One request on a fresh connection. `host` is the Host header; `headers` are extra ones; a
// POST sends `body` (JSON unless headers name another Content-Type).
inline boost::asio::awaitable<http_reply> http_call(boost::asio::ip::tcp::endpoint at,
                                                    boost::beast::http::verb verb,
                                                    std::string target, http_headers headers = {},
                                                    std::string host = "127.0.0.1",
                                                    std::string body = "{}") {
    namespace http = boost::beast::http;
    boost::beast::tcp_stream stream(co_await boost::asio::this_coro::executor);
    stream.expires_after(std::chrono::seconds(20));
    co_await stream.async_connect(at, boost::asio::use_awaitable);
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, host);
    if (verb == http::verb::post) {
        req.set(http::field::content_type, "application/json");
        req.body() = body;
    }
    for (const auto& [k, v] : headers) req.set(k, v);
    req.prepare_payload();
    co_await http::async_write(stream, req, boost::asio::use_awaitable);
    boost::beast::flat_buffer buffer;
    http::response<http::string_body> res;
    co_await http::async_read(stream, buffer, res, boost::asio::use_awaitable);
    http_reply out;
    out.status = res.result_int();
    out.content_type = std::string(res[http::field::content_type]);
    out.body = res.body();
    co_return out;
}

inline boost::asio::awaitable<http_reply> http_get(boost::asio::ip::tcp::endpoint at,
                                                   std::string target) {
    co_return co_await http_call(at, boost::beast::http::verb::get, std::move(target));
}

}  // namespace redcoord::test
