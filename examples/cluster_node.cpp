// A cluster node: joins the cluster, heartbeats, campaigns for the leadership of "scheduler",
// runs a periodic job as leader (one node at a time cluster-wide, under a lock), publishes what
// it did as an event and prints what the other nodes did. It also runs the job system
// (jobs.hpp, scheduler "demo"): a recurring job every 3 seconds, run by one node per
// occurrence, and a long job with progress reports that the leader runs (the function is
// registered on election), so that when the leader dies the job moves to the next leader once
// its lease lapses, as attempt 2. One readable line per thing that happens:
//
//   [node-2] elected leader of scheduler (term 1767225600123)
//   [node-1] node node-3 is dead
//   [node-3] cron tick 12:00:06 (occurrence 12:00:06)
//   [node-2] long job: attempt 2 of 3 started (the last one ended: lease lapsed on node node-1)
//
//   cluster_node <node-id> [--heartbeat-ms 500] [--grace-ms 500] [--ttl-ms 1500]
//                [--renew-ms 500] [--job-ms 1000] [--run-ms 60000] [--job-lease-ms 2000]
//                [--long-job-ms 20000]
//
// The connection string comes from REDIS_URL (default redis://127.0.0.1:6379). The node leaves
// gracefully (resigns, removes its heartbeat) on SIGINT or SIGTERM, or after --run-ms.
// scripts/demo starts three of them, kills the leader and watches the others take over.
#include <redcoord/events.hpp>
#include <redcoord/leader.hpp>
#include <redcoord/lock.hpp>
#include <redcoord/membership.hpp>
#include <redcoord/redcoord.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <map>
#include <optional>
#include <string>

namespace asio = boost::asio;
namespace json = boost::json;
using boost::system::error_code;
using std::chrono::milliseconds;

namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

struct settings {
    std::string node;
    milliseconds heartbeat{500}, grace{500}, ttl{1500}, renew{500}, job{1000}, run{60000};
    milliseconds job_lease{2000}, long_job{20000};
};

// "12:00:05" (UTC).
std::string hms(std::chrono::system_clock::time_point t) {
    const std::time_t secs = std::chrono::system_clock::to_time_t(t);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[16];
    std::snprintf(buf, sizeof buf, "%02d:%02d:%02d", tm.tm_hour, tm.tm_min, tm.tm_sec);
    return buf;
}

class node {
public:
    node(redcoord::connection& conn, settings cfg) : conn_(conn), cfg_(std::move(cfg)) {}

