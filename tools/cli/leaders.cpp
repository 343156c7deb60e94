// `redcoord leaders [name]`: the current leader of each leadership, with its term history.
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cli.hpp"
#include "output.hpp"

namespace redcoord::cli {

namespace {

namespace json = boost::json;
using std::chrono::milliseconds;

struct leaders_options {
    std::string name;         // empty: every leadership
    std::size_t history = 5;  // terms shown per leadership in the table (JSON: all)
};

// The leaderships that have a leader (the monitor's) or a term history (SCAN for their terms
// lists: `<prefix>leader:{<name>}:terms`).
asio::awaitable<std::set<std::string>> leadership_names(context& c) {
    std::set<std::string> names;
    lock_monitor monitor(c.session);
    diagnostics diag;
    auto [ec, held] = co_await monitor.async_held_leases(diag, nothrow);
    check(ec, "listing the leaderships", &diag);
    for (const auto& h : held)
        if (h.kind == held_kind::leadership) names.insert(h.name);

    const auto& keys = c.session.keys();
    const std::string pattern = keys.main_key_pattern("leader:") + ":terms";
    const std::string head = keys.prefix() + "leader:{";
    const std::string tail = "}:terms";
    std::string cursor = "0";
    do {
        request req;
        req.push("SCAN", cursor, "MATCH", pattern, "COUNT", 1000, "TYPE", "list");
        std::pair<std::string, std::vector<std::string>> page;
        auto [sec, n] = co_await c.conn.async_exec(req, page, diag, nothrow);
        check(sec, "listing the leaderships' terms", &diag);
        cursor = std::move(page.first);
        for (const auto& k : page.second)
            if (k.size() > head.size() + tail.size() && k.starts_with(head) && k.ends_with(tail))
                names.insert(k.substr(head.size(), k.size() - head.size() - tail.size()));
    } while (cursor != "0");
    co_return names;
}

struct leadership {
    std::string name;
    std::optional<leader_info> leader;
    std::vector<leader_term> terms;
};

json::object to_json(const leadership& l) {
    json::value leader = nullptr;
    if (const auto& i = l.leader) {
        const auto left =
            std::chrono::duration_cast<milliseconds>(i->expires - std::chrono::system_clock::now());
        leader = json::object{{"node", i->node},
                              {"owner", i->owner},
                              {"term", i->term},
                              {"since_ms", unix_ms(i->since)},
                              {"expires_in_ms", left.count()}};
    }
    auto term_json = [](const leader_term& t) {
        return json::object{
            {"term", t.term}, {"node", t.node}, {"owner", t.owner}, {"at_ms", unix_ms(t.at)}};
    };
    return json::object{{"name", l.name},
                        {"leader", std::move(leader)},
                        {"history", json_list(l.terms, term_json)}};
}

asio::awaitable<int> list_leaders(context& c, leaders_options o) {
    std::set<std::string> names;
    if (o.name.empty())
        names = co_await leadership_names(c);
    else
        names.insert(o.name);
    leader_election election(c.session);
    std::vector<leadership> all;
    for (const auto& name : names) {
        leadership l{name, std::nullopt, {}};
        auto [ec, info] = co_await election.async_leader_info(name, nothrow);
        check(ec, "reading the leader of '" + printable(name) + "'");
        l.leader = std::move(info);
        auto [hec, terms] = co_await election.async_term_history(name, nothrow);
        check(hec, "reading the terms of '" + printable(name) + "'");
        l.terms = std::move(terms);
        all.push_back(std::move(l));
    }
    if (c.opts.json) {
        print_json(json::object{{"leaderships", json_list(all, to_json)}});
        co_return 0;
    }
    table t({"LEADERSHIP", "LEADER", "TERM", "SINCE", "TTL", "TERMS"});
    const auto now = std::chrono::system_clock::now();
    for (const auto& l : all) {
        if (l.leader) {
            t.add({l.name, l.leader->node, std::to_string(l.leader->term),
                   format_time(l.leader->since),
                   l.leader->expires == std::chrono::system_clock::time_point::max()
                       ? "none"
                       : format_duration(
                             std::chrono::duration_cast<milliseconds>(l.leader->expires - now)),
                   std::to_string(l.terms.size())});
        } else {
            t.add({l.name, "(none)", "-", "-", "-", std::to_string(l.terms.size())});
        }
    }
    t.print(std::cout, "(no leaderships)");
    for (const auto& l : all) {
        if (l.terms.empty() || o.history == 0) continue;
        std::cout << "\nterms of " << printable(l.name) << ", newest first";
        if (l.terms.size() > o.history) std::cout << " (last " << o.history << ")";
        std::cout << ":\n";
        table h({"TERM", "NODE", "OWNER", "GRANTED"});
        for (std::size_t i = 0; i < l.terms.size() && i < o.history; ++i)
            h.add({std::to_string(l.terms[i].term), l.terms[i].node, l.terms[i].owner,
                   format_time(l.terms[i].at)});
        h.print(std::cout);
    }
    co_return 0;
}

}  // namespace

void add_leaders_commands(CLI::App& app, selection& sel, const global_options&) {
    auto o = std::make_shared<leaders_options>();
    auto* cmd = add_command(app, sel, o, "leaders",
                            "The current leader of each leadership, its term, and the term history",
                            list_leaders);
    cmd->add_option("name", o->name, "Only this leadership");
    cmd->add_option("--history", o->history, "Terms shown per leadership in the table")
        ->capture_default_str()
        ->check(CLI::Range(0, 100));
}

}  // namespace redcoord::cli
