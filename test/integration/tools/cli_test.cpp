// The `redcoord` inspector (tools/cli) run as a program against a real redis-server: state made
// with the library (held locks, nodes alive and dead, a leadership handed over, queues, jobs
// in several states), then read with the inspector, in JSON (parsed and checked field by field)
// and as tables; its actions read back through the library; and bad input and an unreachable
// server, refused with exit codes 2 and 1.
//
// The program is started with fork/exec and waited for without blocking the test's io_context
// (the test's own connections and leases keep running); it is ended by its PID only.
#include <redcoord/redcoord.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "connection_helpers.hpp"
#include "http_helpers.hpp"
#include "lease_helpers.hpp"
#include "redis_server.hpp"
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using redcoord::job_context;
using redcoord::job_request;
using redcoord::job_state;
using redcoord::scheduler;
using redcoord::session;
using redcoord::test::as_node;
using redcoord::test::nothrow;
using redcoord::test::redis_server;
using redcoord::test::with_connection;

// What a run of the program gave.
struct cli_result {
    int code = -1;  // exit code; -1 when it did not exit on its own (killed)
    std::string out, err;
    std::string text() const { return "exit " + std::to_string(code) + "\n" + out + err; }
};

// The fixture as --url: a redis:// URL, or the comma form with every master on a cluster.
std::string url_of(const redis_server& srv) {
    if (const auto* c = srv.cluster()) return c->seeds() + ",cluster=true";
    return "redis://127.0.0.1:" + std::to_string(srv.port());
}

// The redcoord program started with args, its stdout and stderr read through non-blocking
// pipes as it runs.
class cli_process {
  public:
    explicit cli_process(std::vector<std::string> args) {
        args.insert(args.begin(), REDCOORD_CLI);
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        int out[2], err[2];
        if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0)
            throw std::system_error(errno, std::generic_category(), "pipe2");
        const pid_t parent = ::getpid();
        pid_ = ::fork();
        if (pid_ < 0) throw std::system_error(errno, std::generic_category(), "fork");
        if (pid_ == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) ::_exit(127);
            ::dup2(out[1], STDOUT_FILENO);
            ::dup2(err[1], STDERR_FILENO);
            ::unsetenv("REDIS_URL");
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        ::close(out[1]);
        ::close(err[1]);
        out_ = out[0];
        err_ = err[0];
        for (int fd : {out_, err_}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    }
    ~cli_process() {
        if (!reaped_) {
            ::kill(pid_, SIGKILL);
            int status = 0;
            while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
            }
        }
        ::close(out_);
        ::close(err_);
    }
    cli_process(const cli_process&) = delete;
    cli_process& operator=(const cli_process&) = delete;

    // Reads what is there; true once the program has exited (and its output is read).
    bool poll() {
        drain(out_, result_.out);
        drain(err_, result_.err);
        if (reaped_) return true;
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) != pid_) return false;
        reaped_ = true;
        result_.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        drain(out_, result_.out);
        drain(err_, result_.err);
        return true;
    }

    // Waits (polling, without blocking the executor) until it exits; a program still running
    // after `guard` is killed and the test fails.
    asio::awaitable<cli_result> wait(std::chrono::seconds guard = 60s) {
        asio::steady_timer timer(co_await asio::this_coro::executor);
        const auto give_up = std::chrono::steady_clock::now() + guard;
        while (!poll()) {
            if (std::chrono::steady_clock::now() > give_up) {
                ::kill(pid_, SIGKILL);
                FAIL_CHECK("redcoord did not exit within " << guard.count() << " s\n"
                                                           << result_.text());
                co_return result_;
            }
            timer.expires_after(10ms);
            co_await timer.async_wait(nothrow);
        }
        co_return result_;
    }

    const cli_result& result() const { return result_; }
    // Asks it to stop (SIGTERM), as Ctrl-C would.
    void terminate() { ::kill(pid_, SIGTERM); }

  private:
    static void drain(int fd, std::string& into) {
        char buf[4096];
        for (;;) {
            const auto n = ::read(fd, buf, sizeof buf);
            if (n <= 0) return;
            into.append(buf, static_cast<std::size_t>(n));
        }
    }

    pid_t pid_ = -1;
    int out_ = -1, err_ = -1;
    bool reaped_ = false;
    cli_result result_;
};