    asio::awaitable<int> run() {
        redcoord::session_options so;
        so.node_id = cfg_.node;
        redcoord::session s(conn_, so);

        redcoord::membership_options mo;
        mo.heartbeat_interval = cfg_.heartbeat;
        mo.heartbeat_grace = cfg_.grace;
        // Look for dead nodes twice per heartbeat: they are reported soon after their TTL.
        mo.dead_check_interval = cfg_.heartbeat / 2;
        redcoord::membership members(s, mo);
        auto member_watch = members.subscribe([this](const redcoord::member_event& e) {
            if (e.node == cfg_.node) return;
            switch (e.what) {
                case redcoord::member_event::kind::joined: say("node " + e.node + " joined"); break;
                case redcoord::member_event::kind::left: say("node " + e.node + " left"); break;
                case redcoord::member_event::kind::dead: say("node " + e.node + " is dead"); break;
            }
        });

        redcoord::event_bus bus(s);
        auto events = bus.subscribe<json::value>(
            "cluster", [this](error_code ec, const redcoord::event<json::value>& ev) {
                if (ec || !ev.value.is_object()) return;
                const auto& o = ev.value.as_object();
                const auto* from = o.if_contains("node");
                const auto* text = o.if_contains("text");
                if (!from || !text || !from->is_string() || !text->is_string()) return;
                if (from->as_string() == cfg_.node) return;
                say("event from " + std::string(from->as_string()) + ": " +
                    std::string(text->as_string()));
            });

        auto [jec] = co_await members.async_join(cfg_.node, nothrow);
        if (jec) {
            say("cannot join the cluster: " + jec.message());
            co_return 1;
        }
        say("joined the cluster (heartbeat every " + std::to_string(cfg_.heartbeat.count()) +
            " ms)");
        auto [nec, nodes] = co_await members.async_nodes(nothrow);
        if (!nec) {
            std::string alive;
            for (const auto& n : nodes)
                if (n.alive && n.id != cfg_.node) alive += (alive.empty() ? "" : ", ") + n.id;
            if (!alive.empty()) say("nodes already here: " + alive);
        }

        redcoord::leader_options lo;
        lo.leadership_timeout = cfg_.ttl;
        lo.renewal_interval = cfg_.renew;
        redcoord::leader_election election(s, lo, &members);
        std::optional<std::string> last_leader;
        auto leader_watch = election.watch_leader(
            "scheduler", [this, &last_leader](const std::optional<redcoord::leader_info>& i) {
                const std::string now = i ? i->node : std::string();
                if (last_leader && *last_leader == now) return;
                last_leader = now;
                if (!i)
                    say("scheduler has no leader");
                else if (i->node != cfg_.node)
                    say("leader of scheduler is " + i->node + " (term " +
                        std::to_string(i->term) + ")");
            });

        redcoord::lock_options lko;
        lko.default_ttl = std::chrono::seconds(5);
        redcoord::lock_provider locks(s, lko);

        // The job system: every node runs the recurring job's schedule and its function; the
        // long job's function is registered on election (lead()), so the leader runs it.
        redcoord::scheduler_options jo;
        jo.name = "demo";
        jo.lease = cfg_.job_lease;
        jo.poll_interval = milliseconds(200);
        redcoord::scheduler sched(s, jo);
        sched.add_function("cron-tick", [this](redcoord::job_context& ctx) -> asio::awaitable<void> {
            const auto occ = ctx.occurrence().value_or(std::chrono::system_clock::time_point{});
            say("cron tick " + hms(std::chrono::system_clock::now()) + " (occurrence " + hms(occ) +
                ")" + (ctx.attempt() > 1 ? " attempt " + std::to_string(ctx.attempt()) : ""));
            co_return;
        });
        sched.add_recurring({.name = "tick", .cron = "*/3 * * * * *", .function = "cron-tick"});
        sched_ = &sched;
        bool sched_done = false;
        sched.async_run([&](error_code) { sched_done = true; });
        // Every node enqueues the long job; its idempotency key makes it one job.
        redcoord::job_request long_req{.function = "long-job",
                                       .payload = std::to_string(cfg_.long_job.count()),
                                       .idempotency_key = "demo-long-job"};
        auto [eec, long_id] = co_await sched.async_enqueue(long_req, nothrow);
        if (eec) say("could not enqueue the long job: " + eec.message());

        auto ex = co_await asio::this_coro::executor;
        asio::signal_set signals(ex, SIGINT, SIGTERM);
        signals.async_wait([this](error_code ec, int sig) {
            if (ec) return;
            say(std::string("got ") + (sig == SIGINT ? "SIGINT" : "SIGTERM"));
            stop();
        });
        asio::steady_timer deadline(ex);
        deadline.expires_after(cfg_.run);
        deadline.async_wait([this](error_code ec) {
            if (!ec) stop();
        });

        co_await lead(election, locks, bus);

        signals.cancel();
        deadline.cancel();
        // Hands back the jobs this node runs (queued again, the attempt not counted).
        sched.stop();
        asio::steady_timer wait(ex);
        for (int i = 0; i < 100 && !sched_done; ++i) {
            wait.expires_after(milliseconds(50));
            co_await wait.async_wait(nothrow);
        }
        sched_ = nullptr;
        auto [lec] = co_await members.async_leave(cfg_.node, nothrow);
        say(lec ? "could not leave: " + lec.message() : "left the cluster");
        // Whatever is still held goes back before the connection stops.
        auto [cec] = co_await s.async_close(nothrow);
        if (cec) say("close: " + cec.message());
        co_return 0;
    }

private:
    void say(const std::string& line) const {
        std::cout << "[" << cfg_.node << "] " << line << std::endl;
    }

    void stop() {
        if (stopping_) return;
        stopping_ = true;
        if (current_ && current_->is_held())
            current_->async_release([](error_code) {});  // resign: the work ends with it
        else
            campaign_cancel_.emit(asio::cancellation_type::terminal);
    }

    // Campaign; as leader run the job until the leadership is lost; campaign again.
    asio::awaitable<void> lead(redcoord::leader_election& election, redcoord::lock_provider& locks,
                               redcoord::event_bus& bus) {
        auto ex = co_await asio::this_coro::executor;
        while (!stopping_) {
            say("campaigning for the leadership of scheduler");
            auto [ec, l] = co_await election.async_campaign(
                "scheduler", asio::bind_cancellation_slot(campaign_cancel_.slot(), nothrow));
            if (ec) {
                if (!stopping_) say("campaign failed: " + ec.message());
                co_return;
            }
            const auto term = l.fencing_token();
            say("elected leader of scheduler (term " + std::to_string(term) + ")");
            if (stopping_) {
                co_await election.async_resign(l, nothrow);
                say("resigned the leadership of scheduler");
                co_return;
            }
            register_long_job();
            current_ = &l;
            // The jobs run while the leadership holds; losing it cancels them.
            auto [order, ep, lost_ec] =
                co_await asio::experimental::make_parallel_group(
                    asio::co_spawn(ex, jobs(l, locks, bus), asio::deferred),
                    l.async_wait_lost(asio::deferred))
                    .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
            current_ = nullptr;
            if (!lost_ec)
                say("lost the leadership of scheduler (term " + std::to_string(term) +
                    "): " + l.lost_reason().message());
            else if (stopping_)
                say("resigned the leadership of scheduler (term " + std::to_string(term) + ")");
        }
    }

