// Jobs (layer 7): functions registered by name run as jobs on any node of the cluster — now,
// at a time point, after a delay, on a cron schedule, or when the jobs they depend on are
// done — with retries, timeouts, priorities, singleton and cluster-wide concurrency and rate
// limits, idempotency keys and cancellation from any node. See docs/jobs.md.
#pragma once

#include <redcoord/diagnostics.hpp>
#include <redcoord/error.hpp>
#include <redcoord/session.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>
#include <boost/json/value_to.hpp>
#include <boost/json/parse.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace redcoord {

/// Where a job is in its life. Terminal: succeeded, failed, cancelled.
enum class job_state {
    waiting,    ///< waits for the jobs it depends on
    scheduled,  ///< due at a later time (a time ticker, a delay)
    queued,     ///< ready to run, waiting for a free worker (or a concurrency slot)
    running,    ///< claimed by a node, under its lease
    retrying,   ///< an attempt failed; the next one is due after the backoff
    succeeded,  ///< done (terminal)
    failed,     ///< out of attempts, timed out on its last attempt, or a dependency failed
    cancelled,  ///< cancelled, or skipped because a dependency failed (terminal)
};

/// The state as stored and published: "waiting", "scheduled", "queued", "running", ...
std::string_view to_string(job_state s) noexcept;
/// The state a stored name stands for; nullopt for an unknown name.
std::optional<job_state> parse_job_state(std::string_view name) noexcept;
constexpr bool is_terminal(job_state s) noexcept {
    return s == job_state::succeeded || s == job_state::failed || s == job_state::cancelled;
}

/// How long to wait before the next attempt of a failed job.
enum class backoff_kind {
    fixed,        ///< delay every time
    exponential,  ///< delay × 2^(attempt-1), at most max_delay
};

/// Attempts of a job. Defaults in comments.
struct retry_policy {
    /// Attempts in all, the first included (3). Must be in [1, 1000]. A lease that lapsed
    /// (the node running the job died or stalled) counts as a failed attempt.
    std::uint32_t max_attempts = 3;
    backoff_kind backoff = backoff_kind::exponential;
    /// The fixed delay, or the first of the exponential ones (1 s). Must be in [0, max_duration].
    std::chrono::milliseconds delay{1000};
    /// The longest delay (10 min). Must be in [delay, max_duration].
    std::chrono::milliseconds max_delay{std::chrono::minutes(10)};
    /// Each delay is scaled by a random factor in [1 - jitter, 1] (0.2). Must be in [0, 1].
    double jitter = 0.2;
};

/// How a job runs: given once per function (scheduler::add_function), or per job
/// (job_request::options). Defaults in comments.
struct job_options {
    retry_policy retry{};
    /// An attempt running longer is cancelled and fails with "timed out" (0: no timeout). Must
    /// be in [0, max_duration].
    std::chrono::milliseconds timeout{0};
    /// Higher runs first among queued jobs (0); equal priorities run in enqueue order. Must be
    /// in [-1000, 1000].
    int priority = 0;
    /// At most one job of the concurrency group runs at a time, cluster-wide (false). Same as
    /// concurrency_limit = 1.
    bool singleton = false;
    /// The group the concurrency and rate limits count (empty: the function's name). Jobs of
    /// different functions may share one.
    std::string concurrency_key{};
    /// Jobs of the group running at once, cluster-wide (0: no limit). A job that would exceed
    /// it stays queued until one of the group finishes.
    std::uint32_t concurrency_limit = 0;
    /// Jobs of the group started per rate_window, cluster-wide (0: no limit): a sliding
    /// window, as rate_limiter's. A job over it waits until the window lets it start.
    std::uint32_t rate_limit = 0;
    std::chrono::milliseconds rate_window{1000};
};