asio::awaitable<cli_result> run_cli(std::vector<std::string> args) {
    cli_process p(std::move(args));
    co_return co_await p.wait();
}

// The arguments of a run (g++ 12 needs them out of the braces inside a co_await expression).
template <class... A>
std::vector<std::string> cli_args(const A&... a) {
    return {std::string(a)...};
}

// run_cli on an io_context of its own, for the tests that need no server of their own.
cli_result run_alone(std::vector<std::string> args) {
    asio::io_context ioc;
    cli_result r;
    asio::co_spawn(ioc, run_cli(std::move(args)), [&](std::exception_ptr ep, cli_result got) {
        if (ep) std::rethrow_exception(ep);
        r = std::move(got);
    });
    ioc.run();
    return r;
}

std::int64_t num(const json::value& v) { return v.to_number<std::int64_t>(); }

// Runs `redcoord --url <srv> --json args...`, which must succeed, and parses its output.
asio::awaitable<json::value> run_json(const redis_server& srv, std::vector<std::string> args) {
    args.insert(args.begin(), {"--url", url_of(srv), "--json"});
    const auto r = co_await run_cli(args);
    INFO(r.text());
    REQUIRE(r.code == 0);
    json::error_code ec;
    auto v = json::parse(r.out, ec);
    REQUIRE_FALSE(ec);
    co_return v;
}

// Runs `redcoord --url <srv> args...` (tables), which must succeed; returns its stdout.
asio::awaitable<std::string> run_table(const redis_server& srv, std::vector<std::string> args) {
    args.insert(args.begin(), {"--url", url_of(srv)});
    const auto r = co_await run_cli(args);
    INFO(r.text());
    REQUIRE(r.code == 0);
    co_return r.out;
}

// The element of array `a` whose field `key` is `value`, or null.
const json::object* find_by(const json::value& a, std::string_view key, std::string_view value) {
    for (const auto& e : a.as_array())
        if (const auto* f = e.as_object().if_contains(key);
            f && f->is_string() && f->get_string() == value)
            return &e.as_object();
    return nullptr;
}

std::string str(const json::value& v) { return std::string(v.as_string()); }

bool contains(const std::string& text, std::string_view part) {
    return text.find(part) != std::string::npos;
}

// A TCP port on 127.0.0.1 that nothing listens on (bound, then closed).
std::uint16_t free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    ::close(fd);
    return ntohs(addr.sin_port);
}

// Runs `jobs <action> <id>`, which must say it acted on the job, found `was`; returns the job's
// state then, read through the library.
asio::awaitable<job_state> act_on_job(const redis_server& srv, scheduler& sched, std::string action,
                                      std::string id, std::string was) {
    const auto doc = co_await run_json(srv, cli_args("jobs", action, id));
    INFO(json::serialize(doc));
    CHECK(doc.at("done").as_bool());
    CHECK(str(doc.at("was")) == was);
    auto [ec, record] = co_await sched.async_get(id, nothrow);
    REQUIRE(record);
    co_return record->state;
}

redcoord::scheduler_options fast_jobs() {
    redcoord::scheduler_options o;
    o.poll_interval = 100ms;
    o.lease = 2s;
    return o;
}

}  // namespace

