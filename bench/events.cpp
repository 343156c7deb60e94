// Pub/sub fan-out, measured as the other clients measure it: messages received through the
// subscriber connection and handed to every local listener of the channel, per second.
//
// For 100 listeners and for 1, with callback listeners (event_bus::subscribe) and with
// awaitable receivers (receiver<T>::async_receive_all), each listener getting a typed `tick`
// decoded once per message. A second connection, on its own thread, publishes pipelined
// PUBLISH commands as fast as it can, staying at most `max_lead` messages ahead of the
// listeners. Every listener checks that it got every message, in order.
//
// The reference, measured in the same run against the same server: `redis-benchmark -c 1
// -P 256 PUBLISH` of a payload as long while one subscriber (redis-cli) reads the channel.
// One JSON line per case: msgs_per_s, deliveries_per_s (messages times listeners), the
// reference and the ratio.
//
//   build/bench/events [seconds per case] [listeners: 100|1] [callbacks|receivers]
// Uses REDIS_URL when set; otherwise starts a throwaway redis-server on a free loopback port
// (with no output-buffer limit for pub/sub clients, so a slow subscriber is not cut off).
#include <redcoord/redcoord.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.hpp"

namespace asio = boost::asio;
using namespace redcoord::bench;

namespace {

constexpr std::uint64_t max_lead = 50000;
constexpr int batch = 128;     // PUBLISH commands per request
constexpr int in_flight = 8;   // requests in flight

struct tick {
    std::int64_t seq = 0;
    std::string source;
};

void tag_invoke(const boost::json::value_from_tag&, boost::json::value& jv, const tick& t) {
    jv = {{"seq", t.seq}, {"source", t.source}};
}

tick tag_invoke(const boost::json::value_to_tag<tick>&, const boost::json::value& jv) {
    const auto& o = jv.as_object();
    return tick{o.at("seq").to_number<std::int64_t>(),
                boost::json::value_to<std::string>(o.at("source"))};
}

std::string payload_of(std::int64_t seq) {
    return "{\"seq\":" + std::to_string(seq) + ",\"source\":\"bench\"}";
}

// What one listener saw.
struct listener_stats {
    std::int64_t next = 0;  // the seq it expects
    std::uint64_t received = 0;
    std::uint64_t out_of_order = 0;
    std::uint64_t gaps = 0;
    std::uint64_t errors = 0;

