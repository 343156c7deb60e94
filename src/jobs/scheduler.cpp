// The job system's public operations (jobs.hpp): enqueues, cancellations, reads and waits,
// on src/lua/job_*.lua; a node's loops are in node.cpp.
#include <redcoord/script.hpp>

#include <boost/asio/detached.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <map>

#include "core/random.hpp"
#include "jobs/scheduler_impl.hpp"

namespace redcoord {

namespace asio = boost::asio;
using boost::system::error_code;
using detail::from_ms;
using detail::option_fields;
using detail::options_problem;
using detail::steady;
using detail::sys_clock;
using detail::to_i64;
using std::chrono::milliseconds;

namespace {

constexpr auto nothrow = detail::jobs_nothrow;

constexpr std::string_view state_names[] = {"waiting",  "scheduled", "queued", "running",
                                            "retrying", "succeeded", "failed", "cancelled"};

// Whether s holds a control character (DEL too) or one of `also`: names and ids end up in key
// names, job ids and lines that operators read.
bool holds_control_or(std::string_view s, std::string_view also) {
    for (char c : s)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f ||
            also.find(c) != std::string_view::npos)
            return true;
    return false;
}

std::string new_job_id() {
    std::string out;
    detail::append_random_hex(out, 2);
    return out;
}

// A record's hash fields (HGETALL), read into a job_record; unknown fields are skipped.
job_record record_from_fields(const std::vector<resp3::tree>& kv) {
    using setter = void (*)(job_record&, const std::string&);
    static const std::map<std::string_view, setter> fields{
        {"id", [](job_record& r, const std::string& v) { r.id = v; }},
        {"function", [](job_record& r, const std::string& v) { r.function = v; }},
        {"payload", [](job_record& r, const std::string& v) { r.payload = v; }},
        {"state",
         [](job_record& r, const std::string& v) {
             r.state = parse_job_state(v).value_or(job_state::queued);
         }},
        {"attempts",
         [](job_record& r, const std::string& v) {
             r.attempts = static_cast<std::uint32_t>(to_i64(v));
         }},
        {"max_attempts",
         [](job_record& r, const std::string& v) {
             r.max_attempts = static_cast<std::uint32_t>(to_i64(v));
         }},
        {"fence",
         [](job_record& r, const std::string& v) {
             r.fencing_token = static_cast<std::uint64_t>(to_i64(v));
         }},
        {"priority",
         [](job_record& r, const std::string& v) { r.priority = static_cast<int>(to_i64(v)); }},
        {"node", [](job_record& r, const std::string& v) { r.node = v; }},
        {"error", [](job_record& r, const std::string& v) { r.error = v; }},
        {"progress", [](job_record& r, const std::string& v) { r.progress = v; }},
        {"recurring", [](job_record& r, const std::string& v) { r.recurring = v; }},
        {"created_ms", [](job_record& r, const std::string& v) { r.created = from_ms(to_i64(v)); }},
        {"due_ms", [](job_record& r, const std::string& v) { r.due = from_ms(to_i64(v)); }},
        {"started_ms", [](job_record& r, const std::string& v) { r.started = from_ms(to_i64(v)); }},
        {"finished_ms",
         [](job_record& r, const std::string& v) { r.finished = from_ms(to_i64(v)); }},
        {"has_result", [](job_record& r, const std::string& v) { r.has_result = v == "1"; }},
        {"depends_on",
         [](job_record& r, const std::string& v) {
             for (std::size_t start = 0; !v.empty() && start <= v.size();) {
                 auto comma = v.find(',', start);
                 if (comma == std::string::npos) comma = v.size();
                 r.depends_on.push_back(v.substr(start, comma - start));
                 start = comma + 1;
             }
         }},
    };
    // A record leaves out what it can tell otherwise (lib/jobs.lua): an option at its default,
    // the due time of a job due when created.
    job_record r;
    r.max_attempts = job_options{}.retry.max_attempts;
    for (std::size_t i = 0; i + 1 < kv.size(); i += 2)
        if (auto it = fields.find(kv[i].value); it != fields.end()) it->second(r, kv[i + 1].value);
    if (r.due == sys_clock::time_point{}) r.due = r.created;
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
bool job_context::stop_requested() const noexcept { return job_->stop != detail::stop_kind::none; }

void job_context::throw_decode_failed(const char* what) const {
    diagnostics d;
    d.set_client_message("job " + job_->id + ": payload does not convert: " + what);
    throw error_with_diagnostics(error::decode_failed, d);
}

void job_context::progress_impl(std::string p, asio::any_completion_handler<void(error_code)> h) {
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
    if (holds_control_or(opts.name, "{}"))
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

std::string scheduler::events_channel() const { return impl_->event_name; }

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
    if (holds_control_or(job.name, ","))
        bad("the name holds a control character or a comma (it is part of the job ids)");
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

// Checks req and builds its job's arguments of job_enqueue.lua (their count first).
error_code enqueue_args(detail::scheduler_impl& im, job_request& req, diagnostics& d,
                        std::vector<std::string>& args) {
    if (req.function.empty()) return detail::invalid(d, "enqueue: empty function name");
    const bool fresh = req.id.empty();
    if (fresh) req.id = new_job_id();
    if (holds_control_or(req.id, ","))
        return detail::invalid(
            d, "enqueue: job id \"" + req.id + "\" holds a control character or a comma");
    for (auto& dep : req.depends_on)
        if (dep.empty() || dep == req.id)
            return detail::invalid(
                d, "enqueue: job " + req.id + " depends on \"" + dep + "\" (empty or itself)");
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
    args.clear();
    args.push_back("");  // the count, below
    args.push_back(req.id);
    args.push_back(req.function);
    args.push_back(req.payload);
    // (rounded up to the millisecond: the job is due when Redis's clock in whole milliseconds
    // reaches it, so it never runs before its time point)
    std::int64_t due_ms = 0;
    if (req.run_at)
        due_ms =
            std::chrono::ceil<std::chrono::milliseconds>(req.run_at->time_since_epoch()).count();
    args.push_back(std::to_string(due_ms));
    args.push_back(req.idempotency_key);
    args.push_back(req.on_dependency_failure == dependency_failure::fail   ? "fail"
                   : req.on_dependency_failure == dependency_failure::skip ? "skip"
                                                                           : "run");
    args.push_back(own ? "1" : "0");
    args.push_back(fresh ? "1" : "0");
    args.push_back(std::to_string(req.depends_on.size()));
    args.insert(args.end(), req.depends_on.begin(), req.depends_on.end());
    auto fields = option_fields(req.function, o);
    args.insert(args.end(), fields.begin(), fields.end());
    args[0] = std::to_string(args.size() - 1);
    return {};
}

// Sends the enqueues waiting in im->enqueues, as many as a call takes, until none is left: one
// call in flight at a time, so the enqueues made meanwhile go together in the next.
asio::awaitable<void> send_enqueues(std::shared_ptr<detail::scheduler_impl> im) {
    static const script& sc = script::embedded("job_enqueue");
    constexpr std::size_t most_jobs = 512, most_args = 65536;
    while (!im->enqueues.empty()) {
        std::vector<std::shared_ptr<detail::pending_enqueue>> batch;
        auto args = im->common_args();
        args.push_back("");
        std::size_t taken = 0;
        for (auto& e : im->enqueues) {
            if (taken > 0 && (taken == most_jobs || args.size() + e->args.size() > most_args))
                break;
            args.insert(args.end(), e->args.begin(), e->args.end());
            batch.push_back(e);
            ++taken;
        }
        im->enqueues.erase(im->enqueues.begin(), im->enqueues.begin() + taken);
        args[4] = std::to_string(taken);
        resp3::tree reply;
        diagnostics d;
        auto [ec, n] = co_await detail::eval(im->si->conn, sc, im->keys(), args, reply, d);
        if (!ec && reply.children.size() != batch.size()) ec = error::unexpected_type;
        for (std::size_t i = 0; i < batch.size(); ++i) {
            auto& e = *batch[i];
            if (ec) {
                e.ec = ec;
                e.server_message = d.server_message();
            } else if (auto& r = reply.children[i].children; r.size() < 2) {
                e.ec = error::unexpected_type;
            } else if (r[0].value == "-1") {
                e.ec = error::server_error;
                e.server_message = r[1].value;
            } else {
                e.id = r[1].value;
            }
            e.done = true;
            e.timer.cancel();
        }
    }
    im->enqueue_in_flight = false;
}

// Hands one job (its arguments from enqueue_args) to the enqueues going to Redis together.
std::shared_ptr<detail::pending_enqueue> submit_enqueue(
    const std::shared_ptr<detail::scheduler_impl>& im, std::vector<std::string> args) {
    auto e = std::make_shared<detail::pending_enqueue>(im->si->conn.get_executor());
    e->args = std::move(args);
    im->enqueues.push_back(e);
    if (!im->enqueue_in_flight) {
        im->enqueue_in_flight = true;
        asio::co_spawn(im->si->conn.get_executor(), send_enqueues(im), asio::detached);
    }
    return e;
}

// Waits for a submitted enqueue's reply. Cancelled while waiting: the job may still be
// enqueued (as when a request was sent).
asio::awaitable<std::pair<error_code, std::string>> enqueue_reply(
    std::shared_ptr<detail::pending_enqueue> e, detail::diag_target target) {
    while (!e->done) {
        co_await e->timer.async_wait(nothrow);
        auto cs = co_await asio::this_coro::cancellation_state;
        if (!e->done && cs.cancelled() != asio::cancellation_type::none)
            co_return std::pair(error_code(asio::error::operation_aborted), std::string());
    }
    if (!e->server_message.empty()) target.get().set_server_message(e->server_message);
    co_return std::pair(e->ec, e->id);
}

// Enqueues one job with the others made meanwhile.
asio::awaitable<std::pair<error_code, std::string>> run_enqueue(
    std::shared_ptr<detail::scheduler_impl> im, std::vector<std::string> args,
    detail::diag_target target) {
    auto e = submit_enqueue(im, std::move(args));
    co_return co_await enqueue_reply(std::move(e), std::move(target));
}

}  // namespace

void scheduler::enqueue_impl(job_request r, diagnostics* diag,
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
    auto coro =
        [](std::shared_ptr<detail::scheduler_impl> im, std::vector<job_request> jobs,
           job_request cont) -> asio::awaitable<std::pair<error_code, std::vector<std::string>>> {
        std::vector<std::string> ids;
        cont.on_dependency_failure = dependency_failure::run;
        // Every request is checked before any is enqueued; then all go to Redis together.
        std::vector<std::vector<std::string>> args(jobs.size());
        diagnostics d;
        for (std::size_t i = 0; i < jobs.size(); ++i)
            if (auto ec = enqueue_args(*im, jobs[i], d, args[i])) co_return std::pair(ec, ids);
        {
            job_request check = cont;
            std::vector<std::string> unused;
            if (auto ec = enqueue_args(*im, check, d, unused)) co_return std::pair(ec, ids);
        }
        std::vector<std::shared_ptr<detail::pending_enqueue>> sent;
        for (auto& a : args) sent.push_back(submit_enqueue(im, std::move(a)));
        error_code first_error;
        for (auto& e : sent) {
            auto [ec, id] = co_await enqueue_reply(e, detail::diag_target());
            if (ec) {
                if (!first_error) first_error = ec;
                continue;
            }
            ids.push_back(id);
            cont.depends_on.push_back(id);
        }
        // A job that could not be enqueued: no continuation (the others are enqueued).
        if (first_error) co_return std::pair(first_error, ids);
        std::vector<std::string> cargs;
        if (auto ec = enqueue_args(*im, cont, d, cargs)) co_return std::pair(ec, ids);
        auto [ec, id] = co_await run_enqueue(im, std::move(cargs), detail::diag_target());
        if (!ec) ids.push_back(id);
        co_return std::pair(ec, ids);
    };
    detail::launch(*impl_->si, coro(impl_, std::move(jobs), std::move(cont)), std::move(h));
}

void scheduler::cancel_impl(
    std::string id, asio::any_completion_handler<void(error_code, std::optional<job_state>)> h) {
    auto coro =
        [](std::shared_ptr<detail::scheduler_impl> im,
           std::string id) -> asio::awaitable<std::pair<error_code, std::optional<job_state>>> {
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

// A job's history: the steps its record holds (lib/jobs.lua, archive) around the others,
// its history list. A record from before the record held steps (no `first`) has them all in
// its list.
std::vector<job_event> history_of(const job_record& rec, const std::vector<resp3::tree>& kv,
                                  const std::vector<resp3::tree>& list) {
    std::map<std::string_view, const std::string*> f;
    for (std::size_t i = 0; i + 1 < kv.size(); i += 2) f[kv[i].value] = &kv[i + 1].value;
    auto field = [&](std::string_view name) -> std::string {
        auto it = f.find(name);
        return it == f.end() ? std::string() : *it->second;
    };
    std::vector<job_event> out;
    const bool held = f.count("first") > 0;
    if (held) {
        job_event e;
        e.state = parse_job_state(field("first")).value_or(job_state::queued);
        e.node = field("created_by");
        e.at = rec.created;
        out.push_back(std::move(e));
    }
    for (auto& step : list) out.push_back(event_from_json(step.value));
    if (!held) return out;
    const auto started = to_i64(field("started_ms"));
    if (static_cast<std::int64_t>(rec.attempts) > to_i64(field("logged")) && started > 0) {
        job_event e;
        e.state = job_state::running;
        e.attempt = rec.attempts;
        e.node = rec.node;
        e.at = from_ms(started);
        out.push_back(std::move(e));
    }
    if (is_terminal(rec.state)) {
        job_event e;
        e.state = rec.state;
        e.attempt = rec.attempts;
        // (no ended_by: the node that ran the last attempt ended it)
        e.node = f.count("ended_by") > 0 ? field("ended_by") : rec.node;
        e.error = rec.error;
        e.at = rec.finished;
        out.push_back(std::move(e));
    }
    return out;
}

asio::awaitable<std::pair<error_code, std::optional<job_record>>> read_job(
    std::shared_ptr<detail::scheduler_impl> im, std::string id, bool watch) {
    request req;
    const auto key = im->base + ":job:" + id;
    // (x = 1: the scripts read the record's every field when it ends, `watched` among them)
    if (watch) req.push("HSET", key, "watched", "1", "x", "1");
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
    if (replies.size() < first + 2)
        co_return std::pair(error_code(error::unexpected_type), std::optional<job_record>());
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
    rec.history = history_of(rec, h.children, replies[first + 1].children);
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
    auto coro = [](std::shared_ptr<detail::scheduler_impl> im, std::string id, milliseconds timeout)
        -> asio::awaitable<std::pair<error_code, std::optional<job_record>>> {
        const auto deadline = detail::deadline_in(timeout);
        asio::steady_timer timer(im->si->conn.get_executor());
        bool heard = false;
        auto sub = im->bus.subscribe<std::string>(im->event_name + ":job:" + id,
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