TEST_CASE("cli: nodes, locks, leaders with their term history, and queues, in JSON and as tables",
          "[cli]") {
    with_connection([](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
        session a(conn, as_node("node-a"));
        session b(conn, as_node("node-b"));

        // Nodes: two alive, one whose heartbeat is gone.
        redcoord::membership members(a);
        for (const char* n : {"node-a", "node-b", "node-gone"}) {
            auto [ec] = co_await members.async_join(n, nothrow);
            REQUIRE_FALSE(ec);
        }
        auto [lec] = co_await members.async_leave("node-gone", nothrow);
        REQUIRE_FALSE(lec);
        co_await redcoord::test::command(conn, "SADD", a.keys().registry(), "node-gone");

        // A held lock and a semaphore permit.
        redcoord::lock_provider locks(a);
        const redcoord::acquire_options ao;
        auto [ec1, order_lock] = co_await locks.async_acquire("orders", ao, nothrow);
        REQUIRE_FALSE(ec1);
        redcoord::semaphore_provider sems(b);
        auto [ec2, permit] = co_await sems.async_acquire("pool", 3, ao, nothrow);
        REQUIRE_FALSE(ec2);

        // A leadership handed over from node-a to node-b.
        redcoord::leader_election ea(a), eb(b);
        auto [ec3, la] = co_await ea.async_campaign("scheduler", nothrow);
        REQUIRE_FALSE(ec3);
        auto [ec4] = co_await ea.async_resign(la, nothrow);
        REQUIRE_FALSE(ec4);
        auto [ec5, lb] = co_await eb.async_campaign("scheduler", nothrow);
        REQUIRE_FALSE(ec5);

        // A queue with two items waiting and one in flight.
        redcoord::reliable_queue q(a);
        for (const char* p : {"1", "2", "3"}) {
            auto [ec, id] = co_await q.async_enqueue("emails", p, nothrow);
            REQUIRE_FALSE(ec);
        }
        auto [ec6, item] = co_await q.async_dequeue("emails", "node-a", 0ms, nothrow);
        REQUIRE(item);

        {
            const auto doc = co_await run_json(srv, cli_args("nodes"));
            INFO(json::serialize(doc));
            const auto& nodes = doc.at("nodes");
            CHECK(nodes.as_array().size() == 3);
            const auto* na = find_by(nodes, "id", "node-a");
            const auto* gone = find_by(nodes, "id", "node-gone");
            REQUIRE(na);
            REQUIRE(gone);
            CHECK(na->at("alive").as_bool());
            CHECK(na->at("heartbeat_age_ms").is_int64());
            CHECK_FALSE(gone->at("alive").as_bool());
            CHECK(gone->at("heartbeat_age_ms").is_null());
            CHECK(num(doc.at("alive")) == 2);
            CHECK(num(doc.at("dead")) == 1);
            const auto dead = co_await run_json(srv, cli_args("nodes", "--dead"));
            CHECK(dead.at("nodes").as_array().size() == 1);
        }
        {
            const auto doc = co_await run_json(srv, cli_args("locks"));
            INFO(json::serialize(doc));
            const auto& held = doc.at("held");
            const auto* mutex = find_by(held, "name", "orders");
            REQUIRE(mutex);
            CHECK(str(mutex->at("kind")) == "mutex");
            CHECK(str(mutex->at("owner")) == order_lock.owner());
            CHECK(str(mutex->at("node")) == "node-a");
            CHECK(num(mutex->at("fencing_token")) == order_lock.fencing_token());
            CHECK(num(mutex->at("remaining_ttl_ms")) > 0);
            const auto* p = find_by(held, "name", "pool");
            REQUIRE(p);
            CHECK(str(p->at("kind")) == "permit");
            CHECK(str(p->at("owner")) == permit.owner());
            const auto* lead = find_by(held, "name", "scheduler");
            REQUIRE(lead);
            CHECK(str(lead->at("kind")) == "leadership");
            CHECK(num(lead->at("fencing_token")) == lb.fencing_token());
            const auto only = co_await run_json(srv, cli_args("locks", "--kind", "permit"));
            CHECK(only.at("held").as_array().size() == 1);
        }
        {
            const auto doc = co_await run_json(srv, cli_args("leaders"));
            INFO(json::serialize(doc));
            const auto* s = find_by(doc.at("leaderships"), "name", "scheduler");
            REQUIRE(s);
            const auto& leader = s->at("leader").as_object();
            CHECK(str(leader.at("node")) == "node-b");
            CHECK(str(leader.at("owner")) == lb.owner());
            CHECK(num(leader.at("term")) == lb.fencing_token());
            const auto& history = s->at("history").as_array();
            REQUIRE(history.size() == 2);  // newest first
            CHECK(num(history[0].at("term")) == lb.fencing_token());
            CHECK(str(history[0].at("node")) == "node-b");
            CHECK(num(history[1].at("term")) == la.fencing_token());
            CHECK(str(history[1].at("node")) == "node-a");
            CHECK(str(history[1].at("owner")) == la.owner());
        }
        {
            const auto doc = co_await run_json(srv, cli_args("queues"));
            INFO(json::serialize(doc));
            const auto* emails = find_by(doc.at("queues"), "name", "emails");
            REQUIRE(emails);
            CHECK(num(emails->at("depth")) == 2);
            CHECK(num(emails->at("in_flight")) == 1);
            CHECK(num(emails->at("consumers").at("node-a")) == 1);
        }

        // The same as tables.
        const auto nodes = co_await run_table(srv, cli_args("nodes"));
        CHECK(contains(nodes, "NODE"));
        CHECK(contains(nodes, "node-gone"));
        CHECK(contains(nodes, "dead"));
        const auto held = co_await run_table(srv, cli_args("locks"));
        CHECK(contains(held, "FENCE"));
        CHECK(contains(held, "orders"));
        CHECK(contains(held, std::to_string(order_lock.fencing_token())));
        CHECK(contains(held, "permit"));
        const auto leaders = co_await run_table(srv, cli_args("leaders", "--history", "10"));
        INFO(leaders);
        CHECK(contains(leaders, "scheduler"));
        CHECK(contains(leaders, std::to_string(la.fencing_token())));
        CHECK(leaders.find(std::to_string(lb.fencing_token())) <
              leaders.rfind(std::to_string(la.fencing_token())));
        const auto queues = co_await run_table(srv, cli_args("queues"));
        CHECK(contains(queues, "emails"));
        CHECK(contains(queues, "IN FLIGHT"));
        const auto contention = co_await run_table(srv, cli_args("locks", "contention"));
        CHECK_FALSE(contention.empty());

        auto [r1] = co_await order_lock.async_release(nothrow);
        CHECK_FALSE(r1);
        auto [r2] = co_await permit.async_release(nothrow);
        CHECK_FALSE(r2);
        auto [r3] = co_await eb.async_resign(lb, nothrow);
        CHECK_FALSE(r3);
    });
}

