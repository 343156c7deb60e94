// The job system (jobs.hpp): a node's claim loop, lease renewals, cancellations and recurring
// jobs, on the scripts of src/lua/job_*.lua.
#include "core/data_ops.hpp"
#include "core/random.hpp"

#include <redcoord/cron.hpp>
#include <redcoord/events.hpp>
#include <redcoord/jobs.hpp>
#include <redcoord/results.hpp>
#include <redcoord/script.hpp>

#include <boost/asio/detached.hpp>
#include <boost/asio/system_timer.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <list>
#include <map>
#include <random>
#include <set>

namespace redcoord {

namespace asio = boost::asio;
using boost::system::error_code;
using std::chrono::milliseconds;
using sys_clock = std::chrono::system_clock;
using steady = std::chrono::steady_clock;

namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

constexpr std::string_view state_names[] = {"waiting", "scheduled", "queued",    "running",
                                            "retrying", "succeeded", "failed", "cancelled"};

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

std::string new_job_id() {
    std::string out;
    detail::append_random_hex(out, 2);
    return out;
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

job_record record_from_fields(const std::vector<resp3::tree>& kv) {
    job_record r;
    for (std::size_t i = 0; i + 1 < kv.size(); i += 2) {
        const std::string& k = kv[i].value;
        const std::string& v = kv[i + 1].value;
        if (k == "id") r.id = v;
        else if (k == "function") r.function = v;
        else if (k == "payload") r.payload = v;
        else if (k == "state") r.state = parse_job_state(v).value_or(job_state::queued);
        else if (k == "attempts") r.attempts = static_cast<std::uint32_t>(to_i64(v));
        else if (k == "max_attempts") r.max_attempts = static_cast<std::uint32_t>(to_i64(v));
        else if (k == "fence") r.fencing_token = static_cast<std::uint64_t>(to_i64(v));
        else if (k == "priority") r.priority = static_cast<int>(to_i64(v));
        else if (k == "node") r.node = v;
        else if (k == "error") r.error = v;
        else if (k == "progress") r.progress = v;
        else if (k == "recurring") r.recurring = v;
        else if (k == "created_ms") r.created = from_ms(to_i64(v));
        else if (k == "due_ms") r.due = from_ms(to_i64(v));
        else if (k == "started_ms") r.started = from_ms(to_i64(v));
        else if (k == "finished_ms") r.finished = from_ms(to_i64(v));
        else if (k == "has_result") r.has_result = v == "1";
        else if (k == "depends_on" && !v.empty()) {
            std::size_t start = 0;
            while (start <= v.size()) {
                auto comma = v.find(',', start);
                if (comma == std::string::npos) comma = v.size();
                r.depends_on.push_back(v.substr(start, comma - start));
                start = comma + 1;
            }
        }
    }
    return r;
}

job_event event_from_json(const std::string& text) {
    job_event e;
    error_code ec;
    auto v = boost::json::parse(text, ec);
    if (ec || !v.is_object()) return e;
    const auto& o = v.as_object();
    if (auto* p = o.if_contains("state"); p && p->is_string())
        e.state = parse_job_state(p->as_string()).value_or(job_state::queued);
    if (auto* p = o.if_contains("attempt"); p && p->is_int64())
        e.attempt = static_cast<std::uint32_t>(p->as_int64());
    if (auto* p = o.if_contains("node"); p && p->is_string()) e.node = p->as_string().c_str();
    if (auto* p = o.if_contains("error"); p && p->is_string()) e.error = p->as_string().c_str();
    if (auto* p = o.if_contains("at"); p && p->is_int64()) e.at = from_ms(p->as_int64());
    return e;
}

}  // namespace

std::string_view to_string(job_state s) noexcept { return state_names[static_cast<int>(s)]; }

std::optional<job_state> parse_job_state(std::string_view name) noexcept {
    for (std::size_t i = 0; i < std::size(state_names); ++i)
        if (state_names[i] == name) return static_cast<job_state>(i);
    return std::nullopt;
}

namespace detail {

enum class stop_kind { none, cancelled, timeout, lease_lost, shutdown };

struct running_job {
    scheduler_impl* owner = nullptr;
    std::string id, function, payload;
    std::uint32_t attempt = 0, max_attempts = 1;
    std::uint64_t fence = 0;
    milliseconds timeout{0};
    std::optional<sys_clock::time_point> occurrence;
    asio::cancellation_signal signal;
    stop_kind stop = stop_kind::none;
    steady::time_point lease_deadline;
    std::optional<asio::steady_timer> timer;
    job_context ctx{this};