/// What a dependent job does when a job it depends on failed or was cancelled.
enum class dependency_failure {
    fail,  ///< it fails too, with "dependency <id> failed" (and so on down the graph)
    skip,  ///< it is cancelled, with "skipped: dependency <id> failed"
    run,   ///< it runs anyway, when all its dependencies are done (a batch's continuation)
};

/// Occurrences of a cron schedule that no node fired (every node was down at the instant).
enum class misfire_policy {
    skip,      ///< not run; the schedule goes on from now
    run_once,  ///< the latest missed occurrence runs once, at once
    run_each,  ///< every missed occurrence runs (at most 1000), at once
};

/// A job to enqueue.
struct job_request {
    std::string function;  ///< a function name (need not be registered on this node)
    std::string payload;   ///< text, handed to the function as is (typed: JSON, see job_payload)
    /// Run at this time point (a time ticker); unset: now.
    std::optional<std::chrono::system_clock::time_point> run_at{};
    /// Or run this long after the enqueue (a time ticker; this node's clock). Must be in [0,
    /// max_duration]; not together with run_at.
    std::optional<std::chrono::milliseconds> delay{};
    /// The job's id; empty: 32 random hex digits. An id that exists is refused
    /// (error::invalid_argument) unless idempotency_key names it.
    std::string id{};
    /// Enqueues with the same key return the first job's id and enqueue nothing, for as long
    /// as that job's record is kept (scheduler_options::record_ttl after it ends).
    std::string idempotency_key{};
    /// Jobs (ids) this one waits for; they must exist.
    std::vector<std::string> depends_on{};
    dependency_failure on_dependency_failure = dependency_failure::fail;
    /// Options of this job; unset: those of the function (add_function on the enqueuing node),
    /// or the defaults.
    std::optional<job_options> options{};
};

/// The JSON text of a typed payload (boost::json::value_from).
template <class T>
std::string job_payload(const T& value) {
    return boost::json::serialize(boost::json::value_from(value));
}

/// A recurring job: a cron schedule that enqueues a job at each occurrence, exactly once
/// across the cluster.
struct recurring_job {
    std::string name;      ///< unique per scheduler; the job ids are `cron:<name>:<Unix ms>`
    std::string cron;      ///< 5 fields, or 6 with seconds first (see cron_schedule)
    std::string time_zone = "UTC";  ///< IANA name ("Europe/Berlin")
    std::string function;
    std::string payload{};
    misfire_policy misfire = misfire_policy::skip;
    std::optional<job_options> options{};
};

/// One step of a job's history.
struct job_event {
    job_state state = job_state::queued;
    std::uint32_t attempt = 0;
    std::string node;   ///< the node that made the step
    std::string error;  ///< why (a failure, a retry, a cancellation), else empty
    std::chrono::system_clock::time_point at;  ///< Redis server time
};

/// A job's record (scheduler::async_get, async_list).
struct job_record {
    std::string id;
    std::string function;
    std::string payload;
    job_state state = job_state::queued;
    std::uint32_t attempts = 0;      ///< attempts started
    std::uint32_t max_attempts = 1;
    std::uint64_t fencing_token = 0;  ///< of the latest attempt
    int priority = 0;
    std::string node;       ///< the node running it or that ran it last
    std::string error;      ///< the last error
    std::string progress;   ///< the last progress reported
    std::string recurring;  ///< the recurring job that enqueued it, if any
    std::vector<std::string> depends_on;
    std::chrono::system_clock::time_point created, due, started, finished;  ///< zero: not yet
    bool has_result = false;  ///< a result is in the result store under the job's id
    std::vector<job_event> history;  ///< async_get only
};

/// A page of async_list.
struct job_page {
    std::vector<job_record> jobs;  ///< in async_list's order
    std::uint64_t total = 0;       ///< jobs in the state (and of the function, if filtered)
};

/// A recurring job as stored (scheduler::async_recurring): for dashboards.
struct recurring_info {
    std::string name, cron, time_zone, function;
    std::chrono::system_clock::time_point last_fired;  ///< zero: never
    std::chrono::system_clock::time_point next;        ///< computed from cron on this node
};