    void on(const tick& t) {
        if (t.seq != next) ++out_of_order;
        next = t.seq + 1;
        ++received;
    }
};

asio::awaitable<void> receive_all(redcoord::receiver<tick>& r, listener_stats& st,
                                  int& running) {
    ++running;
    struct leave {
        int& n;
        ~leave() { --n; }
    } guard{running};
    std::vector<redcoord::event<tick>> events;
    for (;;) {
        events.clear();
        auto [ec] = co_await r.async_receive_all(events, nothrow);
        for (const auto& ev : events) st.on(ev.value);
        if (ec == redcoord::error::events_gap) {
            ++st.gaps;
        } else if (ec == asio::error::operation_aborted || ec == redcoord::error::session_closed) {
            co_return;
        } else if (ec) {
            ++st.errors;
        }
    }
}

// Publishes pipelined batches until `stop`, at most max_lead ahead of `consumed`.
asio::awaitable<void> publisher(redcoord::connection& conn, const std::string& channel,
                                std::atomic<bool>& stop,
                                const std::atomic<std::uint64_t>& consumed,
                                std::atomic<std::int64_t>& next_seq, std::uint64_t& failures) {
    asio::steady_timer pause(co_await asio::this_coro::executor);
    redcoord::request req;
    while (!stop.load(std::memory_order_relaxed)) {
        const auto seq = next_seq.load(std::memory_order_relaxed);
        if (static_cast<std::uint64_t>(seq) - consumed.load(std::memory_order_relaxed) >
            max_lead) {
            pause.expires_after(std::chrono::microseconds(100));
            co_await pause.async_wait(nothrow);
            continue;
        }
        req.clear();
        for (int i = 0; i < batch; ++i) req.push("PUBLISH", channel, payload_of(seq + i));
        next_seq.store(seq + batch, std::memory_order_relaxed);
        redcoord::ignore_t sink;
        auto [ec, n] = co_await conn.async_exec(req, sink, nothrow);
        if (ec) ++failures;
    }
}

struct case_result {
    double msgs_per_s = 0;
    double deliveries_per_s = 0;
    std::uint64_t published = 0;
    std::uint64_t lost = 0;
    std::uint64_t out_of_order = 0;
    std::uint64_t gaps = 0;
    std::uint64_t errors = 0;
    std::uint64_t publish_failures = 0;
    double seconds = 0;
};

case_result run_case(const redcoord::config& cfg, bool callbacks, int listeners, double seconds) {
    asio::io_context sub_ioc(1);
    redcoord::connection sub_conn(sub_ioc.get_executor());
    sub_conn.async_run(cfg, asio::detached);
    auto session = std::make_unique<redcoord::session>(sub_conn);
    redcoord::event_bus bus(*session, {.queue_limit = 1u << 20});
    const std::string channel = session->keys().channel("fanout");

    std::vector<listener_stats> stats(static_cast<std::size_t>(listeners));
    std::vector<redcoord::subscription> subs;
    std::vector<redcoord::receiver<tick>> receivers;
    int listening = 0;
    for (int i = 0; i < listeners; ++i) {
        auto& st = stats[static_cast<std::size_t>(i)];
        if (callbacks) {
            subs.push_back(bus.subscribe<tick>(
                "fanout", [&st](boost::system::error_code ec, const redcoord::event<tick>& ev) {
                    if (!ec)
                        st.on(ev.value);
                    else if (ec == redcoord::error::events_gap)
                        ++st.gaps;
                    else if (ec != redcoord::error::session_closed)
                        ++st.errors;
                }));
        } else {
            receivers.push_back(bus.make_receiver<tick>("fanout"));
        }
    }
    for (int i = 0; i < static_cast<int>(receivers.size()); ++i)
        asio::co_spawn(sub_ioc, receive_all(receivers[static_cast<std::size_t>(i)],
                                            stats[static_cast<std::size_t>(i)], listening),
                       asio::detached);
    while (!sub_conn.is_connected()) sub_ioc.run_one();
    {
        bool pinged = false;
        redcoord::request ping;
        ping.push("PING");
        sub_conn.async_exec(ping, [&](boost::system::error_code, std::size_t) { pinged = true; });
        while (!pinged) sub_ioc.run_one();  // the SUBSCRIBE has been confirmed
    }

    std::atomic<bool> stop{false};
    std::atomic<bool> pub_done{false};
    std::atomic<std::uint64_t> consumed{0};
    std::atomic<std::int64_t> next_seq{0};
    std::uint64_t pub_failures = 0;
    std::thread pub_thread([&] {
        asio::io_context ioc(1);
        redcoord::connection conn(ioc.get_executor());
        conn.async_run(cfg, asio::detached);
        while (!conn.is_connected()) ioc.run_one();
        int running = 0;
        for (int i = 0; i < in_flight; ++i, ++running)
            asio::co_spawn(ioc, publisher(conn, channel, stop, consumed, next_seq, pub_failures),
                           [&](std::exception_ptr) { --running; });
        while (running > 0) ioc.run_one();
        conn.cancel();
        ioc.run_for(std::chrono::milliseconds(50));
        pub_done = true;
    });

    auto slowest = [&] {
        std::uint64_t n = UINT64_MAX;
        for (auto& s : stats) n = std::min(n, s.received);
        return n;
    };
    const auto start = clock_type::now();
    const auto stop_at = start + std::chrono::duration_cast<clock_type::duration>(
                                     std::chrono::duration<double>(seconds));
    while (clock_type::now() < stop_at) {
        sub_ioc.run_for(std::chrono::milliseconds(5));
        consumed.store(slowest(), std::memory_order_relaxed);
    }
    stop = true;
    while (!pub_done) {
        sub_ioc.run_for(std::chrono::milliseconds(5));
        consumed.store(slowest(), std::memory_order_relaxed);
    }
    pub_thread.join();
    const auto published = static_cast<std::uint64_t>(next_seq.load());
    run_until(sub_ioc, clock_type::now() + std::chrono::seconds(30),
              [&] { return slowest() >= published; });
    const double elapsed = seconds_since(start);

    case_result r;
    r.published = published;
    r.seconds = elapsed;
    r.publish_failures = pub_failures;
    std::uint64_t delivered = 0;
    for (auto& s : stats) {
        delivered += s.received;
        r.lost += published - std::min(published, s.received);
        r.out_of_order += s.out_of_order;
        r.gaps += s.gaps;
        r.errors += s.errors;
    }
    r.msgs_per_s = static_cast<double>(slowest()) / elapsed;
    r.deliveries_per_s = static_cast<double>(delivered) / elapsed;

    subs.clear();
    for (auto& rc : receivers) rc.close();
    while (listening > 0) sub_ioc.run_one();
    receivers.clear();
    session.reset();
    sub_conn.cancel();
    sub_ioc.run_for(std::chrono::milliseconds(50));
    return r;
}

// redis-benchmark's PUBLISH rate while one redis-cli subscriber reads the channel.
std::optional<double> reference(const endpoint_info& ep, const std::string& channel) {
    const pid_t sub = fork();
    if (sub == 0) {
        const int devnull = ::open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, 1);
        const std::string port = std::to_string(ep.port);
        execlp("redis-cli", "redis-cli", "-h", ep.host.c_str(), "-p", port.c_str(), "SUBSCRIBE",
               channel.c_str(), static_cast<char*>(nullptr));
        _exit(127);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // subscribed
    // A payload as long as the bench's (redis-benchmark's CSV does not quote the quotes of
    // a JSON one).
    const std::string payload(payload_of(123456).size(), 'x');
    const auto rates =
        redis_benchmark(ep, "-c 1 -P 256 -n 2000000 PUBLISH " + channel + " " + payload);
    if (sub > 0) {
        kill(sub, SIGTERM);
        waitpid(sub, nullptr, 0);
    }
    for (const auto& [test, rate] : rates)
        if (test.rfind("PUBLISH", 0) == 0) return rate;
    return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
    const double seconds = argc > 1 ? std::atof(argv[1]) : 3.0;
    const int only_listeners = argc > 2 ? std::atoi(argv[2]) : 0;  // 0: both
    const std::string only_kind = argc > 3 ? argv[3] : "";         // empty: both
    try {
        redcoord::test::redis_options ro;
        ro.extra_config = {"client-output-buffer-limit pubsub 0 0 0"};
        const bench_server server(ro);
        redcoord::config cfg = server.env.cfg;
        cfg.max_pending_pushes = 1u << 22;

        const auto ref = reference(server.env.ep, redcoord::keyspace().channel("fanout"));
        int status = 0;
        for (const int listeners : {100, 1}) {
            if (only_listeners && listeners != only_listeners) continue;
            for (const bool callbacks : {true, false}) {
                if (!only_kind.empty() && (only_kind == "callbacks") != callbacks) continue;
                const auto r = run_case(cfg, callbacks, listeners, seconds);
                std::ostringstream json;
                json << "{\"figure\":\"event_fanout\",\"listeners\":" << listeners
                     << ",\"kind\":\"" << (callbacks ? "callbacks" : "receivers") << "\""
                     << ",\"msgs_per_s\":" << static_cast<long>(r.msgs_per_s)
                     << ",\"deliveries_per_s\":" << static_cast<long>(r.deliveries_per_s);
                if (ref) {
                    json << ",\"reference\":\"redis-benchmark -c 1 -P 256 PUBLISH, one "
                            "subscriber\",\"reference_msgs_per_s\":"
                         << static_cast<long>(*ref) << ",\"ratio\":" << r.msgs_per_s / *ref;
                } else {
                    json << ",\"reference\":null";
                }
                json << ",\"published\":" << r.published << ",\"lost\":" << r.lost
                     << ",\"out_of_order\":" << r.out_of_order << ",\"gaps\":" << r.gaps
                     << ",\"errors\":" << r.errors
                     << ",\"publish_failures\":" << r.publish_failures
                     << ",\"seconds\":" << r.seconds << "}";
                std::cout << json.str() << std::endl;
                if (r.lost || r.out_of_order || r.errors || r.publish_failures) status = 1;
            }
        }
        return status;
    } catch (const std::exception& e) {
        std::cerr << "events: " << e.what() << "\n";
        return 1;
    }
}