TEST_CASE("cli: force-release refuses without --yes and releases with it", "[cli]") {
    with_connection([](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
        session a(conn, as_node("node-a"));
        redcoord::lock_provider locks(a);
        const redcoord::acquire_options ao;
        auto [ec, held] = co_await locks.async_acquire("stuck", ao, nothrow);
        REQUIRE_FALSE(ec);
        redcoord::lock_monitor monitor(a);

        const auto refused =
            co_await run_cli(cli_args("--url", url_of(srv), "force-release", "stuck"));
        INFO(refused.text());
        CHECK(refused.code == 2);
        CHECK(contains(refused.err, "--yes"));
        auto [ec1, still] = co_await monitor.async_active_locks(nothrow);
        REQUIRE_FALSE(ec1);
        CHECK(still.size() == 1);

        const auto doc = co_await run_json(srv, cli_args("force-release", "stuck", "--yes"));
        CHECK(str(doc.at("name")) == "stuck");
        CHECK(doc.at("released").as_bool());
        auto [ec2, after] = co_await monitor.async_active_locks(nothrow);
        REQUIRE_FALSE(ec2);
        CHECK(after.empty());

        const auto again = co_await run_json(srv, cli_args("force-release", "stuck", "--yes"));
        CHECK_FALSE(again.at("released").as_bool());
    });
}