class scheduler;
namespace detail {
class scheduler_impl;
struct running_job;
}  // namespace detail

/// What a running job's function gets.
///
/// The function is a coroutine on the session's executor; it is cancelled (its awaited
/// operations complete with operation_aborted) when the job is cancelled from any node, times
/// out, loses its lease, or the scheduler stops. Bind cancellation_slot() to work the
/// coroutine does not await directly.
class job_context {
public:
    const std::string& id() const noexcept;
    const std::string& function() const noexcept;
    const std::string& payload() const noexcept;
    /// The payload as a T (JSON, boost::json::value_to). Throws error_with_diagnostics
    /// (error::decode_failed) naming the job when it does not convert.
    template <class T>
    T payload_as() const {
        try {
            return boost::json::value_to<T>(boost::json::parse(payload()));
        } catch (const std::exception& e) {
            throw_decode_failed(e.what());
        }
    }
    /// This attempt, from 1.
    std::uint32_t attempt() const noexcept;
    std::uint32_t max_attempts() const noexcept;
    /// Grows with every attempt of the job: pass it to what the job writes, so a write from an
    /// attempt whose lease lapsed can be told from the current one.
    std::uint64_t fencing_token() const noexcept;
    /// For a recurring job: the occurrence that enqueued it.
    std::optional<std::chrono::system_clock::time_point> occurrence() const noexcept;
    /// Emitted when the job must stop (see above).
    boost::asio::cancellation_slot cancellation_slot() const noexcept;
    /// True once the job has been told to stop.
    bool stop_requested() const noexcept;
    /// Stores progress (any text; shown by async_get and published as an event). Completion
    /// signature: void(error_code): error::lease_lost when this attempt no longer holds the
    /// job (its lease lapsed and the job moved on), connection errors as connection::async_exec.
    template <class Token = boost::asio::deferred_t>
    auto async_report_progress(std::string progress, Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
            [this](auto handler, std::string p) { progress_impl(std::move(p), std::move(handler)); },
            token, std::move(progress));
    }

private:
    friend class detail::scheduler_impl;
    friend struct detail::running_job;
    explicit job_context(detail::running_job* j) : job_(j) {}
    [[noreturn]] void throw_decode_failed(const char* what) const;
    void progress_impl(std::string p,
                       boost::asio::any_completion_handler<void(boost::system::error_code)> h);
    detail::running_job* job_;
};

/// A job function: a coroutine taking the job's context, returning its result as JSON (null:
/// none is stored). add_function converts other return types.
using job_function = std::function<boost::asio::awaitable<boost::json::value>(job_context&)>;

/// Scheduler settings. Defaults in comments.
struct scheduler_options {
    /// The job system's name ("default"): schedulers with the same name (and session prefix)
    /// share jobs. Every key of it is `<prefix>jobs:{<name>}...`, one Redis Cluster slot.
    std::string name = "default";
    /// Jobs this node runs at once (16; 0: this node only enqueues and fires schedules).
    std::size_t concurrency = 16;
    /// A running job's lease (30 s), renewed every third of it. When a node dies, its jobs
    /// are retried elsewhere after at most this. Must be in [100 ms, max_duration].
    std::chrono::milliseconds lease{std::chrono::seconds(30)};
    /// A node looks for due work at least this often even when told of none (1 s). Must be in
    /// [1 ms, max_duration].
    std::chrono::milliseconds poll_interval{std::chrono::seconds(1)};
    /// How long a finished job's record and history are kept (7 days). Must be in
    /// [1 s, max_duration].
    std::chrono::milliseconds record_ttl{std::chrono::hours(24 * 7)};
    /// A cron occurrence fired later than this after its instant counts as missed
    /// (misfire_policy) (5 s). Must be in [0, max_duration].
    std::chrono::milliseconds misfire_grace{std::chrono::seconds(5)};
};

