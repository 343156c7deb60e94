// What the subcommands of the `redcoord` inspector share: the global options, the context a
// command runs in, how it reports failures, and one registration function per file of
// subcommands (a new group, say `health`, is one more file and one more line in main.cpp).
#pragma once

#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include <CLI/CLI.hpp>

namespace redcoord::cli {

namespace asio = boost::asio;

inline constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

/// The options every subcommand takes (main.cpp).
struct global_options {
    std::string url;  ///< --url; empty: $REDIS_URL, else redis://127.0.0.1:6379
    std::string prefix = "redcoord:";
    bool json = false;
    std::string timeout = "5s";  ///< connect and request timeout
};

/// What a command runs with: one connection and one session on one io_context.
struct context {
    redcoord::connection& conn;
    redcoord::session& session;
    const global_options& opts;
};

/// A failure while a command runs (Redis said no, a job does not exist, ...): printed as
/// "redcoord: <message>", exit code 1.
struct failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// Bad input found once the command line was parsed (a bad URL, a refused action): printed as
/// "redcoord: <message>", exit code 2.
struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// Throws failure("<what>: <error>[: <diagnostics>]") unless ec is success.
void check(boost::system::error_code ec, std::string_view what, const diagnostics* diag = nullptr);

/// A command: runs on the context's executor and returns the exit code.
using action = std::function<asio::awaitable<int>(context&)>;

/// The command the command line chose, set by its CLI11 callback.
struct selection {
    action run;
    /// Runs until stopped (events tail): only connecting is bounded by --timeout.
    bool streaming = false;
};

/// Makes cmd, once chosen, run fn(context&, Options) with the options parsed into *o.
template <class Options, class Fn>
void when_chosen(CLI::App* cmd, selection& sel, std::shared_ptr<Options> o, Fn fn,
                 bool streaming = false) {
    cmd->callback([&sel, o, fn, streaming] {
        sel.run = [o, fn](context& c) { return fn(c, *o); };
        sel.streaming = streaming;
    });
}

/// Adds a group of subcommands (`jobs`, `events`): one of them must follow.
inline CLI::App* add_group(CLI::App& parent, std::string name, std::string description) {
    auto* group = parent.add_subcommand(std::move(name), std::move(description));
    group->require_subcommand(1);
    return group;
}

/// Adds subcommand `name` to parent, run as fn(context&, Options) with the options parsed into
/// *o when chosen; the caller adds the options to the subcommand returned.
template <class Options, class Fn>
CLI::App* add_command(CLI::App& parent, selection& sel, const std::shared_ptr<Options>& o,
                      std::string name, std::string description, Fn fn, bool streaming = false) {
    auto* cmd = parent.add_subcommand(std::move(name), std::move(description));
    when_chosen(cmd, sel, o, fn, streaming);
    return cmd;
}

/// The duration an option says ("5s", "500ms", "2m", or a bare number of milliseconds);
/// throws usage_error naming option when it is not one in (0, 1 day].
std::chrono::milliseconds duration_option(std::string_view option, const std::string& text);

/// One per file of subcommands: adds them to app; their callbacks set sel.
void add_nodes_commands(CLI::App& app, selection& sel, const global_options& g);
void add_locks_commands(CLI::App& app, selection& sel, const global_options& g);
void add_leaders_commands(CLI::App& app, selection& sel, const global_options& g);
void add_queues_commands(CLI::App& app, selection& sel, const global_options& g);
void add_jobs_commands(CLI::App& app, selection& sel, const global_options& g);
void add_events_commands(CLI::App& app, selection& sel, const global_options& g);
void add_health_commands(CLI::App& app, selection& sel, const global_options& g);
void add_dashboard_commands(CLI::App& app, selection& sel, const global_options& g);

/// Connects as g says, runs sel's command and closes; returns the exit code (runtime.cpp).
int run(const global_options& g, const selection& sel);

}  // namespace redcoord::cli