    void request_stop(stop_kind why) {
        if (stop != stop_kind::none) return;
        stop = why;
        signal.emit(asio::cancellation_type::terminal);
    }
};

// An attempt that ended on this node, until the claim loop's next call records it.
struct ended_attempt {
    std::string id, fence, outcome, error;
    bool has_result = false;
};

struct recurring_state {
    recurring_state(recurring_job d, cron_schedule s, std::vector<std::string> f)
        : def(std::move(d)), schedule(std::move(s)), fields(std::move(f)) {}
    recurring_job def;
    cron_schedule schedule;
    std::vector<std::string> fields;
    std::optional<std::int64_t> known;  // last fired occurrence as this node knows it
    bool first_known_was_set = false;   // known came from Redis (else: no occurrence fired yet)
    bool loaded = false;
};

class scheduler_impl : public std::enable_shared_from_this<scheduler_impl> {
public:
    scheduler_impl(session& s, scheduler_options o)
        : sess(&s),
          si(access::impl(s)),
          opts(std::move(o)),
          base(si->keys.prefix() + "jobs:{" + opts.name + "}"),
          events(si->keys.channel("jobs:" + opts.name)),
          wake_channel(si->keys.channel("jobs:" + opts.name + ":wake")),
          cancel_channel(si->keys.channel("jobs:" + opts.name + ":cancel")),
          wake_timer(si->conn.get_executor()),
          bus(s),
          results(s) {}

    session* sess;
    std::shared_ptr<session_impl> si;
    scheduler_options opts;
    std::string base, events, wake_channel, cancel_channel;
    std::map<std::string, std::pair<job_function, job_options>> functions;
    std::vector<std::shared_ptr<recurring_state>> recurring;
    std::map<std::string, std::shared_ptr<running_job>> running;
    std::vector<ended_attempt> ended;  // recorded by the claim loop's next call
    asio::steady_timer wake_timer;
    event_bus bus;
    result_store results;
    bool active = false, stopping = false, poked = false;
    // The renew and cron loops (a signal's slot holds one handler: one signal each).
    std::list<asio::cancellation_signal> children;

    asio::cancellation_slot child_slot() { return children.emplace_back().slot(); }
    void stop_children() {
        // Kept, not cleared: a coroutine keeps its slot until it ends.
        for (auto& c : children) c.emit(asio::cancellation_type::terminal);
    }

    std::vector<std::string> keys() const { return {base}; }
    std::vector<std::string> common_args() const {
        return {events, std::to_string(opts.record_ttl.count()), si->node_id, wake_channel};
    }

    void poke() {
        poked = true;
        wake_timer.cancel();
    }

    const job_options& options_of(const std::string& fn) const {
        static const job_options defaults{};
        auto it = functions.find(fn);
        return it == functions.end() ? defaults : it->second.second;
    }

    // ---- the node's loops ----------------------------------------------------------------

