// `redcoord locks` (every held thing: mutexes, read and write holds, permits, leaderships,
// fill leases), `redcoord locks contention` (the cluster-wide statistics per lock), and
// `redcoord force-release <name>`.
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <algorithm>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli.hpp"
#include "output.hpp"

namespace redcoord::cli {

namespace {

namespace json = boost::json;
using std::chrono::milliseconds;

struct locks_options {
    std::vector<std::string> kinds;  // empty: every kind
    std::string name;                // empty: every name
};

asio::awaitable<int> list_held(context& c, locks_options o) {
    lock_monitor monitor(c.session);
    diagnostics diag;
    auto [ec, held] = co_await monitor.async_held_leases(diag, nothrow);
    check(ec, "listing the held locks", &diag);
    std::erase_if(held, [&](const held_lease& h) {
        const auto kind = std::string(to_string(h.kind));
        if (!o.kinds.empty() && std::find(o.kinds.begin(), o.kinds.end(), kind) == o.kinds.end())
            return true;
        return !o.name.empty() && h.name != o.name;
    });
    if (c.opts.json) {
        auto held_json = [](const held_lease& h) {
            return json::object{{"kind", to_string(h.kind)},
                                {"name", h.name},
                                {"node", h.node},
                                {"owner", h.owner},
                                {"remaining_ttl_ms", h.remaining_ttl.count()},
                                {"fencing_token", h.fencing_token},
                                {"acquired_at_ms", unix_ms(h.acquired_at)},
                                {"holds", h.holds},
                                {"waiters", h.waiters}};
        };
        print_json(json::object{{"held", json_list(held, held_json)}});
        co_return 0;
    }
    table t({"KIND", "NAME", "NODE", "OWNER", "TTL", "FENCE", "HOLDS", "WAITERS", "ACQUIRED"});
    for (const auto& h : held) {
        t.add({std::string(to_string(h.kind)), h.name, h.node.empty() ? "-" : h.node, h.owner,
               h.remaining_ttl.count() < 0 ? "none" : format_duration(h.remaining_ttl),
               h.fencing_token ? std::to_string(h.fencing_token) : "-", std::to_string(h.holds),
               std::to_string(h.waiters), format_time(h.acquired_at)});
    }
    t.print(std::cout, "(nothing held)");
    co_return 0;
}

// A wait time: microseconds below a millisecond, else as format_duration.
std::string micros(std::chrono::microseconds d) {
    if (d < milliseconds(1)) return std::to_string(d.count()) + "us";
    return format_duration(std::chrono::duration_cast<milliseconds>(d));
}

asio::awaitable<int> list_contention(context& c) {
    lock_monitor monitor(c.session);
    auto [ec, locks] = co_await monitor.async_contention(nothrow);
    check(ec, "reading the lock statistics");
    if (c.opts.json) {
        auto lock_json = [](const lock_contention& l) {
            const auto& s = l.stats;
            return json::object{{"name", l.name},
                                {"kind", to_string(l.kind)},
                                {"acquisitions", s.acquisitions},
                                {"contended_acquisitions", s.contended_acquisitions},
                                {"timeouts", s.timeouts},
                                {"wait_mean_us", s.wait_mean.count()},
                                {"wait_p50_us", s.wait_p50.count()},
                                {"wait_p99_us", s.wait_p99.count()},
                                {"wait_max_us", s.wait_max.count()}};
        };
        print_json(json::object{{"contention", json_list(locks, lock_json)}});
        co_return 0;
    }
    table t(
        {"NAME", "KIND", "ACQUIRED", "CONTENDED", "TIMEOUTS", "WAIT MEAN", "P50", "P99", "MAX"});
    for (const auto& l : locks) {
        t.add({l.name, std::string(to_string(l.kind)), std::to_string(l.stats.acquisitions),
               std::to_string(l.stats.contended_acquisitions), std::to_string(l.stats.timeouts),
               micros(l.stats.wait_mean), micros(l.stats.wait_p50), micros(l.stats.wait_p99),
               micros(l.stats.wait_max)});
    }
    t.print(std::cout, "(no lock statistics reported)");
    co_return 0;
}

struct release_options {
    std::string name;
    bool yes = false;
};

asio::awaitable<int> force_release(context& c, release_options o) {
    if (!o.yes)
        throw usage_error("force-release deletes lock '" + printable(o.name) +
                          "' whoever holds it (its holder learns at its next renewal that it "
                          "lost it); add --yes to do it");
    lock_monitor monitor(c.session);
    auto [ec, released] = co_await monitor.async_force_release(o.name, nothrow);
    check(ec, "force-releasing lock '" + printable(o.name) + "'");
    if (c.opts.json) {
        print_json(json::object{{"name", o.name}, {"released", released}});
    } else if (released) {
        std::cout << "released lock '" << printable(o.name) << "'\n";
    } else {
        std::cout << "lock '" << printable(o.name) << "' was not held: nothing to release\n";
    }
    co_return 0;
}

}  // namespace

void add_locks_commands(CLI::App& app, selection& sel, const global_options&) {
    auto o = std::make_shared<locks_options>();
    auto* locks = app.add_subcommand(
        "locks",
        "Every held thing: mutexes, read and write holds, semaphore permits, leaderships, fill "
        "leases, with holder, owner, TTL, fencing token and waiters");
    locks->require_subcommand(0, 1);
    locks->add_option("--kind", o->kinds, "Only these kinds")
        ->check(CLI::IsMember({"mutex", "read", "write", "permit", "leadership", "fill"}));
    locks->add_option("--name", o->name, "Only the things of this name");
    locks->callback([&sel, o] {
        if (!sel.run) sel.run = [o](context& c) { return list_held(c, *o); };
    });
    auto* contention = locks->add_subcommand(
        "contention", "Cluster-wide lock statistics per lock, the longest mean wait first");
    contention->callback([&sel] { sel.run = list_contention; });

    auto r = std::make_shared<release_options>();
    auto* release = add_command(
        app, sel, r, "force-release",
        "Deletes a lock whoever holds it and wakes its waiters (needs --yes)", force_release);
    release->add_option("name", r->name, "The lock's name")->required();
    release->add_flag("--yes,-y", r->yes, "Really release it");
}

}  // namespace redcoord::cli
