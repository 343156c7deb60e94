// The metrics are one more observer of the sessions' trace events (core/tracer.hpp) and of
// their connection's requests: nothing is counted where nothing is attached.
#include <redcoord/metrics.hpp>
#include <redcoord/session.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/access.hpp"
#include "core/completion.hpp"
#include "core/session_impl.hpp"
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

namespace redcoord::detail {

namespace {

using prometheus::Counter;
using prometheus::Gauge;
using prometheus::Histogram;

// Seconds, from 50 µs (a pipelined round trip) to a minute (a long wait or hold).
const Histogram::BucketBoundaries& second_buckets() {
    static const Histogram::BucketBoundaries b{
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
        0.1,     0.25,   0.5,     1,      2.5,   5,      10,    30,   60};
    return b;
}

double seconds(std::chrono::microseconds d) { return static_cast<double>(d.count()) / 1e6; }

// One family's series, looked up by their label values (cached: Family::Add locks and hashes).
template <class T>
class series {
  public:
    series(prometheus::Family<T>& family, std::vector<std::string> label_names)
        : family_(family), names_(std::move(label_names)) {}

    template <class... Args>
    T& at(const std::vector<std::string>& values, Args&&... args) {
        auto it = cache_.find(values);
        if (it != cache_.end()) return *it->second;
        prometheus::Labels labels;
        for (std::size_t i = 0; i < names_.size(); ++i) labels.emplace(names_[i], values[i]);
        T& made = family_.Add(labels, std::forward<Args>(args)...);
        cache_.emplace(values, &made);
        return made;
    }

  private:
    prometheus::Family<T>& family_;
    std::vector<std::string> names_;
    std::map<std::vector<std::string>, T*> cache_;
};

template <class T, class Builder>
prometheus::Family<T>& family(Builder b, prometheus::Registry& r, const std::string& name,
                              const std::string& help) {
    return b.Name(name).Help(help).Register(r);
}

}  // namespace

class metrics_impl {
  public:
    explicit metrics_impl(std::shared_ptr<prometheus::Registry> r)
        : registry(r ? std::move(r) : std::make_shared<prometheus::Registry>()),
          acquisitions(counter("redcoord_lock_acquisitions_total", "Leases granted"),
                       {"primitive"}),
          contentions(counter("redcoord_lock_contentions_total",
                              "Acquisitions that found the resource held and waited"),
                      {"primitive"}),
          timeouts(counter("redcoord_lock_timeouts_total",
                           "Acquisitions that gave up at their deadline"),
                   {"primitive"}),
          waits(histogram("redcoord_lock_wait_duration_seconds",
                          "Time from an acquisition's call to its grant"),
                {"primitive"}),
          holds(
              histogram("redcoord_lock_hold_duration_seconds", "Time from a grant to its release"),
              {"primitive"}),
          renewals(counter("redcoord_lease_renewals_total", "Watchdog renewals confirmed"),
                   {"primitive"}),
          lateness(histogram("redcoord_lease_renewal_lateness_seconds",
                             "Time from a renewal's planned moment to its confirmation"),
                   {"primitive"}),
          lost(counter("redcoord_leases_lost_total", "Held leases that were lost"),
               {"primitive", "reason"}),
          held(gauge("redcoord_leases_held", "Leases the attached sessions hold"), {}),
          elections(counter("redcoord_elections_total", "Leaderships won, lost, resigned"),
                    {"outcome"}),
          heartbeats(counter("redcoord_heartbeats_total", "Heartbeats written"), {}),
          heartbeat_lateness(histogram("redcoord_heartbeat_lateness_seconds",
                                       "Time from a heartbeat's planned moment to its write"),
                             {}),
          node_events(counter("redcoord_node_events_total",
                              "Nodes joined, left or found dead by this process"),
                      {"event"}),
          jobs(counter("redcoord_jobs_total", "Job attempts ended on this process"),
               {"function", "outcome"}),
          job_durations(histogram("redcoord_job_duration_seconds", "Job attempts' run time"),
                        {"function", "outcome"}),
          jobs_running(gauge("redcoord_jobs_running", "Job attempts running on this process"), {}),
          operations(histogram("db_client_operation_duration_seconds",
                               "Requests to Redis, from the call to the reply"),
                     {"db_system_name", "outcome"}),
          link_events(
              counter("redcoord_connection_events_total", "The connection came up or went down"),
              {"event"}),
          link_up(gauge("redcoord_connection_up", "1 while the connection is up"), {}),
          sent(counter("messaging_client_sent_messages_total", "Messages enqueued"),
               {"messaging_destination_name"}),
          consumed(
              counter("messaging_client_consumed_messages_total", "Messages taken by a consumer"),
              {"messaging_destination_name"}),
          acked(counter("redcoord_queue_acked_total", "Messages acknowledged"), {"queue"}),
          redelivered(counter("redcoord_queue_redelivered_total",
                              "Messages given back from dead consumers"),
                      {"queue"}),
          in_flight(gauge("redcoord_queue_in_flight",
                          "Messages taken and not yet acknowledged by this process"),
                    {"queue"}),
          depth(gauge("redcoord_queue_depth",
                      "Messages waiting in a queue this process used (read by async_collect)"),
                {"queue"}) {}