    asio::awaitable<void> run() {
        auto self = shared_from_this();
        active = true;
        stopping = false;
        // The bus names channels by their event name (it adds the prefix).
        auto wake_sub = bus.subscribe<boost::json::value>(
            "jobs:" + opts.name + ":wake", [this](error_code, const event<boost::json::value>&) { poke(); });
        auto cancel_sub = bus.subscribe<std::string>(
            "jobs:" + opts.name + ":cancel", [this](error_code ec, const event<std::string>& ev) {
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
    asio::awaitable<void> publish_functions() {
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

    void spawn_cron(const std::shared_ptr<recurring_state>& r) {
        asio::co_spawn(si->conn.get_executor(), cron_loop(r),
                       asio::bind_cancellation_slot(child_slot(), asio::detached));
    }

    std::vector<std::string> runnable() const {
        std::vector<std::string> out;
        for (auto& [name, f] : functions) out.push_back(name);
        return out;
    }

    // One call of job_claim.lua: records the attempts that ended, claims up to want jobs and
    // starts them. Returns the reply's (queued left, next due, server now), or nullopt on error
    // (the ended attempts are kept for the next call: recording one twice does nothing).
    struct claim_result {
        std::int64_t ready_left = 0, next_due = 0, server_now = 0;
        std::size_t claimed = 0;
    };
    asio::awaitable<std::optional<claim_result>> claim_once(std::size_t want, error_code& ec) {
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

    asio::awaitable<void> claim_loop() {
        auto cs = co_await asio::this_coro::cancellation_state;
        while (!stopping && cs.cancelled() == asio::cancellation_type::none) {
            poked = false;
            const std::size_t want =
                opts.concurrency > running.size() ? opts.concurrency - running.size() : 0;
            error_code ec;
            auto r = co_await claim_once(want, ec);
            milliseconds sleep = opts.poll_interval;
            if (r) {
                if (r->next_due > 0)
                    sleep = std::min(sleep, milliseconds(std::max<std::int64_t>(
                                                r->next_due - r->server_now, 0)));
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

    void start_job(const std::vector<resp3::tree>& f, steady::time_point sent) {
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
        auto fit = functions.find(job->function);
        auto ex = si->conn.get_executor();
        if (fit == functions.end()) {  // unregistered since: hand it back
            job->stop = stop_kind::shutdown;
            asio::co_spawn(ex, finish(job, "interrupted", "no such function on node " + si->node_id, {}),
                           asio::detached);
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
        asio::co_spawn(ex, fit->second.first(job->ctx),
                       asio::bind_cancellation_slot(
                           job->signal.slot(),
                           [self, job](std::exception_ptr ep, boost::json::value result) {
                               self->on_done(job, ep, std::move(result));
                           }));
    }

    milliseconds drift() const {
        auto d = std::chrono::duration_cast<milliseconds>(opts.lease * si->opts.clock_drift_factor) +
                 si->opts.clock_drift_floor;
        return d;
    }

    void on_done(const std::shared_ptr<running_job>& job, std::exception_ptr ep,
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
        asio::co_spawn(si->conn.get_executor(),
                       finish(job, outcome, err, outcome == "succeeded" ? std::move(result)
                                                                        : boost::json::value()),
                       asio::detached);
    }

    // Stores the job's result (when it has one), then hands the attempt's end to the claim
    // loop, which records it with its next call (several ends in one call).
    asio::awaitable<void> finish(std::shared_ptr<running_job> job, std::string outcome,
                                 std::string err, boost::json::value result) {
        auto self = shared_from_this();
        bool stored = false;
        if (!result.is_null()) {
            diagnostics d;
            auto [ec] = co_await results.async_store_result(job->id, result_status::succeeded,
                                                            result, d, nothrow);
            stored = !ec;
        }
        ended.push_back({job->id, std::to_string(job->fence), std::move(outcome), std::move(err),
                         stored});
        running.erase(job->id);
        poke();
    }

    asio::awaitable<void> renew_loop() {
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
    std::optional<std::pair<std::int64_t, std::vector<std::int64_t>>> due_occurrences(
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
            case misfire_policy::skip: break;
            case misfire_policy::run_once: fire.insert(fire.begin(), missed.back()); break;
            case misfire_policy::run_each:
                if (missed.size() > 1000) missed.erase(missed.begin(), missed.end() - 1000);
                fire.insert(fire.begin(), missed.begin(), missed.end());
                break;
            }
        }
        return std::make_pair(latest, std::move(fire));
    }

    asio::awaitable<void> cron_loop(std::shared_ptr<recurring_state> r) {
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

    std::string definition_json(const recurring_state& r) const {
        boost::json::object o;
        o["cron"] = r.def.cron;
        o["time_zone"] = r.def.time_zone;
        o["function"] = r.def.function;
        o["misfire"] = r.def.misfire == misfire_policy::skip       ? "skip"
                       : r.def.misfire == misfire_policy::run_once ? "run_once"
                                                                   : "run_each";
        return boost::json::serialize(o);
    }
};

}  // namespace detail

// ---- job_context --------------------------------------------------------------------------

const std::string& job_context::id() const noexcept { return job_->id; }
const std::string& job_context::function() const noexcept { return job_->function; }
const std::string& job_context::payload() const noexcept { return job_->payload; }
std::uint32_t job_context::attempt() const noexcept { return job_->attempt; }
std::uint32_t job_context::max_attempts() const noexcept { return job_->max_attempts; }
std::uint64_t job_context::fencing_token() const noexcept { return job_->fence; }
std::optional<sys_clock::time_point> job_context::occurrence() const noexcept {
    return job_->occurrence;
}
asio::cancellation_slot job_context::cancellation_slot() const noexcept {
    return job_->signal.slot();
}
bool job_context::stop_requested() const noexcept {
    return job_->stop != detail::stop_kind::none;
}

void job_context::throw_decode_failed(const char* what) const {
    diagnostics d;
    d.set_client_message("job " + job_->id + ": payload does not convert: " + what);
    throw error_with_diagnostics(error::decode_failed, d);
}

void job_context::progress_impl(std::string p,
                                asio::any_completion_handler<void(error_code)> h) {
    auto* owner = job_->owner;
    auto s = owner->si;
    auto self = owner->shared_from_this();
    auto coro = [](std::shared_ptr<detail::scheduler_impl> self, std::string id,
                   std::uint64_t fence, std::string p) -> asio::awaitable<error_code> {
        static const script& sc = script::embedded("job_progress");
        auto args = self->common_args();
        args.insert(args.end(), {id, std::to_string(fence), std::move(p)});
        std::int64_t ok = 0;
        diagnostics d;
        auto [ec, n] = co_await detail::eval(self->si->conn, sc, self->keys(), args, ok, d);
        if (!ec && ok == 0) ec = error::lease_lost;
        co_return ec;
    };
    detail::launch(*s, coro(self, job_->id, job_->fence, std::move(p)), std::move(h));
}

// ---- scheduler ----------------------------------------------------------------------------

scheduler::scheduler(session& s, scheduler_options opts) : session_(&s) {
    if (opts.name.empty()) detail::throw_bad_config("name: empty");
    for (char c : opts.name)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '{' || c == '}')
            detail::throw_bad_config("name: \"" + opts.name +
                                     "\" holds a control character or a brace");
    detail::check_duration_option("lease", opts.lease);
    if (opts.lease < milliseconds(100))
        detail::throw_bad_config("lease: " + std::to_string(opts.lease.count()) +
                                 " ms is shorter than 100 ms");
    detail::check_duration_option("poll_interval", opts.poll_interval);
    detail::check_duration_option("record_ttl", opts.record_ttl);
    if (opts.record_ttl < std::chrono::seconds(1))
        detail::throw_bad_config("record_ttl: " + std::to_string(opts.record_ttl.count()) +
                                 " ms is shorter than 1 s");
    detail::check_duration_option("misfire_grace", opts.misfire_grace, true);
    impl_ = std::make_shared<detail::scheduler_impl>(s, std::move(opts));
}

scheduler::~scheduler() { stop(); }

const scheduler_options& scheduler::options() const noexcept { return impl_->opts; }

std::string scheduler::events_channel() const { return "jobs:" + impl_->opts.name; }

void scheduler::stop() {
    impl_->stopping = true;
    impl_->wake_timer.cancel();
    impl_->stop_children();
}

void scheduler::add_function_impl(std::string name, job_function fn, job_options opts) {
    diagnostics d;
    if (name.empty()) {
        d.set_client_message("add_function: empty function name");
        throw error_with_diagnostics(error::invalid_argument, d);
    }
    if (auto p = options_problem(opts); !p.empty()) {
        d.set_client_message("add_function \"" + name + "\": " + p);
        throw error_with_diagnostics(error::invalid_argument, d);
    }
    impl_->functions[name] = {std::move(fn), std::move(opts)};
    impl_->poke();
}

void scheduler::add_recurring(recurring_job job) {
    diagnostics d;
    auto bad = [&](std::string msg) {
        d.set_client_message("add_recurring \"" + job.name + "\": " + msg);
        throw error_with_diagnostics(error::invalid_argument, d);
    };
    if (job.name.empty()) bad("empty name");
    if (job.function.empty()) bad("empty function name");
    for (auto& r : impl_->recurring)
        if (r->def.name == job.name) bad("a recurring job of this name was added already");
    error_code ec;
    diagnostics cd;
    auto sched = cron_schedule::parse(job.cron, job.time_zone, ec, cd);
    if (!sched) bad(cd.client_message());
    if (!sched->next_after(sys_clock::now())) bad("cron \"" + job.cron + "\" never fires");
    job_options o = job.options ? *job.options : impl_->options_of(job.function);
    if (auto p = options_problem(o); !p.empty()) bad(p);
    auto fields = option_fields(job.function, o);
    auto st = std::make_shared<detail::recurring_state>(std::move(job), std::move(*sched),
                                                        std::move(fields));
    impl_->recurring.push_back(st);
    if (impl_->active && !impl_->stopping) impl_->spawn_cron(st);
}

void scheduler::run_impl(ec_handler h) {
    auto& im = *impl_;
    if (im.active) {
        return detail::complete_later(*im.si, std::move(h),
                                      error_code(asio::error::already_started));
    }
    auto coro = [](std::shared_ptr<detail::scheduler_impl> im) -> asio::awaitable<error_code> {
        co_await im->run();
        co_return error_code(asio::error::operation_aborted);
    };
    // The claim loop listens to the handler's cancellation through the coroutine; stop()
    // ends it too.
    auto slot = asio::get_associated_cancellation_slot(h);
    if (slot.is_connected()) {
        slot.assign([im = impl_](asio::cancellation_type) {
            im->stopping = true;
            im->wake_timer.cancel();
        });
    }
    asio::co_spawn(im.si->conn.get_executor(), coro(impl_),
                   [h = std::move(h)](std::exception_ptr, error_code ec) mutable {
                       asio::dispatch(asio::append(std::move(h), ec));
                   });
}

namespace {

// Checks req and builds the arguments of job_enqueue.lua (after the common ones).
error_code enqueue_args(detail::scheduler_impl& im, job_request& req, diagnostics& d,
                        std::vector<std::string>& args) {
    if (req.function.empty()) return detail::invalid(d, "enqueue: empty function name");
    if (req.id.empty()) req.id = new_job_id();
    for (char c : req.id)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == ',')
            return detail::invalid(d, "enqueue: job id \"" + req.id +
                                          "\" holds a control character or a comma");
    for (auto& dep : req.depends_on)
        if (dep.empty() || dep == req.id)
            return detail::invalid(d, "enqueue: job " + req.id + " depends on \"" + dep +
                                          "\" (empty or itself)");
    if (req.delay) {
        if (req.run_at)
            return detail::invalid(d, "enqueue: job " + req.id + ": both run_at and delay given");
        if (auto p = detail::duration_problem(*req.delay, true); !p.empty())
            return detail::invalid(d, "enqueue: job " + req.id + ": delay " + p);
        req.run_at = sys_clock::now() + *req.delay;
    }
    const bool own = req.options || im.functions.count(req.function) > 0;
    const job_options& o = req.options ? *req.options : im.options_of(req.function);
    if (auto p = options_problem(o); !p.empty())
        return detail::invalid(d, "enqueue: job " + req.id + ": " + p);
    args = im.common_args();
    args.push_back(req.id);
    args.push_back(req.function);
    args.push_back(req.payload);
    args.push_back(req.run_at ? std::to_string(unix_ms(*req.run_at)) : "0");
    args.push_back(req.idempotency_key);
    args.push_back(req.on_dependency_failure == dependency_failure::fail   ? "fail"
                   : req.on_dependency_failure == dependency_failure::skip ? "skip"
                                                                           : "run");
    args.push_back(own ? "1" : "0");
    args.push_back(std::to_string(req.depends_on.size()));
    args.insert(args.end(), req.depends_on.begin(), req.depends_on.end());
    auto fields = option_fields(req.function, o);
    args.insert(args.end(), fields.begin(), fields.end());
    return {};
}

asio::awaitable<std::pair<error_code, std::string>> run_enqueue(
    std::shared_ptr<detail::scheduler_impl> im, std::vector<std::string> args,
    detail::diag_target target) {
    static const script& sc = script::embedded("job_enqueue");
    resp3::tree reply;
    auto [ec, n] = co_await detail::eval(im->si->conn, sc, im->keys(), args, reply, target.get());
    if (ec) co_return std::pair(ec, std::string());
    if (reply.children.size() < 2)
        co_return std::pair(error_code(error::unexpected_type), std::string());
    co_return std::pair(error_code(), reply.children[1].value);
}

}  // namespace

void scheduler::enqueue_impl(
    job_request r, diagnostics* diag,
    asio::any_completion_handler<void(error_code, std::string)> h) {
    detail::diag_target target(diag);
    target.get().clear();
    std::vector<std::string> args;
    if (auto ec = enqueue_args(*impl_, r, target.get(), args))
        return detail::complete_later(*impl_->si, std::move(h), ec, std::string());
    detail::launch(*impl_->si, run_enqueue(impl_, std::move(args), std::move(target)),
                   std::move(h));
}

void scheduler::batch_impl(
    std::vector<job_request> jobs, job_request cont,
    asio::any_completion_handler<void(error_code, std::vector<std::string>)> h) {
    auto coro = [](std::shared_ptr<detail::scheduler_impl> im, std::vector<job_request> jobs,
                   job_request cont)
        -> asio::awaitable<std::pair<error_code, std::vector<std::string>>> {
        std::vector<std::string> ids;
        cont.on_dependency_failure = dependency_failure::run;
        for (auto& j : jobs) {
            std::vector<std::string> args;
            diagnostics d;
            if (auto ec = enqueue_args(*im, j, d, args)) co_return std::pair(ec, ids);
            auto [ec, id] = co_await run_enqueue(im, std::move(args), detail::diag_target());
            if (ec) co_return std::pair(ec, ids);
            ids.push_back(id);
            cont.depends_on.push_back(id);
        }
        std::vector<std::string> args;
        diagnostics d;
        if (auto ec = enqueue_args(*im, cont, d, args)) co_return std::pair(ec, ids);
        auto [ec, id] = co_await run_enqueue(im, std::move(args), detail::diag_target());
        if (!ec) ids.push_back(id);
        co_return std::pair(ec, ids);
    };
    detail::launch(*impl_->si, coro(impl_, std::move(jobs), std::move(cont)), std::move(h));
}

void scheduler::cancel_impl(
    std::string id, asio::any_completion_handler<void(error_code, std::optional<job_state>)> h) {
    auto coro = [](std::shared_ptr<detail::scheduler_impl> im, std::string id)
        -> asio::awaitable<std::pair<error_code, std::optional<job_state>>> {
        static const script& sc = script::embedded("job_cancel");
        auto args = im->common_args();
        args.push_back(id);
        args.push_back(im->cancel_channel);
        std::string was;
        diagnostics d;
        auto [ec, n] = co_await detail::eval(im->si->conn, sc, im->keys(), args, was, d);
        // Cancelled here: the local job stops at once (the push may come later).
        if (!ec && was == "running")
            if (auto it = im->running.find(id); it != im->running.end())
                it->second->request_stop(detail::stop_kind::cancelled);
        co_return std::pair(ec, ec ? std::nullopt : parse_job_state(was));
    };
    detail::launch(*impl_->si, coro(impl_, std::move(id)), std::move(h));
}

void scheduler::run_now_impl(std::string id,
                             asio::any_completion_handler<void(error_code, bool)> h) {
    auto coro = [](std::shared_ptr<detail::scheduler_impl> im,
                   std::string id) -> asio::awaitable<std::pair<error_code, bool>> {
        static const script& sc = script::embedded("job_run_now");
        auto args = im->common_args();
        args.push_back(id);
        std::int64_t ok = 0;
        diagnostics d;
        auto [ec, n] = co_await detail::eval(im->si->conn, sc, im->keys(), args, ok, d);
        co_return std::pair(ec, ok == 1);
    };
    detail::launch(*impl_->si, coro(impl_, std::move(id)), std::move(h));
}

namespace {

asio::awaitable<std::pair<error_code, std::optional<job_record>>> read_job(
    std::shared_ptr<detail::scheduler_impl> im, std::string id, bool watch) {
    request req;
    const auto key = im->base + ":job:" + id;
    if (watch) req.push("HSET", key, "watched", "1");
    req.push("HGETALL", key);
    req.push("LRANGE", key + ":history", 0, -1);
    generic_response resp;
    diagnostics d;
    auto [ec, n] = co_await im->si->conn.async_exec(req, resp, d, nothrow);
    if (ec) co_return std::pair(ec, std::optional<job_record>());
    // Split the replies (one message each).
    std::vector<resp3::tree> replies;
    std::vector<resp3::node_view> views;
    for (auto& nd : resp) views.push_back(nd.view());
    std::span<const resp3::node_view> all(views);
    while (!all.empty()) {
        const auto len = resp3::value_extent(all);
        replies.push_back(resp3::make_tree(all.first(len)));
        all = all.subspan(len);
    }
    const std::size_t first = watch ? 1 : 0;
    if (replies.size() < first + 2) co_return std::pair(error_code(error::unexpected_type), std::optional<job_record>());
    auto& h = replies[first];
    if (h.children.empty()) {
        if (watch) {  // the HSET made a record of nothing: remove it
            request del;
            del.push("DEL", key);
            ignore_t ig;
            co_await im->si->conn.async_exec(del, ig, d, nothrow);
        }
        co_return std::pair(error_code(), std::optional<job_record>());
    }
    auto rec = record_from_fields(h.children);
    for (auto& step : replies[first + 1].children) rec.history.push_back(event_from_json(step.value));
    co_return std::pair(error_code(), std::optional<job_record>(std::move(rec)));
}

}  // namespace

void scheduler::get_impl(
    std::string id, asio::any_completion_handler<void(error_code, std::optional<job_record>)> h) {
    detail::launch(*impl_->si, read_job(impl_, std::move(id), false), std::move(h));
}

void scheduler::wait_impl(
    std::string id, milliseconds timeout,
    asio::any_completion_handler<void(error_code, std::optional<job_record>)> h) {
    if (auto p = detail::duration_problem(timeout, true); !p.empty()) {
        diagnostics d;
        return detail::complete_later(*impl_->si, std::move(h),
                                      detail::invalid(d, "wait: timeout " + p),
                                      std::optional<job_record>());
    }
    auto coro = [](std::shared_ptr<detail::scheduler_impl> im, std::string id,
                   milliseconds timeout)
        -> asio::awaitable<std::pair<error_code, std::optional<job_record>>> {
        const auto deadline = detail::deadline_in(timeout);
        asio::steady_timer timer(im->si->conn.get_executor());
        bool heard = false;
        auto sub = im->bus.subscribe<std::string>(
            "jobs:" + im->opts.name + ":job:" + id,
            [&](error_code, const event<std::string>&) {
                heard = true;
                timer.cancel();
            });
        milliseconds poll{50};
        for (;;) {
            heard = false;
            auto [ec, rec] = co_await read_job(im, id, true);
            if (ec || !rec || is_terminal(rec->state)) co_return std::pair(ec, std::move(rec));
            if (steady::now() >= deadline)
                co_return std::pair(error_code(error::timeout), std::move(rec));
            if (heard) continue;
            timer.expires_at(std::min(deadline, steady::now() + poll));
            co_await timer.async_wait(nothrow);
            auto cs = co_await asio::this_coro::cancellation_state;
            if (cs.cancelled() != asio::cancellation_type::none)
                co_return std::pair(error_code(asio::error::operation_aborted), std::move(rec));
            poll = std::min(poll * 2, milliseconds(1000));
        }
    };
    detail::launch(*impl_->si, coro(impl_, std::move(id), timeout), std::move(h));
}

void scheduler::list_impl(job_state s, std::string f, std::uint64_t offset, std::uint32_t count,
                          asio::any_completion_handler<void(error_code, job_page)> h) {
    if (count > 1000) {
        diagnostics d;
        return detail::complete_later(
            *impl_->si, std::move(h),
            detail::invalid(d, "list: count " + std::to_string(count) + " is over 1000"),
            job_page());
    }
    auto coro = [](std::shared_ptr<detail::scheduler_impl> im, job_state s, std::string f,
                   std::uint64_t offset,
                   std::uint32_t count) -> asio::awaitable<std::pair<error_code, job_page>> {
        static const script& sc = script::embedded("job_list");
        resp3::tree reply;
        diagnostics d;
        std::vector<std::string> args{std::string(to_string(s)), f, std::to_string(offset),
                                      std::to_string(count)};
        auto [ec, n] = co_await detail::eval(im->si->conn, sc, im->keys(), args, reply, d);
        job_page page;
        if (ec) co_return std::pair(ec, page);
        if (reply.children.empty()) co_return std::pair(error_code(error::unexpected_type), page);
        page.total = static_cast<std::uint64_t>(to_i64(reply.children[0].value));
        for (std::size_t i = 1; i < reply.children.size(); ++i)
            page.jobs.push_back(record_from_fields(reply.children[i].children));
        co_return std::pair(error_code(), std::move(page));
    };
    detail::launch(*impl_->si, coro(impl_, s, std::move(f), offset, count), std::move(h));
}

void scheduler::recurring_impl(
    asio::any_completion_handler<void(error_code, std::vector<recurring_info>)> h) {
    auto coro = [](std::shared_ptr<detail::scheduler_impl> im)
        -> asio::awaitable<std::pair<error_code, std::vector<recurring_info>>> {
        request req;
        req.push("HGETALL", im->base + ":recurring");
        std::map<std::string, std::string> defs;
        diagnostics d;
        auto [ec, n] = co_await im->si->conn.async_exec(req, defs, d, nothrow);
        std::vector<recurring_info> out;
        if (ec) co_return std::pair(ec, out);
        request last;
        for (auto& [name, json] : defs) last.push("GET", im->base + ":cron:" + name);
        std::vector<std::optional<std::string>> lasts;
        generic_response raw;
        if (!defs.empty()) {
            auto [ec2, n2] = co_await im->si->conn.async_exec(last, raw, d, nothrow);
            if (ec2) co_return std::pair(ec2, out);
        }
        std::size_t i = 0;
        for (auto& [name, json] : defs) {
            recurring_info info;
            info.name = name;
            error_code jec;
            auto v = boost::json::parse(json, jec);
            if (!jec && v.is_object()) {
                auto& o = v.as_object();
                auto str = [&](const char* k) {
                    auto* p = o.if_contains(k);
                    return p && p->is_string() ? std::string(p->as_string()) : std::string();
                };
                info.cron = str("cron");
                info.time_zone = str("time_zone");
                info.function = str("function");
            }
            if (i < raw.size() && raw[i].data_type != resp3::type::null)
                info.last_fired = from_ms(to_i64(raw[i].value));
            ++i;
            error_code cec;
            diagnostics cd;
            if (auto sch = cron_schedule::parse(info.cron, info.time_zone, cec, cd))
                if (auto next = sch->next_after(sys_clock::now())) info.next = *next;
            out.push_back(std::move(info));
        }
        co_return std::pair(error_code(), std::move(out));
    };
    detail::launch(*impl_->si, coro(impl_), std::move(h));
}

}  // namespace redcoord
