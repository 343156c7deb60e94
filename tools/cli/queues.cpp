// `redcoord queues [name]`: every reliable queue with its depth, items in flight and
// redeliveries.
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli.hpp"
#include "output.hpp"

namespace redcoord::cli {

namespace {

namespace json = boost::json;

struct queues_options {
    std::string name;  // empty: every queue
};

json::object counts(const std::map<std::string, std::int64_t>& m) {
    json::object o;
    for (const auto& [k, v] : m) o[k] = v;
    return o;
}

json::object queue_json(const queue_stats& q) {
    return json::object{{"name", q.name},
                        {"depth", q.depth},
                        {"in_flight", q.in_flight},
                        {"redeliveries", q.redeliveries},
                        {"worker_depth", q.worker_depth},
                        {"consumers", counts(q.consumers)},
                        {"workers", counts(q.workers)}};
}

asio::awaitable<int> list_queues(context& c, queues_options o) {
    reliable_queue queues(c.session);
    diagnostics diag;
    std::vector<std::string> names;
    if (o.name.empty()) {
        auto [ec, found] = co_await queues.async_list_queues(diag, nothrow);
        check(ec, "listing the queues", &diag);
        names = std::move(found);
    } else {
        names.push_back(o.name);
    }
    std::vector<queue_stats> all;
    for (const auto& name : names) {
        auto [ec, stats] = co_await queues.async_stats(name, diag, nothrow);
        check(ec, "reading queue '" + printable(name) + "'", &diag);
        all.push_back(std::move(stats));
    }
    if (c.opts.json) {
        print_json(json::object{{"queues", json_list(all, queue_json)}});
        co_return 0;
    }
    table t({"QUEUE", "DEPTH", "IN FLIGHT", "REDELIVERED", "CONSUMERS", "WORKER QUEUES"});
    for (const auto& q : all)
        t.add({q.name, std::to_string(q.depth), std::to_string(q.in_flight),
               std::to_string(q.redeliveries), std::to_string(q.consumers.size()),
               q.workers.empty() ? "-"
                                 : std::to_string(q.workers.size()) + " (" +
                                       std::to_string(q.worker_depth) + " items)"});
    t.print(std::cout, "(no queues)");
    co_return 0;
}

}  // namespace

void add_queues_commands(CLI::App& app, selection& sel, const global_options&) {
    auto o = std::make_shared<queues_options>();
    auto* cmd = add_command(
        app, sel, o, "queues",
        "Every reliable queue: depth, items in flight, redeliveries, worker queues", list_queues);
    cmd->add_option("name", o->name, "Only this queue");
}

}  // namespace redcoord::cli
