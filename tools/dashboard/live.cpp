#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "server.hpp"

namespace redcoord::tools::detail {

using namespace std::chrono_literals;

namespace {

// How many events the tail keeps; chart samples: one every sample_every, chart_size of them;
// the health report is checked at most every health_every.
constexpr std::size_t tail_size = 200;
constexpr std::size_t chart_size = 120;
constexpr auto sample_every = 5s;
constexpr auto health_every = 10s;

// One read of a snapshot into out[name], or its error into errors[name].
template <class Read>
asio::awaitable<void> read_into(json::object& out, json::object& errors, std::string_view name,
                                const Read& read) {
    try {
        out[name] = co_await read();
    } catch (const std::exception& e) {
        errors[name] = e.what();
    }
}

}  // namespace

void dashboard_impl::remember(json::object event) {
    events_.push_back(event);
    if (events_.size() > tail_size) events_.pop_front();
    json::array one;
    one.push_back(std::move(event));
    broadcast(message("events", one));
    if (pushing_) tick_.cancel();
}

void dashboard_impl::listen_to_events() {
    member_watch_ = views_.members().subscribe([this](const member_event& e) {
        json::object o;
        o["type"] = "member";
        o["at"] = now_ms();
        o["node"] = e.node;
        o["event"] = e.what == member_event::kind::joined ? "joined"
                     : e.what == member_event::kind::left ? "left"
                                                          : "dead";
        remember(std::move(o));
    });
    event_bus bus(views_.get_session());
    job_events_ = bus.subscribe<json::value>(
        views_.jobs().events_channel(), [this](error_code ec, const event<json::value>& ev) {
            if (ec || !ev.value.is_array()) return;
            for (const auto& step : ev.value.as_array()) {
                if (!step.is_object()) continue;
                json::object o = step.as_object();
                if (const auto* s = o.if_contains("state"); s && *s == "succeeded")
                    ++jobs_succeeded_;
                o["type"] = "job";
                if (!o.contains("at")) o["at"] = now_ms();
                remember(std::move(o));
            }
        });
}

// Cluster lock statistics every sample_every, as rates between two samples.
asio::awaitable<void> dashboard_impl::sample_loop(std::shared_ptr<dashboard_impl> self) {
    std::optional<lock_statistics> last;
    std::uint64_t last_jobs = 0;
    auto last_at = std::chrono::steady_clock::now();
    while (!self->stopped_) {
        auto [ec, stats] = co_await self->views_.monitor().async_cluster_statistics(nothrow);
        const auto at = std::chrono::steady_clock::now();
        if (!ec) {
            if (last) {
                const double secs = std::chrono::duration<double>(at - last_at).count();
                auto rate = [secs](std::uint64_t now, std::uint64_t before) {
                    return now >= before && secs > 0 ? double(now - before) / secs : 0.0;
                };
                json::object s;
                s["at"] = now_ms();
                s["acquisitions_per_s"] = rate(stats.acquisitions, last->acquisitions);
                s["contended_per_s"] =
                    rate(stats.contended_acquisitions, last->contended_acquisitions);
                s["jobs_succeeded_per_s"] = rate(self->jobs_succeeded_, last_jobs);
                s["wait_mean_ms"] = double(stats.wait_mean.count()) / 1000.0;
                s["wait_p99_ms"] = double(stats.wait_p99.count()) / 1000.0;
                self->samples_.push_back(std::move(s));
                if (self->samples_.size() > chart_size) self->samples_.pop_front();
            }
            last = stats;
            last_jobs = self->jobs_succeeded_;
            last_at = at;
        }
        self->sample_timer_.expires_after(sample_every);
        co_await self->sample_timer_.async_wait(nothrow);
    }
}

json::object dashboard_impl::info() const {
    json::object o;
    o["scheduler"] = opts_.scheduler;
    o["url"] = opts_.url_shown;
    o["prefix"] = views_.get_session().keys().prefix();
    o["node_id"] = views_.get_session().node_id();
    o["read_only"] = opts_.read_only;
    o["token_required"] = !opts_.token.empty();
    o["sample_every_ms"] = std::chrono::milliseconds(sample_every).count();
    return o;
}

// Terms seen by this dashboard while it ran, per leadership (newest last).
void dashboard_impl::observe_leaders(const json::array& leaders) {
    for (const auto& l : leaders) {
        const auto& o = l.as_object();
        auto& seen = leader_history_[std::string(o.at("name").as_string())];
        if (!seen.empty() && seen.back().as_object().at("term") == o.at("term")) continue;
        json::object h;
        h["term"] = o.at("term");
        h["node"] = o.at("node");
        h["since"] = o.at("since");
        h["seen_at"] = now_ms();
        seen.push_back(std::move(h));
        if (seen.size() > 50) seen.erase(seen.begin());
    }
}

json::object dashboard_impl::leader_history() const {
    json::object o;
    for (const auto& [name, terms] : leader_history_) o[name] = terms;
    return o;
}

asio::awaitable<json::value> dashboard_impl::health() {
    const auto now = std::chrono::steady_clock::now();
    if (health_.is_null() || now - health_at_ >= health_every) {
        health_ = co_await views_.health();
        health_at_ = now;
    }
    co_return health_;
}

// Everything the page shows but the job lists: what /api/stream pushes.
asio::awaitable<json::object> dashboard_impl::snapshot() {
    json::object out, errors;
    out["at"] = now_ms();
    auto& v = views_;
    const auto nodes = [&v] { return v.nodes(); };
    const auto holders = [&v] { return v.holders(); };
    const auto contention = [&v] { return v.contention(); };
    const auto counts = [&v] { return v.job_counts(); };
    const auto recurring = [&v] { return v.recurring(); };
    const auto checked = [this] { return health(); };
    co_await read_into(out, errors, "nodes", nodes);
    co_await read_into(out, errors, "holders", holders);
    co_await read_into(out, errors, "contention", contention);
    co_await read_into(out, errors, "job_counts", counts);
    co_await read_into(out, errors, "recurring", recurring);
    co_await read_into(out, errors, "health", checked);
    const auto* held = out.if_contains("holders");
    auto leaders = held ? views::leaders_of(held->as_array()) : json::array();
    observe_leaders(leaders);
    out["leaders"] = std::move(leaders);
    out["leader_history"] = leader_history();
    out["charts"] = charts();
    out["errors"] = std::move(errors);
    co_return out;
}

}  // namespace redcoord::tools::detail