/// The job system of one session.
///
/// Key layout for scheduler `name` (S = `<prefix>jobs:{<name>}`, every key in its slot):
/// - `S:job:<id>` (hash: the record, with the steps every job makes; a plain job's record,
///   marked x = 0, leaves out what its readers fill in: docs/jobs.md lists it) and
///   `S:job:<id>:history` (list of the other steps, as JSON), `S:job:<id>:dependents` (set),
///   kept record_ttl after the job ends;
/// - `S:ready:<function>` (zset, priority then order), `S:delayed` (zset by due time), `S:running`
///   (zset by lease deadline, with one keeper member scored +inf that holds it in skiplist
///   encoding), `S:parked:<group>` (list: jobs waiting for a concurrency
///   slot), `S:group:<group>` (zset of its running jobs), `S:rate:<group>` (sliding window);
/// - `S:state:<state>` and `S:state:<state>:<function>` (what async_list pages through:
///   lists, newest first, for the ended states; zsets by the time the job entered the state
///   for waiting, scheduled and retrying; queued and running jobs are listed from the ready
///   queues and S:running), `S:idem:<key>` (idempotency keys);
/// - `S:recurring` (hash: each recurring job's definition), `S:cron:<name>` (its last fired
///   occurrence, Unix ms);
/// - channels: event `jobs:<name>` of the session's event_bus (`<prefix>events:jobs:<name>`):
///   each message a JSON array of the steps one script call made, in order, each
///   {"id","function","state","attempt","node","error","at"};
///   `<prefix>events:jobs:<name>:wake` (work for idle nodes) and `…:cancel` (running jobs to
///   cancel).
///
/// Guarantees: each occurrence of a recurring job is enqueued exactly once across the
/// cluster while any node runs (every node fires it; one atomic script lets the first win);
/// a job runs on one node at a time (its lease, fenced by fencing_token); limits hold
/// cluster-wide (the claim script counts them).
///
/// Thread safety: none; use it from the session's executor. Every operation completes
/// through the handler's associated executor. Errors: error::invalid_argument naming the bad
/// input (diagnostics), error::session_closed, connection errors. Cancellation (per operation,
/// through the handler's cancellation slot): terminal, partial and total; the operation
/// completes with operation_aborted, and a script already sent may have run (an enqueue, a
/// cancel). async_run and async_wait say what theirs does. Lifetimes: arguments are copied; a
/// diagnostics& must outlive the operation; the scheduler must outlive async_run (its
/// destructor stops it).
///
/// g++ 12 destroys a braced temporary inside a co_await expression twice (a compiler bug):
/// write `job_request req{.function = "f"};` then `co_await sched.async_enqueue(req, ...)`.
class scheduler {
public:
    /// Throws error_with_diagnostics (error::bad_config) naming a bad option.
    explicit scheduler(session& s, scheduler_options opts = {});
    /// Stops the node's work (as async_run's cancellation) without waiting.
    ~scheduler();
    scheduler(const scheduler&) = delete;
    scheduler& operator=(const scheduler&) = delete;

    session& get_session() const noexcept { return *session_; }
    const scheduler_options& options() const noexcept;

    /// Registers fn under name, with the options its jobs get by default. F is called with
    /// a job_context& and returns asio::awaitable<void>, or asio::awaitable<T>: the job's
    /// result, stored in the session's result_store under the job's id as JSON
    /// (boost::json::value_from; a null boost::json::value stores nothing). Throws error_with_diagnostics (error::invalid_argument) for an empty name or bad
    /// options.
    template <class F>
    void add_function(std::string name, F fn, job_options opts = {}) {
        add_function_impl(std::move(name), wrap(std::move(fn)), std::move(opts));
    }

    /// Adds a recurring job, fired by this node (every node that runs it should add it, with
    /// the same definition). Throws error_with_diagnostics (error::invalid_argument) for a bad
    /// cron expression, time zone or name.
    void add_recurring(recurring_job job);

