#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <cstdio>
#include <ctime>
#include <ostream>

#include "core/access.hpp"
#include "core/session_impl.hpp"
#include "core/tracer.hpp"
#include "wire/connection_impl.hpp"

namespace redcoord {

std::string_view to_string(trace_kind k) noexcept {
    switch (k) {
        case trace_kind::lock_acquired:
            return "lock.acquired";
        case trace_kind::lock_contended:
            return "lock.contended";
        case trace_kind::lock_timeout:
            return "lock.timeout";
        case trace_kind::lock_released:
            return "lock.released";
        case trace_kind::waiter_woken:
            return "lock.waiter_woken";
        case trace_kind::lease_renewed:
            return "lease.renewed";
        case trace_kind::renewal_late:
            return "lease.renewal_late";
        case trace_kind::lease_lost:
            return "lease.lost";
        case trace_kind::election_won:
            return "election.won";
        case trace_kind::election_lost:
            return "election.lost";
        case trace_kind::election_resigned:
            return "election.resigned";
        case trace_kind::node_joined:
            return "node.joined";
        case trace_kind::node_left:
            return "node.left";
        case trace_kind::node_dead:
            return "node.dead";
        case trace_kind::heartbeat:
            return "node.heartbeat";
        case trace_kind::connection_up:
            return "connection.up";
        case trace_kind::connection_down:
            return "connection.down";
        case trace_kind::connection_reconnecting:
            return "connection.reconnecting";
        case trace_kind::job_transition:
            return "job.transition";
        case trace_kind::queue_sent:
            return "queue.sent";
        case trace_kind::queue_received:
            return "queue.received";
        case trace_kind::queue_acked:
            return "queue.acked";
        case trace_kind::queue_redelivered:
            return "queue.redelivered";
    }
    return "unknown";
}

namespace {

// 2026-12-04T20:51:07.123Z
std::string iso_time(std::chrono::system_clock::time_point t) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch());
    const std::time_t secs = static_cast<std::time_t>(ms.count() / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(ms.count() % 1000));
    return buf;
}

// 1.250ms
std::string millis_text(std::chrono::microseconds d) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3fms", static_cast<double>(d.count()) / 1000.0);
    return buf;
}

}  // namespace

std::string format_line(const trace_event& e) {
    std::string out = iso_time(e.time);
    out.push_back(' ');
    out += to_string(e.kind);
    out.push_back(' ');
    out += e.primitive;
    out += " '";
    out += e.resource;
    out += "'";
    if (!e.node.empty()) out.append(" node=").append(e.node);
    if (!e.owner.empty()) out.append(" owner=").append(e.owner);
    if (e.token != 0) out.append(" token=").append(std::to_string(e.token));
    if (e.duration.count() != 0) out.append(" duration=").append(millis_text(e.duration));
    if (!e.detail.empty()) out.append(" detail=\"").append(e.detail).append("\"");
    // Names and reasons may hold any bytes: one event stays one line.
    for (auto& ch : out)
        if (ch == '\n' || ch == '\r') ch = ' ';
    return out;
}

std::string format_json(const trace_event& e) {
    boost::json::object o;
    o["time"] = iso_time(e.time);
    o["event"] = to_string(e.kind);
    o["primitive"] = e.primitive;
    o["resource"] = e.resource;
    o["node"] = e.node;
    if (!e.owner.empty()) o["owner"] = e.owner;
    if (e.token != 0) o["token"] = e.token;
    if (e.duration.count() != 0) o["duration_us"] = e.duration.count();
    if (!e.detail.empty()) o["detail"] = e.detail;
    return boost::json::serialize(o);
}

trace_sink stream_sink(std::ostream& out, bool json) {
    return [&out, json](const trace_event& e) {
        out << (json ? format_json(e) : format_line(e)) << '\n';
        out.flush();
    };
}

namespace detail {

void tracer::configure(const trace_options& o) {
    observers_.erase(0);
    unsigned categories = 0;
    if (o.lock_tracing) categories |= trace_locks;
    if (o.leader_election_logging) categories |= trace_elections;
    if (o.coordination_events) categories |= trace_coordination;
    if (o.queue_events) categories |= trace_queues;
    if (categories != 0 && o.sink) observers_.emplace(0, observer{categories, o.sink});
    recompute();
}

tracer::id tracer::add(unsigned categories, trace_sink sink) {
    const auto id = next_++;
    observers_.emplace(id, observer{categories, std::move(sink)});
    recompute();
    return id;
}

void tracer::remove(id observer) noexcept {
    observers_.erase(observer);
    recompute();
}

void tracer::recompute() noexcept {
    mask_ = 0;
    for (const auto& [id, o] : observers_) mask_ |= o.categories;
}

void tracer::emit(unsigned category, trace_event& e) const {
    if (e.time == std::chrono::system_clock::time_point{})
        e.time = std::chrono::system_clock::now();
    for (const auto& [id, o] : observers_)
        if (o.categories & category) o.sink(e);
}

void trace_lease(session_impl& s, trace_kind kind, const lease_state& l,
                 std::chrono::microseconds duration, std::string_view detail) {
    const unsigned category = lease_category(l.primitive);
    if (!s.trace.on(category)) return;
    if (category == trace_elections) {
        if (kind == trace_kind::lock_acquired) kind = trace_kind::election_won;
        if (kind == trace_kind::lock_released) kind = trace_kind::election_resigned;
        if (kind == trace_kind::lease_lost) kind = trace_kind::election_lost;
    }
    trace_event e;
    e.kind = kind;
    e.primitive = l.primitive;
    e.resource = l.resource;
    e.node = s.node_id;
    e.owner = l.owner;
    e.token = l.fence;
    e.duration = duration;
    e.detail = detail;
    s.trace.emit(category, e);
}

void trace_wait(session_impl& s, trace_kind kind, std::string_view primitive, std::string_view name,
                std::chrono::microseconds duration) {
    const unsigned category = lease_category(primitive);
    if (!s.trace.on(category)) return;
    trace_event e;
    e.kind = kind;
    e.primitive = primitive;
    e.resource = name;
    e.node = s.node_id;
    e.duration = duration;
    s.trace.emit(category, e);
}

std::uint64_t access::watch_link(
    const connection& c,
    std::function<void(link_change, boost::system::error_code, std::string_view)> fn) {
    return c.impl_->watch_link(std::move(fn));
}

void access::unwatch_link(const connection& c, std::uint64_t id) noexcept {
    c.impl_->unwatch_link(id);
}

void access::observe_requests(
    const connection& c,
    std::function<void(std::chrono::nanoseconds, boost::system::error_code)> fn) {
    c.impl_->request_observer = std::move(fn);
}

}  // namespace detail
}  // namespace redcoord
