// `redcoord events tail [pattern]`: prints the events of the event bus as they arrive (job
// transitions on `jobs:<scheduler>`, the application's own), until Ctrl-C, SIGTERM or --count.
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <csignal>
#include <iostream>
#include <memory>
#include <string>

#include "cli.hpp"
#include "output.hpp"

namespace redcoord::cli {

namespace {

namespace json = boost::json;

struct tail_options {
    std::string pattern = "*";
    std::uint64_t count = 0;  // 0: until stopped
};

asio::awaitable<int> tail(context& c, tail_options o) {
    auto ex = co_await asio::this_coro::executor;
    asio::signal_set signals(ex, SIGINT, SIGTERM);
    asio::steady_timer done(ex, asio::steady_timer::time_point::max());
    std::uint64_t seen = 0;
    boost::system::error_code failed;
    event_bus bus(c.session);
    const bool as_json = c.opts.json;
    auto on_event = [&](boost::system::error_code ec, const event<json::value>& ev) {
        const auto now = std::chrono::system_clock::now();
        if (ec == error::events_gap) {
            std::cerr << "redcoord: events may have been missed (reconnected or fell behind)\n";
            return;
        }
        if (ec && ec != error::decode_failed) {
            failed = ec;
            done.cancel();
            return;
        }
        if (as_json) {
            json::object line{{"channel", ev.channel}, {"at_ms", unix_ms(now)}};
            if (ec)
                line["error"] = "not JSON";
            else
                line["value"] = ev.value;
            std::cout << json::serialize(line) << std::endl;
        } else {
            std::cout << format_time(now) << "  " << printable(ev.channel) << "  "
                      << (ec ? std::string("(not JSON)") : printable(json::serialize(ev.value)))
                      << std::endl;
        }
        if (o.count != 0 && ++seen >= o.count) done.cancel();
    };
    if (o.pattern.empty()) throw usage_error("events tail: the pattern is empty ('*' for all)");
    auto sub = bus.psubscribe<json::value>(o.pattern, on_event);
    // Heard from here on: the PSUBSCRIBE went before this PING, and Redis answers in order.
    request ping;
    ping.push("PING");
    ignore_t reply;
    diagnostics diag;
    auto [pec, n] = co_await c.conn.async_exec(ping, reply, diag, nothrow);
    check(pec, "subscribing to '" + printable(o.pattern) + "'", &diag);
    std::cerr << "redcoord: listening on events '" << printable(o.pattern) << "' (Ctrl-C stops)"
              << std::endl;
    signals.async_wait([&](boost::system::error_code sec, int) {
        if (!sec) done.cancel();
    });
    co_await done.async_wait(nothrow);
    signals.cancel();
    sub.unsubscribe();
    check(failed, "receiving events");
    co_return 0;
}

}  // namespace

void add_events_commands(CLI::App& app, selection& sel, const global_options&) {
    auto o = std::make_shared<tail_options>();
    auto* events = add_group(app, "events", "The event bus");
    auto* t = add_command(*events, sel, o, "tail",
                          "Prints events as they arrive, until Ctrl-C or --count (with --json: "
                          "one JSON object per line)",
                          tail, true);
    t->add_option("pattern", o->pattern,
                  "Channel glob, without the prefix: 'jobs:*' for every scheduler's job events")
        ->capture_default_str();
    t->add_option("--count,-n", o->count, "Stop after this many events");
}

}  // namespace redcoord::cli
