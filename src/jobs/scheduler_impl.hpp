// Internals of the job system (jobs.hpp): the state of a node's scheduler, its loops
// (node.cpp: claims, lease renewals, cancellations, recurring jobs) and what the public
// operations (scheduler.cpp) share with them.
#pragma once

#include <redcoord/cron.hpp>
#include <redcoord/events.hpp>
#include <redcoord/jobs.hpp>
#include <redcoord/results.hpp>

#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/data_ops.hpp"

namespace redcoord::detail {

using sys_clock = std::chrono::system_clock;
using steady = std::chrono::steady_clock;

inline constexpr auto jobs_nothrow = asio::as_tuple(asio::use_awaitable);

std::int64_t unix_ms(sys_clock::time_point t);
sys_clock::time_point from_ms(std::int64_t ms);
// The integer a reply's text holds; 0 for none.
std::int64_t to_i64(const std::string& s);
// Uniform in [0, 1): the scripts' randomness (backoff jitter), which they have none of.
double random_unit();
// What is wrong with o, or empty.
std::string options_problem(const job_options& o);
std::vector<std::string> option_fields(const std::string& function, const job_options& o);

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
    steady::time_point started = steady::now();
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

// An enqueue waiting for its reply: the enqueues made while one call is in flight go to Redis
// together in the next (job_enqueue.lua takes many jobs), one script call for all of them.
struct pending_enqueue {
    explicit pending_enqueue(const asio::any_io_executor& ex)
        : timer(ex, steady::time_point::max()) {}
    std::vector<std::string> args;  // this job's arguments, their count first
    error_code ec;
    std::string id, server_message;
    bool done = false;
    asio::steady_timer timer;  // cancelled when done
};

class scheduler_impl : public std::enable_shared_from_this<scheduler_impl> {
  public:
    scheduler_impl(session& s, scheduler_options o)
        : si(access::impl(s)),
          opts(std::move(o)),
          base(si->keys.prefix() + "jobs:{" + opts.name + "}"),
          event_name("jobs:" + opts.name),
          events(si->keys.channel(event_name)),
          wake_channel(si->keys.channel(event_name + ":wake")),
          cancel_channel(si->keys.channel(event_name + ":cancel")),
          wake_timer(si->conn.get_executor()),
          bus(s),
          results(s) {}

    std::shared_ptr<session_impl> si;
    scheduler_options opts;
    std::string base;
    // The event bus's name of the events channel ("jobs:<name>"; the wake, cancel and
    // watched-job channels add a suffix), and the full channel names the scripts publish on.
    std::string event_name, events, wake_channel, cancel_channel;
    std::map<std::string, std::pair<job_function, job_options>> functions;
    std::vector<std::shared_ptr<recurring_state>> recurring;
    std::map<std::string, std::shared_ptr<running_job>> running;
    std::vector<ended_attempt> ended;  // recorded by the claim loop's next call
    asio::steady_timer wake_timer;
    event_bus bus;
    result_store results;
    bool active = false, stopping = false, poked = false;
    std::vector<std::shared_ptr<pending_enqueue>> enqueues;  // not sent yet
    bool enqueue_in_flight = false;
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

    // ---- the node's loops (node.cpp) ----------------------------------------------------

    struct claim_result {
        std::int64_t ready_left = 0, next_due = 0, server_now = 0;
        std::size_t claimed = 0;
    };
    asio::awaitable<void> run();
    asio::awaitable<void> publish_functions();
    void spawn_cron(const std::shared_ptr<recurring_state>& r);
    std::vector<std::string> runnable() const;
    asio::awaitable<std::optional<claim_result>> claim_once(std::size_t want, error_code& ec);
    asio::awaitable<void> claim_loop();
    void start_job(const std::vector<resp3::tree>& f, steady::time_point sent);
    milliseconds drift() const;
    // A transition of a job of this node (trace_options::coordination_events): "running",
    // then its attempt's outcome.
    void trace_job(const running_job& job, std::string_view state) const;
    void on_done(const std::shared_ptr<running_job>& job, std::exception_ptr ep,
                 boost::json::value result);
    asio::awaitable<void> store_result(std::shared_ptr<running_job> job, boost::json::value result);
    void hand_over(const running_job& job, std::string outcome, std::string err, bool stored);
    asio::awaitable<void> renew_loop();
    std::optional<std::pair<std::int64_t, std::vector<std::int64_t>>> due_occurrences(
        recurring_state& r, sys_clock::time_point now);
    asio::awaitable<void> cron_loop(std::shared_ptr<recurring_state> r);
    std::string definition_json(const recurring_state& r) const;
};

}  // namespace redcoord::detail
