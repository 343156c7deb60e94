// `redcoord jobs ...`: the job scheduler's jobs by state, one job's record and history, the
// recurring jobs, and the actions retry, run-now and cancel. The scheduler object is made
// without functions and never runs (no async_run): the inspector reads and acts, it is not a
// worker node.
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value_from.hpp>

#include <array>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli.hpp"
#include "output.hpp"

namespace redcoord::cli {

namespace {

namespace json = boost::json;

constexpr std::array all_states{job_state::waiting, job_state::scheduled, job_state::queued,
                                job_state::running, job_state::retrying,  job_state::succeeded,
                                job_state::failed,  job_state::cancelled};

struct jobs_options {
    std::string scheduler = "default";
    // list
    std::string state;  // empty: the count of every state
    std::string function;
    std::uint64_t offset = 0;
    std::uint32_t limit = 50;
    // show, retry, run-now, cancel
    std::string id;
};

scheduler_options scheduler_for(const jobs_options& o) {
    scheduler_options so;
    so.name = o.scheduler;
    so.concurrency = 0;  // only reads and acts
    return so;
}

// The scheduler of o, or a usage error naming --scheduler.
std::unique_ptr<scheduler> make_scheduler(context& c, const jobs_options& o) {
    try {
        return std::make_unique<scheduler>(c.session, scheduler_for(o));
    } catch (const error_with_diagnostics& e) {
        throw usage_error("--scheduler: " + e.get_diagnostics().message());
    }
}

json::object record_json(const job_record& r) {
    return json::object{{"id", r.id},
                        {"function", r.function},
                        {"state", to_string(r.state)},
                        {"attempts", r.attempts},
                        {"max_attempts", r.max_attempts},
                        {"fencing_token", r.fencing_token},
                        {"priority", r.priority},
                        {"node", r.node},
                        {"error", r.error},
                        {"progress", r.progress},
                        {"recurring", r.recurring},
                        {"payload", r.payload},
                        {"depends_on", json::value_from(r.depends_on)},
                        {"created_ms", unix_ms(r.created)},
                        {"due_ms", unix_ms(r.due)},
                        {"started_ms", unix_ms(r.started)},
                        {"finished_ms", unix_ms(r.finished)},
                        {"has_result", r.has_result}};
}

json::object event_json(const job_event& e) {
    return json::object{{"state", to_string(e.state)},
                        {"attempt", e.attempt},
                        {"node", e.node},
                        {"error", e.error},
                        {"at_ms", unix_ms(e.at)}};
}

json::object recurring_json(const recurring_info& r) {
    return json::object{{"name", r.name},
                        {"cron", r.cron},
                        {"time_zone", r.time_zone},
                        {"function", r.function},
                        {"last_fired_ms", unix_ms(r.last_fired)},
                        {"next_ms", unix_ms(r.next)}};
}

asio::awaitable<int> count_states(context& c, const jobs_options& o) {
    auto sched = make_scheduler(c, o);
    json::object counts;
    table t({"STATE", "JOBS"});
    for (auto state : all_states) {
        auto [ec, page] = co_await sched->async_list(state, o.function, 0, 1, nothrow);
        check(ec, "counting the " + std::string(to_string(state)) + " jobs");
        counts[to_string(state)] = page.total;
        t.add({std::string(to_string(state)), std::to_string(page.total)});
    }
    if (c.opts.json) {
        print_json(json::object{
            {"scheduler", o.scheduler}, {"function", o.function}, {"counts", std::move(counts)}});
    } else {
        t.print(std::cout);
    }
    co_return 0;
}

asio::awaitable<int> list_jobs(context& c, jobs_options o) {
    if (o.state.empty()) co_return co_await count_states(c, o);
    const auto state = parse_job_state(o.state);
    if (!state) throw usage_error("--state: unknown state '" + printable(o.state) + "'");
    auto sched = make_scheduler(c, o);
    auto [ec, page] = co_await sched->async_list(*state, o.function, o.offset, o.limit, nothrow);
    check(ec, "listing the " + o.state + " jobs");
    if (c.opts.json) {
        print_json(json::object{{"scheduler", o.scheduler},
                                {"state", o.state},
                                {"total", page.total},
                                {"offset", o.offset},
                                {"jobs", json_list(page.jobs, record_json)}});
        co_return 0;
    }
    table t({"ID", "FUNCTION", "STATE", "ATTEMPTS", "NODE", "CREATED", "ERROR"});
    for (const auto& r : page.jobs)
        t.add({r.id, r.function, std::string(to_string(r.state)),
               std::to_string(r.attempts) + "/" + std::to_string(r.max_attempts),
               r.node.empty() ? "-" : r.node, format_time(r.created),
               r.error.empty() ? "-" : r.error});
    t.print(std::cout, "(no " + o.state + " jobs)");
    std::cout << page.jobs.size() << " of " << page.total << " " << o.state << " job(s)";
    if (o.offset) std::cout << " from " << o.offset;
    std::cout << '\n';
    co_return 0;
}

// The job's record, or a failure naming it.
asio::awaitable<job_record> must_get(scheduler& sched, const std::string& id) {
    auto [ec, record] = co_await sched.async_get(id, nothrow);
    check(ec, "reading job '" + printable(id) + "'");
    if (!record) throw failure("no job '" + printable(id) + "' (or its record expired)");
    co_return std::move(*record);
}

asio::awaitable<int> show_job(context& c, jobs_options o) {
    auto sched = make_scheduler(c, o);
    const auto r = co_await must_get(*sched, o.id);
    if (c.opts.json) {
        auto doc = record_json(r);
        doc["history"] = json_list(r.history, event_json);
        print_json(doc);
        co_return 0;
    }
    table t({"FIELD", "VALUE"});
    t.add({"id", r.id});
    t.add({"function", r.function});
    t.add({"state", std::string(to_string(r.state))});
    t.add({"attempts", std::to_string(r.attempts) + " of " + std::to_string(r.max_attempts)});
    t.add({"fencing token", std::to_string(r.fencing_token)});
    t.add({"priority", std::to_string(r.priority)});
    t.add({"node", r.node.empty() ? "-" : r.node});
    t.add({"progress", r.progress.empty() ? "-" : r.progress});
    t.add({"error", r.error.empty() ? "-" : r.error});
    if (!r.recurring.empty()) t.add({"recurring", r.recurring});
    std::string deps;
    for (const auto& d : r.depends_on) deps += (deps.empty() ? "" : ", ") + d;
    if (!deps.empty()) t.add({"depends on", deps});
    t.add({"created", format_time(r.created)});
    t.add({"due", format_time(r.due)});
    t.add({"started", format_time(r.started)});
    t.add({"finished", format_time(r.finished)});
    t.add({"result", r.has_result ? "stored" : "-"});
    t.add({"payload", r.payload});
    t.print(std::cout);
    std::cout << "\nhistory:\n";
    table h({"AT", "STATE", "ATTEMPT", "NODE", "ERROR"});
    for (const auto& e : r.history)
        h.add({format_time(e.at), std::string(to_string(e.state)), std::to_string(e.attempt),
               e.node.empty() ? "-" : e.node, e.error.empty() ? "-" : e.error});
    h.print(std::cout);
    co_return 0;
}

void print_action(context& c, const std::string& id, std::string_view action, bool done,
                  std::string_view was, const std::string& text) {
    if (c.opts.json) {
        print_json(json::object{{"id", id}, {"action", action}, {"done", done}, {"was", was}});
    } else {
        std::cout << text << '\n';
    }
}

// retry: a failed or cancelled job is queued again (attempts start over); run-now also runs a
// scheduled, retrying or waiting job at once.
asio::awaitable<int> run_job_now(context& c, jobs_options o, bool retry_only) {
    auto sched = make_scheduler(c, o);
    const auto before = co_await must_get(*sched, o.id);
    const auto was = to_string(before.state);
    const std::string id = printable(o.id);
    if (retry_only && before.state != job_state::failed && before.state != job_state::cancelled)
        throw failure("job '" + id + "' is " + std::string(was) +
                      ": retry takes a failed or cancelled job (run-now also runs a scheduled, "
                      "retrying or waiting one)");
    auto [ec, done] = co_await sched->async_run_now(o.id, nothrow);
    check(ec, "running job '" + id + "' now");
    if (!done) throw failure("job '" + id + "' is " + std::string(was) + ": nothing to run now");
    print_action(c, o.id, retry_only ? "retry" : "run-now", true, was,
                 "job '" + id + "' was " + std::string(was) + ": queued to run now");
    co_return 0;
}

asio::awaitable<int> retry_job(context& c, jobs_options o) { return run_job_now(c, o, true); }
asio::awaitable<int> run_now(context& c, jobs_options o) { return run_job_now(c, o, false); }

asio::awaitable<int> cancel_job(context& c, jobs_options o) {
    auto sched = make_scheduler(c, o);
    auto [ec, was] = co_await sched->async_cancel(o.id, nothrow);
    const std::string id = printable(o.id);
    check(ec, "cancelling job '" + id + "'");
    if (!was) throw failure("no job '" + id + "' (or its record expired)");
    const auto state = std::string(to_string(*was));
    if (is_terminal(*was)) {
        print_action(c, o.id, "cancel", false, state,
                     "job '" + id + "' had already ended (" + state + "): nothing to cancel");
    } else {
        print_action(
            c, o.id, "cancel", true, state,
            "job '" + id + "' was " + state +
                (*was == job_state::running ? ": its node was told to stop it" : ": cancelled"));
    }
    co_return 0;
}

asio::awaitable<int> list_recurring(context& c, jobs_options o) {
    auto sched = make_scheduler(c, o);
    auto [ec, all] = co_await sched->async_recurring(nothrow);
    check(ec, "listing the recurring jobs");
    if (c.opts.json) {
        print_json(json::object{{"scheduler", o.scheduler},
                                {"recurring", json_list(all, recurring_json)}});
        co_return 0;
    }
    table t({"NAME", "CRON", "TIME ZONE", "FUNCTION", "LAST FIRED", "NEXT"});
    for (const auto& r : all)
        t.add({r.name, r.cron, r.time_zone, r.function, format_time(r.last_fired),
               format_time(r.next)});
    t.print(std::cout, "(no recurring jobs)");
    co_return 0;
}

}  // namespace

void add_jobs_commands(CLI::App& app, selection& sel, const global_options&) {
    auto o = std::make_shared<jobs_options>();
    auto* jobs = add_group(app, "jobs", "The job scheduler: jobs by state, one job, actions");
    jobs->add_option("--scheduler", o->scheduler, "The scheduler's name")->capture_default_str();

    std::vector<std::string> state_names;
    for (auto s : all_states) state_names.emplace_back(to_string(s));
    auto* list = add_command(
        *jobs, sel, o, "list",
        "Jobs in a state, a page at a time; without --state, how many are in each", list_jobs);
    list->add_option("--state", o->state, "The state")->check(CLI::IsMember(state_names));
    list->add_option("--function", o->function, "Only the jobs of this function");
    list->add_option("--offset", o->offset, "Skip this many")->capture_default_str();
    list->add_option("--limit", o->limit, "At most this many")
        ->capture_default_str()
        ->check(CLI::Range(1, 1000));

    struct job_action {
        const char* name;
        const char* description;
        asio::awaitable<int> (*fn)(context&, jobs_options);
    };
    const job_action actions[] = {
        {"show", "A job's record: state, error, progress, history", show_job},
        {"retry", "Queues a failed or cancelled job again (its attempts start over)", retry_job},
        {"run-now",
         "Runs a scheduled, retrying or waiting job now, or queues a failed or cancelled one",
         run_now},
        {"cancel", "Cancels a job: at once when not started, else its node is told to stop it",
         cancel_job},
    };
    for (const auto& a : actions)
        add_command(*jobs, sel, o, a.name, a.description, a.fn)
            ->add_option("id", o->id, "The job's id")
            ->required();

    add_command(*jobs, sel, o, "recurring", "The recurring jobs (cron schedules)", list_recurring);
}

}  // namespace redcoord::cli
