#include <redcoord/health.hpp>
#include <redcoord/lock.hpp>
#include <redcoord/lock_monitor.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>

#include "core/access.hpp"
#include "core/completion.hpp"
#include "core/session_impl.hpp"

namespace redcoord {

std::string_view to_string(health_status s) noexcept {
    switch (s) {
        case health_status::healthy:
            return "healthy";
        case health_status::degraded:
            return "degraded";
        case health_status::unhealthy:
            return "unhealthy";
    }
    return "unknown";
}

std::string health_report::to_json() const {
    namespace json = boost::json;
    json::object o;
    o["status"] = to_string(status);
    o["latency_us"] = latency.count();
    o["probe_fencing_token"] = probe_fencing_token;
    o["maxmemory_policy"] = maxmemory_policy;
    o["max_clock_drift_ms"] = max_clock_drift.count();
    json::array cs;
    for (const auto& c : checks)
        cs.push_back(json::object{
            {"name", c.name}, {"status", to_string(c.status)}, {"description", c.description}});
    o["checks"] = std::move(cs);
    json::array ls;
    for (const auto& l : leaders)
        ls.push_back(json::object{{"name", l.name},
                                  {"node", l.node},
                                  {"term", l.fencing_token},
                                  {"ttl_ms", l.remaining_ttl.count()}});
    o["leaders"] = std::move(ls);
    json::array ns;
    for (const auto& n : clocks)
        ns.push_back(json::object{{"node", n.node}, {"drift_ms", n.drift.count()}});
    o["clocks"] = std::move(ns);
    return json::serialize(o);
}

namespace detail {

namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

void add_check(health_report& r, std::string name, health_status st, std::string text) {
    r.status = std::max(r.status, st);
    r.checks.push_back({std::move(name), st, std::move(text)});
}

std::string ms_text(std::chrono::microseconds d) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f ms", static_cast<double>(d.count()) / 1000.0);
    return buf;
}

asio::awaitable<void> check_connection(session& s, const health_options& o, health_report& r) {
    request req;
    req.push("PING");
    const auto start = clock::now();
    diagnostics d;
    auto [ec, n] = co_await s.get_connection().async_exec(req, ignore, d, nothrow);
    r.latency = micros(clock::now() - start);
    if (ec)
        add_check(r, "connection", health_status::unhealthy, "PING failed: " + ec.message());
    else if (r.latency > o.max_latency)
        add_check(r, "connection", health_status::degraded,
                  "PING took " + ms_text(r.latency) + ", more than max_latency (" +
                      std::to_string(o.max_latency.count()) + " ms)");
    else
        add_check(r, "connection", health_status::healthy, "PING took " + ms_text(r.latency));
}

asio::awaitable<void> check_probe_lock(session& s, const health_options& o, health_report& r) {
    lock_provider locks(s);
    acquire_options ao;
    ao.ttl = o.probe_ttl;
    ao.wait = o.probe_wait;
    diagnostics d;
    const std::string name = o.probe_lock + ":" + s.node_id();
    auto [ec, l] = co_await locks.async_acquire(name, ao, d, nothrow);
    if (ec || !l) {
        std::string why = ec ? ec.message() : "not acquired";
        if (!d.client_message().empty()) why += " (" + std::string(d.client_message()) + ")";
        add_check(r, "probe_lock", health_status::unhealthy,
                  "lock '" + name + "' not acquired: " + why);
        co_return;
    }
    r.probe_fencing_token = l.fencing_token();
    auto [rec] = co_await l.async_release(d, nothrow);
    if (rec)
        add_check(r, "probe_lock", health_status::degraded,
                  "lock '" + name + "' acquired, its release failed: " + rec.message());
    else
        add_check(r, "probe_lock", health_status::healthy,
                  "lock '" + name + "' acquired and released (fencing token " +
                      std::to_string(r.probe_fencing_token) + ")");
}

asio::awaitable<void> check_leaders(session& s, health_report& r) {
    lock_monitor monitor(s);
    diagnostics d;
    auto [ec, held] = co_await monitor.async_held_leases(d, nothrow);
    if (ec) {
        add_check(r, "leaders", health_status::unhealthy,
                  "leaderships could not be read: " + ec.message());
        co_return;
    }
    for (auto& h : held)
        if (h.kind == held_kind::leadership) r.leaders.push_back(std::move(h));
    std::string text = std::to_string(r.leaders.size()) + " leadership(s) held";
    for (const auto& l : r.leaders)
        text += "; '" + l.name + "': " + l.node + " (term " + std::to_string(l.fencing_token) + ")";
    add_check(r, "leaders", health_status::healthy, text);
}

asio::awaitable<void> check_memory_policy(session& s, health_report& r) {
    request req;
    req.push("CONFIG", "GET", "maxmemory-policy");
    std::map<std::string, std::string> reply;
    diagnostics d;
    auto [ec, n] = co_await s.get_connection().async_exec(req, reply, d, nothrow);
    const auto found = reply.find("maxmemory-policy");
    if (ec || found == reply.end()) {
        std::string why = ec ? ec.message() : "no such setting";
        if (!d.server_message().empty()) why += " (" + std::string(d.server_message()) + ")";
        add_check(r, "memory_policy", health_status::healthy,
                  "maxmemory-policy could not be read: " + why);
        co_return;
    }
    r.maxmemory_policy = found->second;
    if (r.maxmemory_policy == "noeviction")
        add_check(r, "memory_policy", health_status::healthy, "noeviction");
    else
        add_check(r, "memory_policy", health_status::degraded,
                  r.maxmemory_policy +
                      ": under memory pressure Redis may drop a lease's key, and another "
                      "owner may then take the resource");
}

// A heartbeat (membership.hpp) records its writer's clock ("timestamp") and the TTL it was
// written with ("ttl_ms"): its age is ttl_ms minus its PTTL now, so the server's clock when
// it was written is TIME minus that age.
asio::awaitable<void> check_clocks(session& s, const health_options& o, health_report& r) {
    auto& conn = s.get_connection();
    std::vector<std::string> ids;
    diagnostics d;
    request list;
    list.push("SMEMBERS", s.keys().registry());
    auto [ec, n] = co_await conn.async_exec(list, ids, d, nothrow);
    if (ec) {
        add_check(r, "clock_drift", health_status::degraded,
                  "nodes could not be read: " + ec.message());
        co_return;
    }
    std::sort(ids.begin(), ids.end());
    for (const auto& id : ids) {
        request req;
        req.push("TIME");
        req.push("GET", s.keys().heartbeat(id));
        req.push("PTTL", s.keys().heartbeat(id));
        std::tuple<std::vector<std::string>, std::optional<std::string>, std::int64_t> reply;
        auto [hec, hn] = co_await conn.async_exec(req, reply, d, nothrow);
        if (hec || !std::get<1>(reply) || std::get<0>(reply).size() < 2) continue;
        boost::system::error_code pec;
        auto v = boost::json::parse(*std::get<1>(reply), pec);
        if (pec || !v.is_object()) continue;
        const auto* ts = v.as_object().if_contains("timestamp");
        const auto* ttl = v.as_object().if_contains("ttl_ms");
        if (!ts || !ttl || !ts->is_int64() || !ttl->is_int64()) continue;
        const auto& t = std::get<0>(reply);
        const std::int64_t server_ms = std::stoll(t[0]) * 1000 + std::stoll(t[1]) / 1000;
        const std::int64_t age = ttl->as_int64() - std::get<2>(reply);
        const std::int64_t drift = ts->as_int64() - (server_ms - age);
        node_clock clock;  // (named: g++ 12 mishandles braced aggregates in coroutines)
        clock.node = id;
        clock.drift = std::chrono::milliseconds(drift);
        r.clocks.push_back(std::move(clock));
        r.max_clock_drift = std::max(r.max_clock_drift, std::chrono::milliseconds(std::abs(drift)));
    }
    if (r.max_clock_drift > o.max_clock_drift)
        add_check(r, "clock_drift", health_status::degraded,
                  "a node's clock is " + std::to_string(r.max_clock_drift.count()) +
                      " ms from the server's, more than max_clock_drift (" +
                      std::to_string(o.max_clock_drift.count()) + " ms)");
    else
        add_check(r, "clock_drift", health_status::healthy,
                  std::to_string(r.clocks.size()) + " node clock(s), at most " +
                      std::to_string(r.max_clock_drift.count()) + " ms from the server's");
}

std::string options_problem(const health_options& o) {
    for (const char ch : o.probe_lock)
        if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f)
            return "probe_lock: contains a control character";
    if (o.probe_lock.empty()) return "probe_lock: is empty";
    if (auto p = duration_problem(o.probe_ttl, false); !p.empty()) return "probe_ttl: " + p;
    if (auto p = duration_problem(o.probe_wait, true); !p.empty()) return "probe_wait: " + p;
    if (auto p = duration_problem(o.max_latency, true); !p.empty()) return "max_latency: " + p;
    if (auto p = duration_problem(o.max_clock_drift, true); !p.empty())
        return "max_clock_drift: " + p;
    return {};
}

std::pair<error_code, health_report> result(error_code ec, health_report r) {
    return {ec, std::move(r)};
}

asio::awaitable<std::pair<error_code, health_report>> check_health(session& s, health_options o) {
    health_report r;
    if (auto problem = options_problem(o); !problem.empty()) {
        add_check(r, "options", health_status::unhealthy, problem);
        co_return result(error::invalid_argument, std::move(r));
    }
    co_await check_connection(s, o, r);
    if (r.status == health_status::unhealthy) co_return result({}, std::move(r));
    co_await check_probe_lock(s, o, r);
    if (o.leaders) co_await check_leaders(s, r);
    co_await check_memory_policy(s, r);
    co_await check_clocks(s, o, r);
    co_return result({}, std::move(r));
}

}  // namespace

void check_health_impl(session& s, health_options opts,
                       asio::any_completion_handler<void(error_code, health_report)> h) {
    launch(s.get_executor(), check_health(s, std::move(opts)), std::move(h));
}

}  // namespace detail
}  // namespace redcoord