TEST_CASE("cli: jobs by state, a job's record and history, retry, run-now, cancel, recurring",
          "[cli]") {
    with_connection([](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
        session s(conn, as_node("worker-1"));
        scheduler sched(s, fast_jobs());
        sched.add_function("ok", [](job_context&) -> asio::awaitable<int> { co_return 7; });
        redcoord::job_options once;
        once.retry.max_attempts = 1;
        sched.add_function(
            "boom",
            [](job_context&) -> asio::awaitable<void> {
                throw std::runtime_error("the printer is on fire");
                co_return;
            },
            once);
        sched.add_recurring(
            {.name = "nightly", .cron = "0 30 2 * * *", .time_zone = "UTC", .function = "ok"});
        bool stopped = false;
        sched.async_run([&](boost::system::error_code) { stopped = true; });

        job_request ok_req{.function = "ok"};
        auto [e1, ok_id] = co_await sched.async_enqueue(ok_req, nothrow);
        REQUIRE_FALSE(e1);
        job_request boom_req{.function = "boom"};
        auto [e2, boom_id] = co_await sched.async_enqueue(boom_req, nothrow);
        REQUIRE_FALSE(e2);
        auto [w1, ok_rec] = co_await sched.async_wait(ok_id, 30s, nothrow);
        REQUIRE_FALSE(w1);
        auto [w2, boom_rec] = co_await sched.async_wait(boom_id, 30s, nothrow);
        REQUIRE_FALSE(w2);
        REQUIRE(boom_rec->state == job_state::failed);
        // This node stops: what follows stays where the inspector puts it.
        sched.stop();
        const bool ended = co_await redcoord::test::wait_for([&] { return stopped; });
        REQUIRE(ended);
        job_request idle_req{.function = "idle"};  // no node runs "idle": it stays queued
        auto [e3, idle_id] = co_await sched.async_enqueue(idle_req, nothrow);
        REQUIRE_FALSE(e3);
        job_request later_req{.function = "idle", .delay = std::chrono::milliseconds(1h)};
        auto [e4, later_id] = co_await sched.async_enqueue(later_req, nothrow);
        REQUIRE_FALSE(e4);

        {
            const auto doc = co_await run_json(srv, cli_args("jobs", "list"));
            INFO(json::serialize(doc));
            const auto& counts = doc.at("counts");
            CHECK(num(counts.at("succeeded")) == 1);
            CHECK(num(counts.at("failed")) == 1);
            CHECK(num(counts.at("queued")) == 1);
            CHECK(num(counts.at("scheduled")) == 1);
            CHECK(num(counts.at("running")) == 0);
        }
        {
            const auto doc = co_await run_json(
                srv, cli_args("jobs", "list", "--state", "failed", "--function", "boom"));
            INFO(json::serialize(doc));
            CHECK(num(doc.at("total")) == 1);
            const auto* job = find_by(doc.at("jobs"), "id", boom_id);
            REQUIRE(job);
            CHECK(str(job->at("state")) == "failed");
            CHECK(contains(str(job->at("error")), "the printer is on fire"));
            const auto none = co_await run_json(srv, cli_args("jobs", "list", "--state", "failed",
                                                              "--function", "ok", "--limit", "5"));
            CHECK(none.at("jobs").as_array().empty());
        }
        {
            const auto doc = co_await run_json(srv, cli_args("jobs", "show", boom_id));
            INFO(json::serialize(doc));
            CHECK(str(doc.at("id")) == boom_id);
            CHECK(str(doc.at("function")) == "boom");
            CHECK(str(doc.at("state")) == "failed");
            CHECK(str(doc.at("node")) == "worker-1");
            CHECK(num(doc.at("attempts")) == 1);
            const auto& history = doc.at("history").as_array();
            REQUIRE(history.size() >= 3);
            CHECK(str(history.front().at("state")) == "queued");
            CHECK(str(history.back().at("state")) == "failed");
        }
        const auto shown = co_await run_table(srv, cli_args("jobs", "show", ok_id));
        CHECK(contains(shown, "succeeded"));
        CHECK(contains(shown, "history"));
        const auto failed = co_await run_table(srv, cli_args("jobs", "list", "--state", "failed"));
        CHECK(contains(failed, boom_id));
        {
            const auto doc = co_await run_json(srv, cli_args("jobs", "recurring"));
            const auto* nightly = find_by(doc.at("recurring"), "name", "nightly");
            REQUIRE(nightly);
            CHECK(str(nightly->at("cron")) == "0 30 2 * * *");
        }

        // Actions, read back through the library.
        const auto not_failed =
            co_await run_cli(cli_args("--url", url_of(srv), "jobs", "retry", ok_id));
        CHECK(not_failed.code == 1);
        CHECK(contains(not_failed.err, "succeeded"));
        const auto boom_now = co_await act_on_job(srv, sched, "retry", boom_id, "failed");
        CHECK(boom_now == job_state::queued);
        const auto later_now = co_await act_on_job(srv, sched, "run-now", later_id, "scheduled");
        CHECK(later_now == job_state::queued);
        const auto idle_now = co_await act_on_job(srv, sched, "cancel", idle_id, "queued");
        CHECK(idle_now == job_state::cancelled);

        const auto missing =
            co_await run_cli(cli_args("--url", url_of(srv), "jobs", "show", "no-such"));
        CHECK(missing.code == 1);
        CHECK(contains(missing.err, "no-such"));
    });
}

