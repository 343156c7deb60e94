// `redcoord nodes`: the membership's nodes, alive or dead, with their heartbeat's age.
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <iostream>
#include <memory>
#include <optional>
#include <tuple>
#include <vector>

#include "cli.hpp"
#include "output.hpp"

namespace redcoord::cli {

namespace {

namespace json = boost::json;
using std::chrono::milliseconds;

struct nodes_options {
    bool dead_only = false;
};

asio::awaitable<int> list_nodes(context& c, nodes_options o) {
    membership members(c.session);
    boost::system::error_code ec;
    std::vector<node_info> nodes;
    if (o.dead_only)
        std::tie(ec, nodes) = co_await members.async_dead_nodes(nothrow);
    else
        std::tie(ec, nodes) = co_await members.async_nodes(nothrow);
    check(ec, "listing the nodes");
    const auto now = std::chrono::system_clock::now();
    auto age_of = [&](const node_info& n) -> std::optional<milliseconds> {
        if (!n.last_heartbeat) return std::nullopt;
        return std::chrono::duration_cast<milliseconds>(now - *n.last_heartbeat);
    };
    std::size_t alive = 0;
    for (const auto& n : nodes) alive += n.alive ? 1 : 0;

    if (c.opts.json) {
        auto ms_or_null = [](const auto& t) {
            return t ? json::value(unix_ms(*t)) : json::value(nullptr);
        };
        auto node_json = [&](const node_info& n) {
            const auto age = age_of(n);
            return json::object{{"id", n.id},
                                {"alive", n.alive},
                                {"last_heartbeat_ms", ms_or_null(n.last_heartbeat)},
                                {"heartbeat_age_ms", age ? json::value(age->count()) : nullptr},
                                {"started_at_ms", ms_or_null(n.started_at)},
                                {"pid", n.pid},
                                {"host", n.host},
                                {"version", n.version}};
        };
        print_json(json::object{{"nodes", json_list(nodes, node_json)},
                                {"total", nodes.size()},
                                {"alive", alive},
                                {"dead", nodes.size() - alive}});
        co_return 0;
    }
    table t({"NODE", "STATUS", "HEARTBEAT AGE", "STARTED", "PID", "HOST", "VERSION"});
    for (const auto& n : nodes) {
        const auto age = age_of(n);
        t.add({n.id, n.alive ? "alive" : "dead", age ? format_duration(*age) : "-",
               n.started_at ? format_time(*n.started_at) : "-", n.pid ? std::to_string(n.pid) : "-",
               n.host.empty() ? "-" : n.host, n.version.empty() ? "-" : n.version});
    }
    t.print(std::cout, "(no nodes registered)");
    std::cout << nodes.size() << " node(s): " << alive << " alive, " << nodes.size() - alive
              << " dead\n";
    co_return 0;
}

}  // namespace

void add_nodes_commands(CLI::App& app, selection& sel, const global_options&) {
    auto o = std::make_shared<nodes_options>();
    auto* cmd = add_command(app, sel, o, "nodes",
                            "The membership's nodes: alive or dead, heartbeat age", list_nodes);
    cmd->add_flag("--dead", o->dead_only, "Only the nodes whose heartbeat is gone");
}

}  // namespace redcoord::cli