    void on_event(const trace_event& e);

    // The lock series of one primitive, looked up without allocating (the hot path of
    // every acquisition): a handful of primitives, found by a linear search.
    struct lock_series {
        Counter *acquisitions, *contentions, *timeouts, *renewals;
        Histogram *waits, *holds, *lateness;
    };
    lock_series& of(std::string_view primitive) {
        for (auto& [name, ls] : by_primitive)
            if (name == primitive) return ls;
        const std::vector<std::string> p{std::string(primitive)};
        by_primitive.emplace_back(
            std::string(primitive),
            lock_series{&acquisitions.at(p), &contentions.at(p), &timeouts.at(p), &renewals.at(p),
                        &waits.at(p, second_buckets()), &holds.at(p, second_buckets()),
                        &lateness.at(p, second_buckets())});
        return by_primitive.back().second;
    }
    std::vector<std::pair<std::string, lock_series>> by_primitive;
    void on_request(std::chrono::nanoseconds d, error_code ec) {
        const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d);
        auto& h = ec ? op_error : op_ok;
        if (!h) h = &operations.at({"redis", ec ? "error" : "ok"}, second_buckets());
        h->Observe(seconds(us));
    }

    struct attached {
        std::weak_ptr<session_impl> session;
        tracer::id observer;
    };

    std::shared_ptr<prometheus::Registry> registry;
    std::vector<attached> sessions;

    series<Counter> acquisitions, contentions, timeouts;
    series<Histogram> waits, holds;
    series<Counter> renewals;
    series<Histogram> lateness;
    series<Counter> lost;
    series<Gauge> held;
    series<Counter> elections, heartbeats;
    series<Histogram> heartbeat_lateness;
    series<Counter> node_events, jobs;
    series<Histogram> job_durations;
    series<Gauge> jobs_running;
    series<Histogram> operations;
    series<Counter> link_events;
    series<Gauge> link_up;
    series<Counter> sent, consumed, acked, redelivered;
    series<Gauge> in_flight, depth;
    // The queues this process used, with the session that used them (their depth is read
    // through it).
    std::map<std::string, std::weak_ptr<session_impl>, std::less<>> queues;
    // The executor of the first session attached (async_collect completes through it).
    std::optional<asio::any_io_executor> executor;
    Histogram* op_ok = nullptr;
    Histogram* op_error = nullptr;

  private:
    prometheus::Family<Counter>& counter(const std::string& name, const std::string& help) {
        return family<Counter>(prometheus::BuildCounter(), *registry, name, help);
    }
    prometheus::Family<Gauge>& gauge(const std::string& name, const std::string& help) {
        return family<Gauge>(prometheus::BuildGauge(), *registry, name, help);
    }
    prometheus::Family<Histogram>& histogram(const std::string& name, const std::string& help) {
        return family<Histogram>(prometheus::BuildHistogram(), *registry, name, help);
    }
};

void metrics_impl::on_event(const trace_event& e) {
    switch (e.kind) {
        case trace_kind::election_won:
            elections.at({"won"}).Increment();
            [[fallthrough]];
        case trace_kind::lock_acquired:
            of(e.primitive).acquisitions->Increment();
            of(e.primitive).waits->Observe(seconds(e.duration));
            break;
        case trace_kind::lock_contended:
            of(e.primitive).contentions->Increment();
            break;
        case trace_kind::lock_timeout:
            of(e.primitive).timeouts->Increment();
            break;
        case trace_kind::election_resigned:
            elections.at({"resigned"}).Increment();
            [[fallthrough]];
        case trace_kind::lock_released:
            of(e.primitive).holds->Observe(seconds(e.duration));
            break;
        case trace_kind::lease_renewed:
            of(e.primitive).renewals->Increment();
            of(e.primitive).lateness->Observe(seconds(e.duration));
            break;
        case trace_kind::election_lost:
            elections.at({"lost"}).Increment();
            [[fallthrough]];
        case trace_kind::lease_lost:
            lost.at({std::string(e.primitive), std::string(e.detail)}).Increment();
            break;
        case trace_kind::heartbeat:
            heartbeats.at({}).Increment();
            heartbeat_lateness.at({}, second_buckets()).Observe(seconds(e.duration));
            break;
        case trace_kind::node_joined:
            node_events.at({"joined"}).Increment();
            break;
        case trace_kind::node_left:
            node_events.at({"left"}).Increment();
            break;
        case trace_kind::node_dead:
            node_events.at({"dead"}).Increment();
            break;
        case trace_kind::connection_up:
            link_events.at({"up"}).Increment();
            link_up.at({}).Set(1);
            break;
        case trace_kind::connection_down:
            link_events.at({"down"}).Increment();
            link_up.at({}).Set(0);
            break;
        case trace_kind::connection_reconnecting:
            link_events.at({"retrying"}).Increment();
            break;
        case trace_kind::job_transition: {
            // detail: "<state> <function>"
            const auto space = e.detail.find(' ');
            const std::string state(e.detail.substr(0, space));
            const std::string function(
                space == std::string_view::npos ? std::string_view() : e.detail.substr(space + 1));
            if (state == "running") {
                jobs_running.at({}).Increment();
                break;
            }
            jobs_running.at({}).Decrement();
            jobs.at({function, state}).Increment();
            job_durations.at({function, state}, second_buckets()).Observe(seconds(e.duration));
            break;
        }
        case trace_kind::queue_sent:
            sent.at({std::string(e.resource)}).Increment();
            break;
        case trace_kind::queue_received:
            consumed.at({std::string(e.resource)}).Increment();
            in_flight.at({std::string(e.resource)}).Increment();
            break;
        case trace_kind::queue_acked:
            acked.at({std::string(e.resource)}).Increment();
            in_flight.at({std::string(e.resource)}).Decrement();
            break;
        case trace_kind::queue_redelivered:
            redelivered.at({std::string(e.resource)}).Increment(static_cast<double>(e.token));
            break;
        case trace_kind::waiter_woken:
        case trace_kind::renewal_late:
            break;
    }
}

}  // namespace redcoord::detail