TEST_CASE(
    "cli: events tail prints job events as they come until --count, and only those of its "
    "pattern",
    "[cli]") {
    with_connection([](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
        session s(conn, as_node("node-a"));
        redcoord::scheduler_options so;
        so.concurrency = 0;  // enqueues only: each enqueue publishes a "queued" step
        scheduler sched(s, so);
        redcoord::event_bus bus(s);
        cli_process tail({"--url", url_of(srv), "--json", "events", "tail", "jobs:*", "-n", "2"});
        // Publishes until the program has seen two (what came before it listened is lost).
        asio::steady_timer pause(co_await asio::this_coro::executor);
        const auto give_up = std::chrono::steady_clock::now() + 60s;
        while (!tail.poll() && std::chrono::steady_clock::now() < give_up) {
            job_request req{.function = "f"};
            auto [ec, id] = co_await sched.async_enqueue(req, nothrow);
            REQUIRE_FALSE(ec);
            const json::value other = "not for the pattern";
            auto [pec, n] = co_await bus.async_publish("other", other, nothrow);
            REQUIRE_FALSE(pec);
            pause.expires_after(50ms);
            co_await pause.async_wait(nothrow);
        }
        const auto r = co_await tail.wait();
        INFO(r.text());
        REQUIRE(r.code == 0);
        CHECK(contains(r.err, "listening"));
        std::istringstream lines(r.out);
        std::string line;
        int events = 0;
        while (std::getline(lines, line)) {
            const auto v = json::parse(line);
            CHECK(str(v.at("channel")) == "jobs:default");
            const auto& steps = v.at("value").as_array();
            REQUIRE_FALSE(steps.empty());
            CHECK(str(steps.front().at("state")) == "queued");
            CHECK(str(steps.front().at("function")) == "f");
            ++events;
        }
        CHECK(events == 2);
    });
}

TEST_CASE(
    "cli: bad input exits 2 naming what was wrong, an unreachable server exits 1, the "
    "password is never printed",
    "[cli]") {
    const auto unknown = run_alone({"frobnicate"});
    CHECK(unknown.code == 2);
    CHECK(contains(unknown.err, "frobnicate"));
    const auto sub = run_alone({"jobs", "frobnicate"});
    CHECK(sub.code == 2);
    CHECK(contains(sub.err, "jobs: unknown command 'frobnicate'"));
    const auto none = run_alone({});
    CHECK(none.code == 2);

    const auto port =
        run_alone({"--url", "redis://user:hunter2secret@127.0.0.1:notaport", "nodes"});
    INFO(port.text());
    CHECK(port.code == 2);
    CHECK(contains(port.err, "--url"));
    CHECK(contains(port.err, "port"));
    CHECK_FALSE(contains(port.err, "hunter2secret"));
    const auto key = run_alone({"--url", "127.0.0.1:1,password=hunter2secret,bogus=1", "nodes"});
    CHECK(key.code == 2);
    CHECK(contains(key.err, "bogus"));
    CHECK_FALSE(contains(key.err, "hunter2secret"));
    const auto timeout = run_alone({"--timeout", "soon", "nodes"});
    CHECK(timeout.code == 2);
    CHECK(contains(timeout.err, "--timeout"));
    const auto state = run_alone({"jobs", "list", "--state", "sleeping"});
    CHECK(state.code == 2);
    CHECK(contains(state.err, "--state"));

    const std::string closed = "redis://:hunter2secret@127.0.0.1:" + std::to_string(free_port());
    const auto unreachable = run_alone({"--url", closed, "--timeout", "2s", "nodes"});
    INFO(unreachable.text());
    CHECK(unreachable.code == 1);
    CHECK(contains(unreachable.err, "cannot connect"));
    CHECK(contains(unreachable.err, "***"));
    CHECK_FALSE(contains(unreachable.err, "hunter2secret"));
    CHECK(unreachable.out.empty());
}

