// The spdlog sink: each event at its level, in the application's logger, with no server.
#include <redcoord/spdlog_sink.hpp>

#include <boost/json.hpp>

#include <catch2/catch.hpp>

#include <memory>
#include <sstream>
#include <string>

#include <spdlog/sinks/ostream_sink.h>

namespace {

using redcoord::trace_event;
using redcoord::trace_kind;

struct captured_logger {
    std::ostringstream out;
    std::shared_ptr<spdlog::logger> logger;
    captured_logger() {
        auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
        sink->set_pattern("%l|%v");
        logger = std::make_shared<spdlog::logger>("redcoord-test", sink);
        logger->set_level(spdlog::level::info);
    }
};

trace_event event_of(trace_kind k) {
    trace_event e;
    e.kind = k;
    e.time = std::chrono::system_clock::now();
    e.primitive = "mutex";
    e.resource = "orders";
    e.node = "web-1";
    e.token = 7;
    return e;
}

TEST_CASE("spdlog sink: events at their level, routine ones filtered by the logger's level",
          "[unit][trace]") {
    captured_logger log;
    auto sink = redcoord::spdlog_sink(log.logger);
    sink(event_of(trace_kind::lock_acquired));
    sink(event_of(trace_kind::lease_renewed));  // debug: below the logger's level
    auto lost = event_of(trace_kind::lease_lost);
    lost.detail = "lease lost";
    sink(lost);
    CHECK(log.out.str() ==
          "info|lock.acquired mutex 'orders' node=web-1 token=7\n"
          "warning|lease.lost mutex 'orders' node=web-1 token=7 detail=\"lease lost\"\n");
}

TEST_CASE("spdlog sink: JSON objects when asked", "[unit][trace]") {
    captured_logger log;
    log.logger->sinks().front()->set_pattern("%v");
    redcoord::spdlog_sink(log.logger, true)(event_of(trace_kind::node_dead));
    const auto o = boost::json::parse(log.out.str()).as_object();
    CHECK(o.at("event").as_string() == "node.dead");
    CHECK(o.at("token").as_int64() == 7);
}

}  // namespace
