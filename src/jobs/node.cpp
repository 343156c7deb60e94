// A node's part of the job system (jobs.hpp): its claim loop (which also records the attempts
// that ended), lease renewals, cancellations and recurring jobs, on src/lua/job_*.lua.
#include <redcoord/script.hpp>

#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/system_timer.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <random>

#include "core/random.hpp"
#include "jobs/scheduler_impl.hpp"

namespace redcoord::detail {

using std::chrono::milliseconds;
namespace {
constexpr auto nothrow = jobs_nothrow;
}  // namespace

std::int64_t unix_ms(sys_clock::time_point t) {
    return std::chrono::duration_cast<milliseconds>(t.time_since_epoch()).count();
}
sys_clock::time_point from_ms(std::int64_t ms) { return sys_clock::time_point(milliseconds(ms)); }

std::int64_t to_i64(const std::string& s) {
    try {
        return s.empty() ? 0 : std::stoll(s);
    } catch (...) {
        return 0;
    }
}

double random_unit() {
    thread_local std::mt19937_64 gen{std::random_device{}()};
    return std::uniform_real_distribution<double>(0.0, 1.0)(gen);
}

// What is wrong with o, or empty.
std::string options_problem(const job_options& o) {
    const auto& r = o.retry;
    if (r.max_attempts < 1 || r.max_attempts > 1000)
        return "retry.max_attempts: " + std::to_string(r.max_attempts) + " is not in [1, 1000]";
    if (auto p = detail::duration_problem(r.delay, true); !p.empty()) return "retry.delay: " + p;
    if (auto p = detail::duration_problem(r.max_delay, true); !p.empty())
        return "retry.max_delay: " + p;
    if (r.max_delay < r.delay)
        return "retry.max_delay: " + std::to_string(r.max_delay.count()) +
               " ms is shorter than retry.delay (" + std::to_string(r.delay.count()) + " ms)";
    if (!(r.jitter >= 0.0 && r.jitter <= 1.0))
        return "retry.jitter: " + std::to_string(r.jitter) + " is not in [0, 1]";
    if (auto p = detail::duration_problem(o.timeout, true); !p.empty()) return "timeout: " + p;
    if (o.priority < -1000 || o.priority > 1000)
        return "priority: " + std::to_string(o.priority) + " is not in [-1000, 1000]";
    if (o.rate_limit > 0)
        if (auto p = detail::duration_problem(o.rate_window, false); !p.empty())
            return "rate_window: " + p;
    return {};
}

// The option fields of a job's record (job_*.lua read them by these names): priority and
// max_attempts always, the others only when they differ from job_options' defaults (the
// scripts know those: DEFAULT_* in src/lua/lib/jobs.lua).
std::vector<std::string> option_fields(const std::string& function, const job_options& o) {
    static const job_options defaults{};
    const std::uint32_t limit = o.singleton ? 1 : o.concurrency_limit;
    std::vector<std::string> out{"priority", std::to_string(o.priority), "max_attempts",
                                 std::to_string(o.retry.max_attempts)};
    auto add = [&](const char* name, std::string value) {
        out.push_back(name);
        out.push_back(std::move(value));
    };
    if (o.retry.backoff != defaults.retry.backoff) add("backoff", "fixed");
    if (o.retry.delay != defaults.retry.delay)
        add("delay_ms", std::to_string(o.retry.delay.count()));
    if (o.retry.max_delay != defaults.retry.max_delay)
        add("max_delay_ms", std::to_string(o.retry.max_delay.count()));
    if (o.retry.jitter != defaults.retry.jitter) add("jitter", std::to_string(o.retry.jitter));
    if (o.timeout.count() != 0) add("timeout_ms", std::to_string(o.timeout.count()));
    if (limit > 0 || o.rate_limit > 0) {
        add("group", o.concurrency_key.empty() ? function : o.concurrency_key);
        add("group_limit", std::to_string(limit));
        add("rate_limit", std::to_string(o.rate_limit));
        add("rate_window_ms", std::to_string(o.rate_window.count()));
    }
    return out;
}

asio::awaitable<void> scheduler_impl::run() {
    auto self = shared_from_this();
    active = true;
    stopping = false;
    // The bus names channels by their event name (it adds the prefix).
    auto wake_sub = bus.subscribe<boost::json::value>(
        event_name + ":wake", [this](error_code, const event<boost::json::value>&) { poke(); });
    auto cancel_sub = bus.subscribe<std::string>(
        event_name + ":cancel", [this](error_code ec, const event<std::string>& ev) {
            if (ec) return;
            if (auto it = running.find(ev.value); it != running.end())
                it->second->request_stop(stop_kind::cancelled);
        });
    co_await publish_functions();
    auto ex = si->conn.get_executor();
    asio::co_spawn(ex, renew_loop(), asio::bind_cancellation_slot(child_slot(), asio::detached));
    for (auto& r : recurring) spawn_cron(r);

    try {
        co_await claim_loop();
    } catch (...) {
    }
    stopping = true;
    stop_children();
    for (auto& [id, job] : running) job->request_stop(stop_kind::shutdown);
    // Wait for the jobs to hand themselves back (each pokes when done), then record them.
    while (!running.empty()) {
        wake_timer.expires_after(std::chrono::seconds(1));
        co_await wake_timer.async_wait(nothrow);
    }
    for (int tries = 0; !ended.empty() && tries < 3; ++tries) {
        error_code ec;
        co_await claim_once(0, ec);
        if (ec == error::session_closed) break;
    }
    // A last upkeep (job_renew.lua with no job): the indexes the last steps made get
    // their TTL.
    {
        static const script& renew = script::embedded("job_renew");
        auto args = common_args();
        args.push_back(std::to_string(opts.lease.count()));
        std::vector<std::int64_t> status;
        diagnostics diag;
        co_await eval(si->conn, renew, keys(), args, status, diag, {}, false);
    }
    active = false;
}

// Stores the options of the functions this node runs (S:fn:<name>), which enqueues from
// nodes that do not run them take (job_enqueue.lua).
asio::awaitable<void> scheduler_impl::publish_functions() {
    if (functions.empty()) co_return;
    request req;
    for (auto& [name, f] : functions) {
        const auto key = base + ":fn:" + name;
        req.push("DEL", key);
        req.push_range("HSET", key, option_fields(name, f.second));
        req.push("PEXPIRE", key, opts.record_ttl.count());
    }
    diagnostics d;
    ignore_t ig;
    co_await si->conn.async_exec(req, ig, d, nothrow);
}

void scheduler_impl::spawn_cron(const std::shared_ptr<recurring_state>& r) {
    asio::co_spawn(si->conn.get_executor(), cron_loop(r),
                   asio::bind_cancellation_slot(child_slot(), asio::detached));
}

std::vector<std::string> scheduler_impl::runnable() const {
    std::vector<std::string> out;
    for (auto& [name, f] : functions) out.push_back(name);
    return out;
}

// One call of job_claim.lua: records the attempts that ended, claims up to want jobs and
// starts them. Returns the reply's (queued left, next due, server now), or nullopt on error
// (the ended attempts are kept for the next call: recording one twice does nothing).
asio::awaitable<std::optional<scheduler_impl::claim_result>> scheduler_impl::claim_once(
    std::size_t want, error_code& ec) {
    static const script& claim = script::embedded("job_claim");
    auto args = common_args();
    args.push_back(std::to_string(want));
    args.push_back(std::to_string(opts.lease.count()));
    args.push_back(std::to_string(std::max<std::int64_t>(opts.poll_interval.count() * 2, 1000)));
    args.push_back(std::to_string(random_unit()));
    std::vector<ended_attempt> sending;
    sending.swap(ended);
    args.push_back(std::to_string(sending.size()));
    for (auto& e : sending)
        args.insert(args.end(), {e.id, e.fence, e.outcome, e.error, e.has_result ? "1" : "0"});
    if (want > 0)
        for (auto& f : runnable()) args.push_back(f);
    const auto sent = steady::now();
    resp3::tree reply;
    diagnostics diag;
    auto [eec, n] = co_await eval(si->conn, claim, keys(), args, reply, diag, {}, false);
    ec = eec;
    if (ec || reply.children.size() < 3) {
        ended.insert(ended.begin(), std::make_move_iterator(sending.begin()),
                     std::make_move_iterator(sending.end()));
        co_return std::nullopt;
    }
    claim_result r;
    r.ready_left = to_i64(reply.children[0].value);
    r.next_due = to_i64(reply.children[1].value);
    r.server_now = to_i64(reply.children[2].value);
    for (std::size_t i = 3; i < reply.children.size(); ++i) {
        start_job(reply.children[i].children, sent);
        ++r.claimed;
    }
    co_return r;
}

asio::awaitable<void> scheduler_impl::claim_loop() {
    auto cs = co_await asio::this_coro::cancellation_state;
    auto ex = co_await asio::this_coro::executor;
    while (!stopping && cs.cancelled() == asio::cancellation_type::none) {
        // The jobs the last call started take their first steps before the next call: a short
        // job ends in them (its function, then hand_over), so that call counts its slot free and
        // records its end, and a node of short jobs makes half the calls.
        for (int turn = 0; turn < 3 && !running.empty(); ++turn)
            co_await asio::post(ex, asio::use_awaitable);
        poked = false;
        const std::size_t want =
            opts.concurrency > running.size() ? opts.concurrency - running.size() : 0;
        error_code ec;
        auto r = co_await claim_once(want, ec);
        milliseconds sleep = opts.poll_interval;
        if (r) {
            if (r->next_due > 0)
                sleep = std::min(
                    sleep, milliseconds(std::max<std::int64_t>(r->next_due - r->server_now, 0)));
            if (want > 0 && r->claimed == want && r->ready_left > 0) continue;
            if (r->next_due > 0 && r->next_due <= r->server_now) continue;
        } else if (ec == error::session_closed) {
            co_return;
        }
        if (poked || stopping) continue;
        wake_timer.expires_after(sleep);
        co_await wake_timer.async_wait(nothrow);
    }
}

void scheduler_impl::start_job(const std::vector<resp3::tree>& f, steady::time_point sent) {
    if (f.size() < 8) return;
    auto job = std::make_shared<running_job>();
    job->owner = this;
    job->id = f[0].value;
    job->function = f[1].value;
    job->payload = f[2].value;
    job->attempt = static_cast<std::uint32_t>(to_i64(f[3].value));
    job->max_attempts = static_cast<std::uint32_t>(to_i64(f[4].value));
    job->fence = static_cast<std::uint64_t>(to_i64(f[5].value));
    job->timeout = milliseconds(to_i64(f[6].value));
    if (!f[7].value.empty()) job->occurrence = from_ms(to_i64(f[7].value));
    job->lease_deadline = sent + opts.lease - drift();
    running[job->id] = job;
    trace_job(*job, "running");
    auto fit = functions.find(job->function);
    auto ex = si->conn.get_executor();
    if (fit == functions.end()) {  // unregistered since: hand it back
        job->stop = stop_kind::shutdown;
        hand_over(*job, "interrupted", "no such function on node " + si->node_id, false);
        return;
    }
    if (job->timeout.count() > 0) {
        job->timer.emplace(ex);
        job->timer->expires_after(job->timeout);
        job->timer->async_wait([job](error_code ec) {
            if (!ec) job->request_stop(stop_kind::timeout);
        });
    }
    auto self = shared_from_this();
    asio::co_spawn(
        ex, fit->second.first(job->ctx),
        asio::bind_cancellation_slot(job->signal.slot(),
                                     [self, job](std::exception_ptr ep, boost::json::value result) {
                                         self->on_done(job, ep, std::move(result));
                                     }));
}

void scheduler_impl::trace_job(const running_job& job, std::string_view state) const {
    if (!si->trace.on(detail::trace_coordination)) return;
    std::string text(state);
    text.append(" ").append(job.function);
    trace_event e;
    e.kind = trace_kind::job_transition;
    e.primitive = "job";
    e.resource = job.id;
    e.node = si->node_id;
    e.token = job.attempt;
    if (state != "running") e.duration = detail::micros(steady::now() - job.started);
    e.detail = text;
    si->trace.emit(detail::trace_coordination, e);
}

milliseconds scheduler_impl::drift() const {
    auto d = std::chrono::duration_cast<milliseconds>(opts.lease * si->opts.clock_drift_factor) +
             si->opts.clock_drift_floor;
    return d;
}

void scheduler_impl::on_done(const std::shared_ptr<running_job>& job, std::exception_ptr ep,
                             boost::json::value result) {
    if (job->timer) job->timer->cancel();
    std::string outcome = "succeeded", err;
    switch (job->stop) {
        case stop_kind::shutdown:
            outcome = "interrupted";
            err = "node " + si->node_id + " stopped";
            break;
        case stop_kind::lease_lost:
            outcome = "interrupted";
            err = "lease lost on node " + si->node_id;
            break;
        case stop_kind::cancelled:
            outcome = "cancelled";
            err = "cancelled";
            break;
        case stop_kind::timeout:
            outcome = "failed";
            err = "timed out after " + std::to_string(job->timeout.count()) + " ms";
            break;
        case stop_kind::none:
            if (ep) {
                outcome = "failed";
                try {
                    std::rethrow_exception(ep);
                } catch (const std::exception& e) {
                    err = e.what();
                } catch (...) {
                    err = "unknown exception";
                }
                if (err.empty()) err = "failed";
            }
            break;
    }
    trace_job(*job, outcome);
    if (outcome != "succeeded" || result.is_null()) {
        // (no result to store first: handed to the claim loop now)
        hand_over(*job, std::move(outcome), std::move(err), false);
        return;
    }
    asio::co_spawn(si->conn.get_executor(), store_result(job, std::move(result)), asio::detached);
}

// Hands an attempt's end to the claim loop, which records it with its next call (several ends
// in one call).
void scheduler_impl::hand_over(const running_job& job, std::string outcome, std::string err,
                               bool stored) {
    ended.push_back(
        {job.id, std::to_string(job.fence), std::move(outcome), std::move(err), stored});
    running.erase(job.id);
    poke();
}

// Stores the result of a succeeded attempt, then hands the attempt's end over.
asio::awaitable<void> scheduler_impl::store_result(std::shared_ptr<running_job> job,
                                                   boost::json::value result) {
    auto self = shared_from_this();
    diagnostics d;
    auto [ec] =
        co_await results.async_store_result(job->id, result_status::succeeded, result, d, nothrow);
    hand_over(*job, "succeeded", "", !ec);
}

asio::awaitable<void> scheduler_impl::renew_loop() {
    static const script& renew = script::embedded("job_renew");
    auto self = shared_from_this();
    asio::steady_timer timer(si->conn.get_executor());
    const auto every = std::max(milliseconds(10), opts.lease / 3);
    for (std::uint64_t round = 1;; ++round) {
        if (round % 1000 == 0) co_await publish_functions();
        timer.expires_after(every);
        auto [wec] = co_await timer.async_wait(nothrow);
        if (wec || stopping) co_return;
        const auto now = steady::now();
        std::vector<std::shared_ptr<running_job>> jobs;
        for (auto& [id, job] : running) {
            if (job->stop != stop_kind::none) continue;
            if (now >= job->lease_deadline) {
                job->request_stop(stop_kind::lease_lost);
                continue;
            }
            jobs.push_back(job);
        }
        auto args = common_args();
        args.push_back(std::to_string(opts.lease.count()));
        for (auto& j : jobs) {
            args.push_back(j->id);
            args.push_back(std::to_string(j->fence));
        }
        std::vector<std::int64_t> status;
        diagnostics diag;
        const auto sent = steady::now();
        auto [ec, n] = co_await eval(si->conn, renew, keys(), args, status, diag, {}, false);
        if (ec) {
            if (ec == error::session_closed) co_return;
            continue;
        }
        for (std::size_t i = 0; i < jobs.size() && i < status.size(); ++i) {
            if (status[i] == 0) {
                jobs[i]->request_stop(stop_kind::lease_lost);
            } else {
                jobs[i]->lease_deadline = sent + opts.lease - drift();
                if (status[i] == 2) jobs[i]->request_stop(stop_kind::cancelled);
            }
        }
    }
}

// The occurrences of r in (known, now], as many as the misfire policy enqueues, and the
// latest of them (what is recorded as fired); nullopt when none is due.
std::optional<std::pair<std::int64_t, std::vector<std::int64_t>>> scheduler_impl::due_occurrences(
    recurring_state& r, sys_clock::time_point now) {
    if (!r.known) return std::nullopt;
    std::vector<std::int64_t> all;
    auto t = from_ms(*r.known);
    std::int64_t latest = 0;
    std::size_t count = 0;
    while (auto next = r.schedule.next_after(t)) {
        if (*next > now) break;
        t = *next;
        latest = unix_ms(t);
        if (++count > 100000) break;
        all.push_back(latest);
        if (all.size() > 2000) all.erase(all.begin(), all.begin() + 1000);
    }
    if (latest == 0) return std::nullopt;
    std::vector<std::int64_t> fire, missed;
    const auto grace = unix_ms(now) - opts.misfire_grace.count();
    for (auto o : all) (o >= grace ? fire : missed).push_back(o);
    if (!missed.empty()) {
        switch (r.def.misfire) {
            case misfire_policy::skip:
                break;
            case misfire_policy::run_once:
                fire.insert(fire.begin(), missed.back());
                break;
            case misfire_policy::run_each:
                if (missed.size() > 1000) missed.erase(missed.begin(), missed.end() - 1000);
                fire.insert(fire.begin(), missed.begin(), missed.end());
                break;
        }
    }
    return std::make_pair(latest, std::move(fire));
}

asio::awaitable<void> scheduler_impl::cron_loop(std::shared_ptr<recurring_state> r) {
    auto self = shared_from_this();
    static const script& fire = script::embedded("job_fire");
    asio::system_timer timer(si->conn.get_executor());
    auto cs = co_await asio::this_coro::cancellation_state;
    while (!stopping && cs.cancelled() == asio::cancellation_type::none) {
        if (!r->loaded) {
            request req;
            req.push("GET", base + ":cron:" + r->def.name);
            req.push("HSET", base + ":recurring", r->def.name, definition_json(*r));
            response<std::optional<std::string>, ignore_t> resp;
            diagnostics d;
            auto [ec, n] = co_await si->conn.async_exec(req, resp, d, nothrow);
            if (ec) {
                if (ec == error::session_closed) co_return;
                timer.expires_after(opts.poll_interval);
                co_await timer.async_wait(nothrow);
                continue;
            }
            auto& last = std::get<0>(resp);
            // First run anywhere: nothing was missed; the schedule starts now.
            r->known = last ? to_i64(*last) : unix_ms(sys_clock::now());
            r->loaded = true;
            r->first_known_was_set = last.has_value();
        }
        const auto now = sys_clock::now();
        auto due = due_occurrences(*r, now);
        if (!due) {
            auto next = r->schedule.next_after(std::max(now, from_ms(*r->known)));
            if (!next) co_return;  // never fires again
            timer.expires_at(*next);
            co_await timer.async_wait(nothrow);
            continue;
        }
        auto args = common_args();
        args.push_back(r->def.name);
        args.push_back(r->first_known_was_set ? std::to_string(*r->known) : "");
        args.push_back(std::to_string(due->first));
        args.push_back(r->def.function);
        args.push_back(r->def.payload);
        args.push_back(std::to_string(due->second.size()));
        for (auto o : due->second) args.push_back(std::to_string(o));
        args.insert(args.end(), r->fields.begin(), r->fields.end());
        resp3::tree reply;
        diagnostics d;
        auto [ec, n] = co_await eval(si->conn, fire, keys(), args, reply, d, {}, false);
        if (ec || reply.children.size() < 2) {
            if (ec == error::session_closed) co_return;
            timer.expires_after(std::min(opts.poll_interval, milliseconds(100)));
            co_await timer.async_wait(nothrow);
            continue;
        }
        const auto code = to_i64(reply.children[0].value);
        const auto& last = reply.children[1].value;
        if (!last.empty()) {
            r->known = to_i64(last);
            r->first_known_was_set = true;
        }
        if (code == 1) poke();  // this node queued it: look for it at once
    }
}

std::string scheduler_impl::definition_json(const recurring_state& r) const {
    boost::json::object o;
    o["cron"] = r.def.cron;
    o["time_zone"] = r.def.time_zone;
    o["function"] = r.def.function;
    o["misfire"] = r.def.misfire == misfire_policy::skip       ? "skip"
                   : r.def.misfire == misfire_policy::run_once ? "run_once"
                                                               : "run_each";
    return boost::json::serialize(o);
}

}  // namespace redcoord::detail
