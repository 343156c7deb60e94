// `redcoord health`: the coordination health check (health.hpp) from this command's own node:
// connection latency, a probe lock, the leaders, the server's memory policy and the nodes'
// clocks. Exit code 0 when healthy or degraded, 1 when unhealthy (for scripts and probes).
#include <boost/json/parse.hpp>

#include <iostream>
#include <memory>
#include <string>

#include "cli.hpp"
#include "output.hpp"

namespace redcoord::cli {

namespace {

struct health_command_options {
    std::string max_latency = "250ms";
    std::string max_clock_drift = "1s";
    bool leaders = true;
};

asio::awaitable<int> check_health(context& c, health_command_options o) {
    health_options ho;
    ho.max_latency = duration_option("--max-latency", o.max_latency);
    ho.max_clock_drift = duration_option("--max-clock-drift", o.max_clock_drift);
    ho.leaders = o.leaders;
    auto [ec, report] = co_await async_check_health(c.session, ho, nothrow);
    check(ec, "checking health");
    const int code = report.status == health_status::unhealthy ? 1 : 0;
    if (c.opts.json) {
        print_json(boost::json::parse(report.to_json()));
        co_return code;
    }
    table t({"CHECK", "STATUS", "WHAT WAS FOUND"});
    for (const auto& check : report.checks)
        t.add({check.name, std::string(to_string(check.status)), printable(check.description)});
    t.print(std::cout, "(no checks)");
    std::cout << "health: " << to_string(report.status) << "\n";
    co_return code;
}

}  // namespace

void add_health_commands(CLI::App& app, selection& sel, const global_options&) {
    auto o = std::make_shared<health_command_options>();
    auto* cmd = add_command(app, sel, o, "health",
                            "The coordination health check: latency, a probe lock, leaders, "
                            "memory policy, clock drift (exit 1 when unhealthy)",
                            check_health);
    cmd->add_option("--max-latency", o->max_latency, "A slower PING is degraded")
        ->capture_default_str();
    cmd->add_option("--max-clock-drift", o->max_clock_drift,
                    "A node clock further from the server's is degraded")
        ->capture_default_str();
    cmd->add_flag("!--no-leaders", o->leaders, "Do not list the leaderships (no SCAN)");
}

}  // namespace redcoord::cli