    asio::awaitable<void> jobs(redcoord::lease& leadership, redcoord::lock_provider& locks,
                               redcoord::event_bus& bus) {
        asio::steady_timer timer(co_await asio::this_coro::executor);
        const auto term = leadership.fencing_token();
        for (int run = 1;; ++run) {
            timer.expires_after(cfg_.job);
            co_await timer.async_wait(asio::use_awaitable);
            // The job itself runs under a lock, so that it never runs twice at once even while
            // an old leader has not yet noticed that it lost.
            redcoord::acquire_options ao;
            ao.wait = std::chrono::seconds(1);
            const std::string text =
                "job #" + std::to_string(run) + " done (term " + std::to_string(term) + ")";
            auto [ep] = co_await locks.async_run_exclusive(
                "scheduler-job",
                [&]() -> asio::awaitable<void> {
                    json::object o;
                    o["node"] = cfg_.node;
                    o["text"] = text;
                    const json::value v(std::move(o));
                    co_await bus.async_publish("cluster", v, asio::use_awaitable);
                },
                ao, nothrow);
            if (ep) {
                try {
                    std::rethrow_exception(ep);
                } catch (const std::exception& e) {
                    say("job #" + std::to_string(run) + " failed: " + e.what());
                }
            } else {
                say("ran job #" + std::to_string(run) + " as leader (term " +
                    std::to_string(term) + ")");
            }
        }
    }

    // The long job: reports its progress every 2 s. Registered by the leader only.
    void register_long_job() {
        if (!sched_ || long_job_registered_) return;
        long_job_registered_ = true;
        sched_->add_function("long-job", [this](redcoord::job_context& ctx) -> asio::awaitable<void> {
            const auto total = milliseconds(std::atoll(ctx.payload().c_str()));
            auto rec = co_await sched_->async_get(ctx.id(), nothrow);
            const auto& last = std::get<1>(rec);
            say("long job: attempt " + std::to_string(ctx.attempt()) + " of " +
                std::to_string(ctx.max_attempts()) + " started" +
                (ctx.attempt() > 1 && last && !last->error.empty()
                     ? " (the last one ended: " + last->error + ")"
                     : ""));
            asio::steady_timer t(co_await asio::this_coro::executor);
            const auto step = milliseconds(2000);
            for (auto done = milliseconds(0); done < total;) {
                t.expires_after(std::min(step, total - done));
                co_await t.async_wait(asio::use_awaitable);
                done += std::min(step, total - done);
                const std::string p = std::to_string(done * 100 / total) + "%";
                say("long job: attempt " + std::to_string(ctx.attempt()) + ", " + p);
                co_await ctx.async_report_progress(p, asio::use_awaitable);
            }
            say("long job: done on attempt " + std::to_string(ctx.attempt()));
        });
    }

    redcoord::connection& conn_;
    settings cfg_;
    redcoord::scheduler* sched_ = nullptr;
    bool long_job_registered_ = false;
    bool stopping_ = false;
    redcoord::lease* current_ = nullptr;
    asio::cancellation_signal campaign_cancel_;
};

int usage() {
    std::cerr << "usage: cluster_node <node-id> [--heartbeat-ms N] [--grace-ms N] [--ttl-ms N] "
                 "[--renew-ms N] [--job-ms N] [--run-ms N] [--job-lease-ms N] [--long-job-ms N]\n";
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2 || argv[1][0] == '-') return usage();
    settings cfg;
    cfg.node = argv[1];
    const std::map<std::string, milliseconds*> flags{
        {"--heartbeat-ms", &cfg.heartbeat}, {"--grace-ms", &cfg.grace}, {"--ttl-ms", &cfg.ttl},
        {"--renew-ms", &cfg.renew},         {"--job-ms", &cfg.job},     {"--run-ms", &cfg.run},
        {"--job-lease-ms", &cfg.job_lease}, {"--long-job-ms", &cfg.long_job}};
    for (int i = 2; i < argc; i += 2) {
        auto it = flags.find(argv[i]);
        if (it == flags.end() || i + 1 >= argc) return usage();
        *it->second = milliseconds(std::atoll(argv[i + 1]));
    }
    const char* url = std::getenv("REDIS_URL");
    try {
        const redcoord::config rc = redcoord::parse_config(url ? url : "redis://127.0.0.1:6379");
        asio::io_context ioc;
        redcoord::connection conn(ioc.get_executor());
        conn.async_run(rc, asio::detached);
        node n(conn, cfg);
        int code = 1;
        asio::co_spawn(ioc, n.run(), [&](std::exception_ptr ep, int rc) {
            code = rc;
            if (ep) {
                try {
                    std::rethrow_exception(ep);
                } catch (const std::exception& e) {
                    std::cerr << "cluster_node: " << e.what() << "\n";
                }
                code = 1;
            }
            conn.cancel();
        });
        ioc.run();
        return code;
    } catch (const std::exception& e) {
        std::cerr << "cluster_node: " << e.what() << "\n";
        return 1;
    }
}
