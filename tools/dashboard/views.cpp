#include "views.hpp"

#include <redcoord/health.hpp>
#include <redcoord/request.hpp>

#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

namespace redcoord::tools::detail {

namespace asio = boost::asio;
namespace json = boost::json;
using std::chrono::duration_cast;
using std::chrono::milliseconds;

std::int64_t unix_ms(std::chrono::system_clock::time_point t) noexcept {
    return duration_cast<milliseconds>(t.time_since_epoch()).count();
}

namespace {

// Every state, in the order of a job's life (the order the page shows them).
constexpr std::array all_states{job_state::waiting, job_state::scheduled, job_state::queued,
                                job_state::running, job_state::retrying,  job_state::succeeded,
                                job_state::failed,  job_state::cancelled};

scheduler_options reader_options(const std::string& name) {
    scheduler_options o;
    o.name = name;
    o.concurrency = 0;  // never runs a job: async_run is not called either
    return o;
}

std::int64_t micros(std::chrono::microseconds d) { return d.count(); }

}  // namespace

views::views(session& s, const std::string& scheduler_name)
    : s_(s), members_(s), jobs_(s, reader_options(scheduler_name)), monitor_(s) {}

asio::awaitable<json::array> views::nodes() {
    auto list = co_await members_.async_nodes(asio::use_awaitable);
    std::sort(list.begin(), list.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
    const auto now = std::chrono::system_clock::now();
    json::array out;
    for (const auto& n : list) {
        json::object o;
        o["id"] = n.id;
        o["alive"] = n.alive;
        o["last_heartbeat"] = n.last_heartbeat ? unix_ms(*n.last_heartbeat) : 0;
        o["heartbeat_age_ms"] =
            n.last_heartbeat ? duration_cast<milliseconds>(now - *n.last_heartbeat).count() : -1;
        o["started_at"] = n.started_at ? unix_ms(*n.started_at) : 0;
        o["pid"] = n.pid;
        o["host"] = n.host;
        o["version"] = n.version;
        out.push_back(std::move(o));
    }
    co_return out;
}

asio::awaitable<json::array> views::holders() {
    const auto list = co_await monitor_.async_held_leases(asio::use_awaitable);
    json::array out;
    for (const auto& l : list) {
        json::object o;
        o["kind"] = to_string(l.kind);
        o["name"] = l.name;
        o["node"] = l.node;
        o["owner"] = l.owner;
        o["ttl_ms"] = l.remaining_ttl.count();
        o["fencing_token"] = l.fencing_token;
        o["acquired_at"] = unix_ms(l.acquired_at);
        o["holds"] = l.holds;
        o["waiters"] = l.waiters;
        out.push_back(std::move(o));
    }
    co_return out;
}

asio::awaitable<json::array> views::contention() {
    const auto list = co_await monitor_.async_contention(asio::use_awaitable);
    json::array out;
    for (const auto& c : list) {
        json::object o;
        o["name"] = c.name;
        o["kind"] = to_string(c.kind);
        o["acquisitions"] = c.stats.acquisitions;
        o["contended"] = c.stats.contended_acquisitions;
        o["timeouts"] = c.stats.timeouts;
        o["wait_mean_us"] = micros(c.stats.wait_mean);
        o["wait_p50_us"] = micros(c.stats.wait_p50);
        o["wait_p99_us"] = micros(c.stats.wait_p99);
        o["wait_max_us"] = micros(c.stats.wait_max);
        out.push_back(std::move(o));
    }
    co_return out;
}

json::array views::leaders_of(const json::array& holders) {
    json::array out;
    for (const auto& h : holders) {
        const auto& l = h.as_object();
        if (l.at("kind").as_string() != "leadership") continue;
        json::object o;
        o["name"] = l.at("name");
        o["node"] = l.at("node");
        o["owner"] = l.at("owner");
        o["term"] = l.at("fencing_token");
        o["ttl_ms"] = l.at("ttl_ms");
        o["since"] = l.at("acquired_at");
        out.push_back(std::move(o));
    }
    return out;
}

// Queues are lists `<prefix>queue:{<name>}` (src/data/queue.cpp); their companions share the
// name's hash tag. Read only: SCAN, then LLEN and SCARD, and the consumers' processing lists.
asio::awaitable<json::array> views::queues() {
    const auto& keys = s_.keys();
    const std::string pattern = keys.main_key_pattern("queue:");
    std::vector<std::string> names;
    std::string cursor = "0";
    auto& conn = s_.get_connection();
    do {
        request req;
        req.push("SCAN", cursor, "MATCH", pattern, "COUNT", 500, "TYPE", "list");
        std::pair<std::string, std::vector<std::string>> page;
        co_await conn.async_exec(req, page, asio::use_awaitable);
        cursor = std::move(page.first);
        for (const auto& k : page.second) {
            const auto name = keys.name_of(k, "queue:");
            if (!name.empty()) names.emplace_back(name);
        }
    } while (cursor != "0");
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());

    json::array out;
    for (const auto& name : names) {
        const std::string main = keys.queue(name);
        request req;
        req.push("LLEN", main);
        req.push("SMEMBERS", keyspace::companion(main, "consumers"));
        req.push("SCARD", keyspace::companion(main, "workers"));
        std::tuple<std::int64_t, std::vector<std::string>, std::int64_t> r;
        co_await conn.async_exec(req, r, asio::use_awaitable);
        std::int64_t in_flight = 0;
        const auto& consumers = std::get<1>(r);
        for (const auto& c : consumers) {
            request len;
            len.push("LLEN", keyspace::companion(main, "processing:" + c));
            std::int64_t n = 0;
            co_await conn.async_exec(len, n, asio::use_awaitable);
            in_flight += n;
        }
        json::object o;
        o["name"] = name;
        o["length"] = std::get<0>(r);
        o["consumers"] = consumers.size();
        o["in_flight"] = in_flight;
        o["workers"] = std::get<2>(r);
        out.push_back(std::move(o));
    }
    co_return out;
}

asio::awaitable<json::object> views::job_counts() {
    json::object out;
    for (auto st : all_states) {
        const auto page = co_await jobs_.async_list(st, std::string(), 0, 1, asio::use_awaitable);
        out[to_string(st)] = page.total;
    }
    co_return out;
}

json::object views::to_json(const job_record& r, bool with_history) {
    json::object o;
    o["id"] = r.id;
    o["function"] = r.function;
    o["state"] = to_string(r.state);
    o["attempts"] = r.attempts;
    o["max_attempts"] = r.max_attempts;
    o["fencing_token"] = r.fencing_token;
    o["priority"] = r.priority;
    o["node"] = r.node;
    o["error"] = r.error;
    o["progress"] = r.progress;
    o["recurring"] = r.recurring;
    json::array deps;
    for (const auto& d : r.depends_on) deps.emplace_back(d);
    o["depends_on"] = std::move(deps);
    o["created"] = unix_ms(r.created);
    o["due"] = unix_ms(r.due);
    o["started"] = unix_ms(r.started);
    o["finished"] = unix_ms(r.finished);
    o["has_result"] = r.has_result;
    if (with_history) {
        o["payload"] = r.payload;
        json::array history;
        for (const auto& e : r.history) {
            json::object h;
            h["state"] = to_string(e.state);
            h["attempt"] = e.attempt;
            h["node"] = e.node;
            h["error"] = e.error;
            h["at"] = unix_ms(e.at);
            history.push_back(std::move(h));
        }
        o["history"] = std::move(history);
    } else {
        // Lists show the start of the payload only.
        o["payload"] = r.payload.size() > 200 ? r.payload.substr(0, 200) + "…" : r.payload;
    }
    return o;
}

asio::awaitable<json::object> views::job_list(job_state state, std::string function,
                                              std::uint64_t offset, std::uint32_t count) {
    const auto page =
        co_await jobs_.async_list(state, std::move(function), offset, count, asio::use_awaitable);
    json::array list;
    for (const auto& r : page.jobs) list.push_back(to_json(r, false));
    json::object out;
    out["jobs"] = std::move(list);
    out["total"] = page.total;
    out["offset"] = offset;
    out["count"] = count;
    out["state"] = to_string(state);
    co_return out;
}

asio::awaitable<std::optional<json::object>> views::job(std::string id) {
    const auto r = co_await jobs_.async_get(std::move(id), asio::use_awaitable);
    if (!r) co_return std::nullopt;
    co_return to_json(*r, true);
}

asio::awaitable<json::array> views::recurring() {
    const auto list = co_await jobs_.async_recurring(asio::use_awaitable);
    json::array out;
    for (const auto& r : list) {
        json::object o;
        o["name"] = r.name;
        o["cron"] = r.cron;
        o["time_zone"] = r.time_zone;
        o["function"] = r.function;
        o["last_fired"] = unix_ms(r.last_fired);
        o["next"] = unix_ms(r.next);
        out.push_back(std::move(o));
    }
    co_return out;
}

asio::awaitable<json::value> views::health() {
    health_options opts;   // named: g++ 12 (see async_check_health)
    opts.leaders = false;  // the page reads them from the held leases already
    const auto report = co_await async_check_health(s_, opts, asio::use_awaitable);
    co_return json::parse(report.to_json());
}

}  // namespace redcoord::tools::detail