    /// Runs this node's part: claims and runs jobs of the registered functions, renews their
    /// leases, fires the recurring jobs, promotes due jobs. Completion signature:
    /// void(error_code) with operation_aborted once stopped (its cancellation, stop(), the
    /// destructor), after the jobs it was running were cancelled and handed back (queued
    /// again, the attempt not counted). Runs until then; only one at a time.
    template <class Token = boost::asio::deferred_t>
    auto async_run(Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
            [this](auto handler) { run_impl(std::move(handler)); }, token);
    }
    /// Makes async_run complete (see there).
    void stop();

    /// Enqueues a job. Completion signature: void(error_code, std::string id).
    template <class Token = boost::asio::deferred_t>
    auto async_enqueue(job_request req, diagnostics& diag, Token&& token = {}) {
        return initiate<void(boost::system::error_code, std::string)>(
            [this, &diag](auto h, job_request r) { enqueue_impl(std::move(r), &diag, std::move(h)); },
            token, std::move(req));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_enqueue(job_request req, Token&& token = {}) {
        return initiate<void(boost::system::error_code, std::string)>(
            [this](auto h, job_request r) { enqueue_impl(std::move(r), nullptr, std::move(h)); },
            token, std::move(req));
    }

    /// Enqueues jobs and a continuation that runs when all of them are done, whatever their
    /// outcome (dependency_failure::run; it reads their states with async_get). Completion
    /// signature: void(error_code, std::vector<std::string> ids), the continuation's id last.
    template <class Token = boost::asio::deferred_t>
    auto async_enqueue_batch(std::vector<job_request> jobs, job_request continuation,
                             Token&& token = {}) {
        return initiate<void(boost::system::error_code, std::vector<std::string>)>(
            [this](auto h, std::vector<job_request> j, job_request c) {
                batch_impl(std::move(j), std::move(c), std::move(h));
            },
            token, std::move(jobs), std::move(continuation));
    }

    /// Cancels a job from any node: one not started ends cancelled (its dependents follow
    /// their policy); a running one is told to stop wherever it runs and ends cancelled.
    /// Completion signature: void(error_code, std::optional<job_state>): the state the job
    /// was in (nullopt: no such job; a terminal state: nothing was done).
    template <class Token = boost::asio::deferred_t>
    auto async_cancel(std::string id, Token&& token = {}) {
        return initiate<void(boost::system::error_code, std::optional<job_state>)>(
            [this](auto h, std::string i) { cancel_impl(std::move(i), std::move(h)); }, token,
            std::move(id));
    }

    /// Queues a failed or cancelled job again (attempts start over), or runs a scheduled,
    /// retrying or waiting one now. Completion signature: void(error_code, bool): false when
    /// the job is not in such a state.
    template <class Token = boost::asio::deferred_t>
    auto async_run_now(std::string id, Token&& token = {}) {
        return initiate<void(boost::system::error_code, bool)>(
            [this](auto h, std::string i) { run_now_impl(std::move(i), std::move(h)); }, token,
            std::move(id));
    }

    /// A job's record with its history. Completion signature: void(error_code,
    /// std::optional<job_record>) (nullopt: no such job, or its record expired).
    template <class Token = boost::asio::deferred_t>
    auto async_get(std::string id, Token&& token = {}) {
        return initiate<void(boost::system::error_code, std::optional<job_record>)>(
            [this](auto h, std::string i) { get_impl(std::move(i), std::move(h)); }, token,
            std::move(id));
    }

    /// Waits until the job ends (or timeout passes: error::timeout) and returns its record.
    /// Completion signature: void(error_code, std::optional<job_record>). Cancellation:
    /// terminal.
    template <class Token = boost::asio::deferred_t>
    auto async_wait(std::string id, std::chrono::milliseconds timeout, Token&& token = {}) {
        return initiate<void(boost::system::error_code, std::optional<job_record>)>(
            [this](auto h, std::string i, std::chrono::milliseconds t) {
                wait_impl(std::move(i), t, std::move(h));
            },
            token, std::move(id), timeout);
    }

    /// Jobs in a state, optionally of one function (empty: all), from offset, at most count
    /// (≤ 1000): queued jobs in the order they run, running ones by lease deadline, the other
    /// states newest first. Completion signature: void(error_code, job_page).
    template <class Token = boost::asio::deferred_t>
    auto async_list(job_state state, std::string function, std::uint64_t offset,
                    std::uint32_t count, Token&& token = {}) {
        return initiate<void(boost::system::error_code, job_page)>(
            [this](auto h, job_state s, std::string f, std::uint64_t o, std::uint32_t c) {
                list_impl(s, std::move(f), o, c, std::move(h));
            },
            token, state, std::move(function), offset, count);
    }

    /// The recurring jobs stored in Redis (added by any node). Completion signature:
    /// void(error_code, std::vector<recurring_info>).
    template <class Token = boost::asio::deferred_t>
    auto async_recurring(Token&& token = {}) {
        return initiate<void(boost::system::error_code, std::vector<recurring_info>)>(
            [this](auto h) { recurring_impl(std::move(h)); }, token);
    }

    /// The event_bus channel every transition is published on: "jobs:<name>".
    std::string events_channel() const;

private:
    template <class Sig, class Token, class Init, class... Args>
    static auto initiate(Init init, Token& token, Args&&... args) {
        return boost::asio::async_initiate<Token, Sig>(std::move(init), token,
                                                       std::forward<Args>(args)...);
    }

    template <class F>
    static job_function wrap(F fn) {
        using R = std::invoke_result_t<F&, job_context&>;
        using V = typename R::value_type;
        if constexpr (std::is_same_v<V, boost::json::value>) {
            return job_function(std::move(fn));
        } else if constexpr (std::is_void_v<V>) {
            return [fn = std::move(fn)](job_context& ctx)
                       -> boost::asio::awaitable<boost::json::value> {
                co_await fn(ctx);
                co_return boost::json::value();
            };
        } else {
            return [fn = std::move(fn)](job_context& ctx)
                       -> boost::asio::awaitable<boost::json::value> {
                co_return boost::json::value_from(co_await fn(ctx));
            };
        }
    }

    using ec_handler = boost::asio::any_completion_handler<void(boost::system::error_code)>;
    void add_function_impl(std::string name, job_function fn, job_options opts);
    void run_impl(ec_handler h);
    void enqueue_impl(job_request r, diagnostics* diag,
                      boost::asio::any_completion_handler<void(boost::system::error_code,
                                                               std::string)> h);
    void batch_impl(std::vector<job_request> jobs, job_request cont,
                    boost::asio::any_completion_handler<void(boost::system::error_code,
                                                             std::vector<std::string>)> h);
    void cancel_impl(std::string id,
                     boost::asio::any_completion_handler<void(boost::system::error_code,
                                                              std::optional<job_state>)> h);
    void run_now_impl(std::string id,
                      boost::asio::any_completion_handler<void(boost::system::error_code, bool)> h);
    void get_impl(std::string id,
                  boost::asio::any_completion_handler<void(boost::system::error_code,
                                                           std::optional<job_record>)> h);
    void wait_impl(std::string id, std::chrono::milliseconds timeout,
                   boost::asio::any_completion_handler<void(boost::system::error_code,
                                                            std::optional<job_record>)> h);
    void list_impl(job_state s, std::string f, std::uint64_t offset, std::uint32_t count,
                   boost::asio::any_completion_handler<void(boost::system::error_code, job_page)> h);
    void recurring_impl(boost::asio::any_completion_handler<
                        void(boost::system::error_code, std::vector<recurring_info>)> h);

    session* session_;
    std::shared_ptr<detail::scheduler_impl> impl_;
};

}  // namespace redcoord
