// redcoord: the command-line inspector of a redcoord deployment (docs/cli.md). Parses the
// command line (CLI11), then connects and runs the chosen subcommand (runtime.cpp).
#include <iostream>
#include <string>

#include "cli.hpp"

namespace {

// The parse error in words; an argument nobody took is named as the unknown command it
// usually is, with the commands the group has.
std::string usage_message(CLI::App& app, const CLI::ParseError& e) {
    CLI::App* group = &app;
    for (auto subs = group->get_subcommands(); !subs.empty(); subs = group->get_subcommands())
        group = subs.front();
    const auto extra = app.remaining(true);
    const bool unknown = dynamic_cast<const CLI::RequiredError*>(&e) != nullptr ||
                         dynamic_cast<const CLI::ExtrasError*>(&e) != nullptr;
    if (!unknown || extra.empty() || extra.front().starts_with("-")) return e.what();
    std::string commands;
    for (const auto* sub : group->get_subcommands({}))
        commands += (commands.empty() ? "" : ", ") + sub->get_name();
    std::string where = group == &app ? "" : group->get_name() + ": ";
    if (commands.empty()) return where + "unexpected argument '" + extra.front() + "'";
    return where + "unknown command '" + extra.front() + "' (expected one of: " + commands + ")";
}

}  // namespace

int main(int argc, char** argv) {
    namespace cli = redcoord::cli;
    CLI::App app{
        "Inspects the coordination state a redcoord deployment keeps in Redis (nodes, locks, "
        "leaders, queues, jobs, events) and acts on it.",
        "redcoord"};
    app.require_subcommand(1);
    // Global options may also come after the subcommand.
    app.fallthrough();

    cli::global_options g;
    app.add_option("--url", g.url,
                   "Redis to connect to, in any form redcoord reads: redis://, rediss://, "
                   "redis+cluster://, unix:// URLs, or the comma form "
                   "(host:port,password=...,serviceName=... for Sentinel). Default: $REDIS_URL, "
                   "else redis://127.0.0.1:6379");
    app.add_option("--prefix", g.prefix, "Key prefix of the deployment")->capture_default_str();
    app.add_flag("--json", g.json, "Print one JSON document instead of tables");
    app.add_option("--timeout", g.timeout,
                   "Connect and request timeout (500ms, 5s, 1m; a bare number is milliseconds)")
        ->capture_default_str();

    cli::selection sel;
    cli::add_nodes_commands(app, sel, g);
    cli::add_locks_commands(app, sel, g);
    cli::add_leaders_commands(app, sel, g);
    cli::add_queues_commands(app, sel, g);
    cli::add_jobs_commands(app, sel, g);
    cli::add_events_commands(app, sel, g);
    cli::add_health_commands(app, sel, g);
    cli::add_dashboard_commands(app, sel, g);

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::cerr << "redcoord: " << usage_message(app, e)
                  << "\nRun 'redcoord --help' for the commands.\n";
        return 2;
    }
    if (!sel.run) {  // a group named without one of its subcommands
        std::cerr << "redcoord: no command given\nRun 'redcoord --help' for the commands.\n";
        return 2;
    }
    return cli::run(g, sel);
}
