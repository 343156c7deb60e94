// The trace emitter's routing by category and the two text formats, with no server.
#include <redcoord/trace.hpp>

#include <boost/json.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <sstream>
#include <string>
#include <vector>

#include "core/tracer.hpp"

namespace {

using redcoord::trace_event;
using redcoord::trace_kind;
using redcoord::detail::tracer;

trace_event sample_event() {
    trace_event e;
    e.kind = trace_kind::lock_acquired;
    // 2026-12-04T20:51:07.123Z
    e.time = std::chrono::system_clock::time_point(std::chrono::milliseconds(1796417467123));
    e.primitive = "mutex";
    e.resource = "orders";
    e.node = "web-1";
    e.owner = "web-1:abc";
    e.token = 42;
    e.duration = std::chrono::microseconds(1250);
    return e;
}

TEST_CASE("trace: events go to the observers of their category only", "[unit][trace]") {
    tracer t;
    CHECK_FALSE(t.on(redcoord::detail::trace_all));
    std::vector<std::string> app, metrics;
    redcoord::trace_options o;
    o.lock_tracing = true;
    o.sink = [&](const trace_event& e) { app.emplace_back(redcoord::to_string(e.kind)); };
    t.configure(o);
    CHECK(t.on(redcoord::detail::trace_locks));
    CHECK_FALSE(t.on(redcoord::detail::trace_elections));
    const auto id = t.add(redcoord::detail::trace_elections, [&](const trace_event& e) {
        metrics.emplace_back(redcoord::to_string(e.kind));
    });
    CHECK(t.on(redcoord::detail::trace_elections));

    auto lock = sample_event();
    t.emit(redcoord::detail::trace_locks, lock);
    trace_event won;
    won.kind = trace_kind::election_won;
    t.emit(redcoord::detail::trace_elections, won);
    CHECK(won.time > std::chrono::system_clock::time_point{});  // filled in
    CHECK(app == std::vector<std::string>{"lock.acquired"});
    CHECK(metrics == std::vector<std::string>{"election.won"});

    t.remove(id);
    CHECK_FALSE(t.on(redcoord::detail::trace_elections));
    // Switches on but no sink: nothing is emitted, and nothing is asked for.
    o.sink = nullptr;
    t.configure(o);
    CHECK_FALSE(t.on(redcoord::detail::trace_all));
}

TEST_CASE("trace: one line per event, with the fields that are set", "[unit][trace]") {
    auto e = sample_event();
    CHECK(redcoord::format_line(e) ==
          "2026-12-04T20:51:07.123Z lock.acquired mutex 'orders' node=web-1 owner=web-1:abc "
          "token=42 duration=1.250ms");
    e.owner = {};
    e.token = 0;
    e.duration = {};
    e.kind = trace_kind::lease_lost;
    e.detail = "lease lost\nreally";
    CHECK(redcoord::format_line(e) ==
          "2026-12-04T20:51:07.123Z lease.lost mutex 'orders' node=web-1 detail=\"lease lost "
          "really\"");
}

TEST_CASE("trace: JSON Lines, any bytes escaped", "[unit][trace]") {
    auto e = sample_event();
    e.resource = "a\"b\nc";
    std::ostringstream out;
    redcoord::stream_sink(out, true)(e);
    const std::string text = out.str();
    REQUIRE(text.back() == '\n');
    CHECK(text.find('\n') == text.size() - 1);
    const auto o = boost::json::parse(text).as_object();
    CHECK(o.at("time").as_string() == "2026-12-04T20:51:07.123Z");
    CHECK(o.at("event").as_string() == "lock.acquired");
    CHECK(o.at("primitive").as_string() == "mutex");
    CHECK(o.at("resource").as_string() == "a\"b\nc");
    CHECK(o.at("owner").as_string() == "web-1:abc");
    CHECK(o.at("token").as_int64() == 42);
    CHECK(o.at("duration_us").as_int64() == 1250);
    CHECK_FALSE(o.contains("detail"));
}

TEST_CASE("trace: every kind has its own name", "[unit][trace]") {
    std::vector<std::string> names;
    for (int k = 0; k <= static_cast<int>(trace_kind::queue_redelivered); ++k) {
        const auto name = std::string(redcoord::to_string(static_cast<trace_kind>(k)));
        CHECK(name != "unknown");
        CHECK(std::find(names.begin(), names.end(), name) == names.end());
        names.push_back(name);
    }
}

}  // namespace