namespace redcoord {

metrics::metrics(std::shared_ptr<prometheus::Registry> registry)
    : impl_(std::make_shared<detail::metrics_impl>(std::move(registry))) {
    // Present from the start, so a scrape shows them before anything happened.
    impl_->held.at({}).Set(0);
    impl_->jobs_running.at({}).Set(0);
}

metrics::~metrics() {
    for (const auto& a : impl_->sessions)
        if (auto s = a.session.lock()) {
            s->trace.remove(a.observer);
            detail::access::observe_requests(s->conn, {});
        }
}

void metrics::attach(session& s) {
    const auto& si = detail::access::impl(s);
    for (const auto& a : impl_->sessions)
        if (a.session.lock() == si) return;
    auto* m = impl_.get();
    const auto id = si->trace.add(
        detail::trace_all, [m, w = std::weak_ptr<detail::session_impl>(si)](const trace_event& e) {
            if (e.primitive == "queue" && !m->queues.contains(e.resource))
                m->queues.emplace(std::string(e.resource), w);
            m->on_event(e);
        });
    impl_->sessions.push_back({si, id});
    if (!impl_->executor) impl_->executor = si->conn.get_executor();
    detail::access::observe_requests(
        si->conn,
        [m](std::chrono::nanoseconds d, boost::system::error_code ec) { m->on_request(d, ec); });
    impl_->link_up.at({}).Set(si->conn.is_connected() ? 1 : 0);
}

void metrics::detach(session& s) {
    const auto& si = detail::access::impl(s);
    auto& all = impl_->sessions;
    for (auto it = all.begin(); it != all.end(); ++it) {
        if (it->session.lock() != si) continue;
        si->trace.remove(it->observer);
        detail::access::observe_requests(si->conn, {});
        all.erase(it);
        return;
    }
}

std::shared_ptr<prometheus::Registry> metrics::registry() const noexcept { return impl_->registry; }

namespace {

boost::asio::awaitable<boost::system::error_code> collect(std::shared_ptr<detail::metrics_impl> m) {
    boost::system::error_code first;
    // A copy: the map may grow while a read is under way.
    const auto queues = m->queues;
    for (const auto& [name, weak] : queues) {
        auto s = weak.lock();
        if (!s || s->closed) continue;
        request req;
        req.push("LLEN", s->keys.queue(name));
        std::int64_t depth = 0;
        diagnostics d;
        auto [ec, n] = co_await s->conn.async_exec(
            req, depth, d, boost::asio::as_tuple(boost::asio::use_awaitable));
        if (ec) {
            if (!first) first = ec;
            continue;
        }
        m->depth.at({name}).Set(static_cast<double>(depth));
    }
    co_return first;
}

}  // namespace

void metrics::collect_impl(boost::asio::any_completion_handler<void(boost::system::error_code)> h) {
    if (!impl_->executor) {
        std::move(h)(boost::system::error_code{});  // nothing was ever attached: nothing to read
        return;
    }
    detail::launch(*impl_->executor, collect(impl_), std::move(h));
}

std::string metrics::prometheus_text() const {
    double held = 0;
    for (const auto& a : impl_->sessions)
        if (auto s = a.session.lock(); s && !s->closed) held += static_cast<double>(s->dog.size());
    impl_->held.at({}).Set(held);
    prometheus::TextSerializer serializer;
    return serializer.Serialize(impl_->registry->Collect());
}

}  // namespace redcoord