TEST_CASE("cli: health as a table and in JSON, bad thresholds named", "[cli]") {
    with_connection([](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
        session a(conn, as_node("node-a"));
        redcoord::leader_election election(a);
        auto [ec, term] = co_await election.async_campaign("scheduler", nothrow);
        REQUIRE_FALSE(ec);
        const auto doc = co_await run_json(srv, cli_args("health"));
        INFO(json::serialize(doc));
        CHECK(str(doc.at("status")) == "healthy");
        CHECK(num(doc.at("probe_fencing_token")) > 0);
        const auto* leader = find_by(doc.at("leaders"), "name", "scheduler");
        REQUIRE(leader);
        CHECK(num(leader->at("term")) == term.fencing_token());
        CHECK(find_by(doc.at("checks"), "name", "probe_lock"));
        const auto table = co_await run_table(srv, cli_args("health", "--no-leaders"));
        CHECK(contains(table, "probe_lock"));
        CHECK_FALSE(contains(table, "scheduler"));
        CHECK(contains(table, "health: healthy"));
        const auto bad = co_await run_cli(
            cli_args("--url", url_of(srv), "health", "--max-latency", "quickly"));
        CHECK(bad.code == 2);
        CHECK(contains(bad.err, "--max-latency"));
    });
}

TEST_CASE("cli: the dashboard is served until SIGTERM, refusing a remote address", "[cli]") {
    with_connection([](redcoord::connection& conn, redis_server& srv) -> asio::awaitable<void> {
        session a(conn, as_node("node-a"));
        redcoord::lock_provider locks(a);
        redcoord::acquire_options ao;
        auto l = co_await redcoord::test::must_acquire(locks, "orders", ao);
        cli_process p(cli_args("--url", url_of(srv), "dashboard", "--listen", "127.0.0.1:0",
                               "--read-only"));
        const bool listening = co_await redcoord::test::wait_for(
            [&] { return p.poll() || contains(p.result().out, "/\n"); }, 30s);
        INFO(p.result().text());
        REQUIRE(listening);
        const std::string out = p.result().out;
        const auto at = out.find("dashboard: http://127.0.0.1:");
        REQUIRE(at != std::string::npos);
        const auto port = static_cast<std::uint16_t>(
            std::stoi(out.substr(at + std::string_view("dashboard: http://127.0.0.1:").size())));
        const asio::ip::tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
        const auto locks_reply = co_await redcoord::test::http_get(ep, "/api/locks");
        CHECK(locks_reply.status == 200);
        CHECK(contains(locks_reply.body, l.owner()));
        const auto refused = co_await redcoord::test::http_call(
            ep, boost::beast::http::verb::post, "/api/locks/orders/release");
        CHECK(refused.status == 403);  // --read-only
        CHECK(l.is_held());
        p.terminate();
        const auto r = co_await p.wait();
        CHECK(r.code == 0);

        const auto remote = co_await run_cli(
            cli_args("--url", url_of(srv), "dashboard", "--listen", "0.0.0.0:0"));
        CHECK(remote.code == 2);
        CHECK(contains(remote.err, "listen"));
        co_await redcoord::test::must_release(l);
    });
}

TEST_CASE("cli: a wrong password is refused with exit 1, without printing it", "[cli]") {
    redcoord::test::redis_options ro;
    ro.password = "right-password";
    redis_server srv(ro);
    const std::string url = srv.cluster()
                                ? srv.cluster()->seeds() + ",cluster=true,password=wrong-password"
                                : "redis://:wrong-password@127.0.0.1:" + std::to_string(srv.port());
    const auto r = run_alone({"--url", url, "nodes"});
    INFO(r.text());
    CHECK(r.code == 1);
    CHECK_FALSE(contains(r.err, "wrong-password"));
    CHECK_FALSE(r.err.empty());
}
