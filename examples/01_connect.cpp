// Tutorial 1: connect, run a few commands, and read typed replies.
//
// The connection string comes from REDIS_URL (default redis://127.0.0.1:6379). One connection
// carries every request of the process; async_run keeps it up while the coroutine works.
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdlib>
#include <iostream>

namespace asio = boost::asio;
using asio::use_awaitable;

asio::awaitable<void> tutorial(redcoord::connection& conn) {
    // Commands are queued together and written in one go; each reply has its C++ type.
    redcoord::request req;
    req.push("SET", "redcoord:example:greeting", "hello from redcoord", "EX", 60);
    req.push("INCR", "redcoord:example:visits");
    req.push("GET", "redcoord:example:greeting");
    redcoord::response<redcoord::ignore_t, long long, std::string> resp;
    co_await conn.async_exec(req, resp, use_awaitable);

    std::cout << "greeting: " << std::get<2>(resp) << "\n"
              << "visits:   " << std::get<1>(resp) << "\n";

    // Server errors carry the server's words.
    redcoord::request bad;
    bad.push("INCR", "redcoord:example:greeting");  // not an integer
    redcoord::diagnostics diag;
    auto [ec, n] = co_await conn.async_exec(bad, redcoord::ignore, diag,
                                            asio::as_tuple(use_awaitable));
    std::cout << "error:    " << ec.message() << " (" << diag.server_message() << ")\n";
    conn.cancel();
}

int main() {
    const char* url = std::getenv("REDIS_URL");
    try {
        const redcoord::config cfg = redcoord::parse_config(url ? url : "redis://127.0.0.1:6379");
        asio::io_context ioc;
        redcoord::connection conn(ioc.get_executor());
        conn.async_run(cfg, [&](boost::system::error_code ec) {
            if (ec && ec != asio::error::operation_aborted)
                std::cerr << "connection: " << ec.message() << " "
                          << conn.run_diagnostics().message() << "\n";
        });
        asio::co_spawn(ioc, tutorial(conn), [](std::exception_ptr ep) {
            if (ep) std::rethrow_exception(ep);
        });
        ioc.run();
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "01_connect: " << e.what() << "\n";
        return 1;
    }
}
