// Runs the dashboard (dashboard.hpp) against one Redis deployment until SIGINT or SIGTERM:
//
//   redcoord_dashboard_host [--url URL] [--listen HOST:PORT] [--scheduler NAME] [--read-only]
//                           [--token TOKEN] [--prefix PREFIX] [--allow-remote]
//
// The connection string comes from --url, else REDIS_URL, else redis://127.0.0.1:6379. Once
// listening it prints "dashboard: http://HOST:PORT/" on stdout (scripts/dashboard and the
// browser tests wait for that line).
#include <redcoord/redcoord.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <cstdlib>
#include <iostream>
#include <string>

#include "dashboard.hpp"
#include <unistd.h>

namespace asio = boost::asio;

namespace {

int usage() {
    std::cerr << "usage: redcoord_dashboard_host [--url URL] [--listen HOST:PORT] "
                 "[--scheduler NAME] [--read-only] [--token TOKEN] [--prefix PREFIX] "
                 "[--allow-remote]\n";
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    redcoord::tools::dashboard_options opts;
    const char* env_url = std::getenv("REDIS_URL");
    std::string url = env_url ? env_url : "redis://127.0.0.1:6379";
    std::string prefix = "redcoord:";
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        const bool has_value = i + 1 < argc;
        if (arg == "--read-only") {
            opts.read_only = true;
        } else if (arg == "--allow-remote") {
            opts.allow_remote = true;
        } else if (arg == "--url" && has_value) {
            url = argv[++i];
        } else if (arg == "--listen" && has_value) {
            opts.listen = argv[++i];
        } else if (arg == "--scheduler" && has_value) {
            opts.scheduler = argv[++i];
        } else if (arg == "--token" && has_value) {
            opts.token = argv[++i];
        } else if (arg == "--prefix" && has_value) {
            prefix = argv[++i];
        } else {
            return usage();
        }
    }
    opts.url_shown = url;  // the dashboard removes any password from what it shows
    try {
        const redcoord::config cfg = redcoord::parse_config(url);
        asio::io_context ioc;
        redcoord::connection conn(ioc.get_executor());
        conn.async_run(cfg, asio::detached);
        redcoord::session_options so;
        so.prefix = prefix;
        so.node_id = "dashboard-" + std::to_string(::getpid());
        so.statistics_interval = {};  // it takes no locks worth counting (health probes only)
        redcoord::session s(conn, so);
        redcoord::tools::dashboard board(s, opts);
        const auto at = board.local_endpoint();
        std::cout << "dashboard: http://" << at.address().to_string() << ":" << at.port() << "/"
                  << std::endl;
        int code = 0;
        asio::signal_set signals(ioc, SIGINT, SIGTERM);
        signals.async_wait([&](boost::system::error_code ec, int) {
            if (!ec) board.stop();
        });
        board.async_run([&](boost::system::error_code ec) {
            if (ec && ec != asio::error::operation_aborted) {
                std::cerr << "redcoord_dashboard_host: " << ec.message() << "\n";
                code = 1;
            }
            signals.cancel();
            s.async_close([&](boost::system::error_code) { conn.cancel(); });
        });
        ioc.run();
        return code;
    } catch (const std::exception& e) {
        std::cerr << "redcoord_dashboard_host: " << e.what() << "\n";
        return 1;
    }
}
