// `redcoord dashboard`: serves the live web dashboard (tools/dashboard) of the deployment
// until Ctrl-C or SIGTERM.
#include "dashboard.hpp"

#include <boost/asio/signal_set.hpp>
#include <boost/asio/this_coro.hpp>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "cli.hpp"

namespace redcoord::cli {

namespace {

asio::awaitable<int> serve(context& c, tools::dashboard_options o) {
    // The URL connected to is shown on the page (without its password).
    const char* env = std::getenv("REDIS_URL");
    o.url_shown = !c.opts.url.empty() ? c.opts.url : env && *env ? env : "redis://127.0.0.1:6379";
    std::optional<tools::dashboard> board;
    try {
        board.emplace(c.session, o);
    } catch (const error_with_diagnostics& e) {
        if (e.code() == error::bad_config) throw usage_error(e.get_diagnostics().message());
        throw failure("listening on " + o.listen + ": " + e.what());
    } catch (const boost::system::system_error& e) {
        throw failure("listening on " + o.listen + ": " + e.code().message());
    }
    const auto at = board->local_endpoint();
    std::cout << "dashboard: http://" << at.address().to_string() << ":" << at.port() << "/"
              << std::endl;
    std::cerr << "redcoord: serving the dashboard" << (o.read_only ? " (read-only)" : "")
              << " (Ctrl-C stops)" << std::endl;
    asio::signal_set signals(co_await asio::this_coro::executor, SIGINT, SIGTERM);
    signals.async_wait([&](boost::system::error_code ec, int) {
        if (!ec) board->stop();
    });
    auto [ec] = co_await board->async_run(nothrow);
    signals.cancel();
    if (ec != asio::error::operation_aborted) check(ec, "serving the dashboard");
    co_return 0;
}

}  // namespace

void add_dashboard_commands(CLI::App& app, selection& sel, const global_options&) {
    auto o = std::make_shared<tools::dashboard_options>();
    auto* cmd = add_command(app, sel, o, "dashboard",
                            "Serves the live web dashboard until Ctrl-C (loopback only unless "
                            "--allow-remote)",
                            serve, true);
    cmd->add_option("--listen", o->listen, "host:port to listen on (port 0: any free port)")
        ->capture_default_str();
    cmd->add_option("--scheduler", o->scheduler, "The job scheduler shown")->capture_default_str();
    cmd->add_flag("--read-only", o->read_only, "Refuse every action (force release, cancel, ...)");
    cmd->add_option("--token", o->token,
                    "Actions need this token (Authorization: Bearer <token>); reading does not");
    cmd->add_flag("--allow-remote", o->allow_remote,
                  "Listen on a non-loopback address (the dashboard has no login: use --token "
                  "and --read-only)");
}

}  // namespace redcoord::cli
