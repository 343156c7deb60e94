// Event fan-out on one connection: 100 local listeners (awaitable receivers) of one channel
// share its single Redis subscription; a second connection, on its own thread, publishes as
// fast as its pipeline allows for a few seconds (256 publishes in flight, at most 20,000
// messages ahead of the listeners). Prints one JSON line with the deliveries per second
// (messages times listeners, from the first publish to the last delivery) and the publish rate.
//
//   build/bench/events [seconds] [listeners]
// Uses REDIS_URL when set; otherwise starts a throwaway redis-server on a free loopback port
// (with no output-buffer limit for pub/sub clients, so a slow subscriber is not cut off).
#include <redcoord/redcoord.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

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

constexpr std::uint64_t max_lead = 20000;

namespace {

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

struct listener_stats {
    std::uint64_t delivered = 0;
    std::uint64_t gaps = 0;
    std::uint64_t errors = 0;
    clock_type::time_point last{};
};

asio::awaitable<void> listen(redcoord::receiver<tick>& r, listener_stats& st, int& running,
                             std::atomic<std::uint64_t>* progress) {
    ++running;
    struct leave {
        int& n;
        ~leave() { --n; }
    } guard{running};
    for (;;) {
        auto [ec, ev] = co_await r.async_receive(nothrow);
        if (ec == redcoord::error::events_gap) {
            ++st.gaps;
            continue;
        }
        if (ec == asio::error::operation_aborted || ec == redcoord::error::session_closed) co_return;
        if (ec) {
            ++st.errors;
            continue;
        }
        ++st.delivered;
        st.last = clock_type::now();
        if (progress) progress->store(st.delivered, std::memory_order_relaxed);
    }
}

// One of `window` publishing coroutines, until `stop`. They stay at most max_lead messages
// ahead of the first listener, so the backlog (in Redis and in the subscriber) stays bounded
// and the run ends with everything delivered.
asio::awaitable<void> publisher(redcoord::event_bus& bus, std::atomic<bool>& stop,
                                const std::atomic<std::uint64_t>& consumed, std::uint64_t& sent,
                                std::uint64_t& published, std::uint64_t& failures) {
    asio::steady_timer pause(co_await asio::this_coro::executor);
    tick t{0, "bench"};
    while (!stop.load(std::memory_order_relaxed)) {
        if (sent - consumed.load(std::memory_order_relaxed) > max_lead) {
            pause.expires_after(std::chrono::microseconds(200));
            co_await pause.async_wait(nothrow);
            continue;
        }
        t.seq = static_cast<std::int64_t>(sent++);
        auto [ec, n] = co_await bus.async_publish("fanout", t, nothrow);
        if (ec) ++failures;
        ++published;
    }
}

}  // namespace

int main(int argc, char** argv) {
    const double seconds = argc > 1 ? std::atof(argv[1]) : 3.0;
    const int listeners = argc > 2 ? std::atoi(argv[2]) : 100;
    constexpr int window = 256;  // publishing coroutines, so as many PUBLISH in flight
    try {
        redcoord::test::redis_options ro;
        ro.extra_config = {"client-output-buffer-limit pubsub 0 0 0"};
        const bench_server server(ro);
        redcoord::config cfg = server.env.cfg;
        cfg.max_pending_pushes = 1u << 22;

        // Subscriber side: this thread.
        asio::io_context sub_ioc(1);
        redcoord::connection sub_conn(sub_ioc.get_executor());
        sub_conn.async_run(cfg, asio::detached);
        auto sub_session = std::make_unique<redcoord::session>(sub_conn);
        redcoord::event_bus sub_bus(*sub_session, {.queue_limit = 1u << 20});
        std::vector<redcoord::receiver<tick>> receivers;
        std::vector<listener_stats> stats(static_cast<std::size_t>(listeners));
        for (int i = 0; i < listeners; ++i) receivers.push_back(sub_bus.make_receiver<tick>("fanout"));
        int listening = 0;
        std::atomic<std::uint64_t> consumed{0};
        for (int i = 0; i < listeners; ++i)
            asio::co_spawn(sub_ioc,
                           listen(receivers[i], stats[i], listening, i == 0 ? &consumed : nullptr),
                           asio::detached);
        while (!sub_conn.is_connected()) sub_ioc.run_one();
        {
            bool pinged = false;
            redcoord::request ping;
            ping.push("PING");
            sub_conn.async_exec(ping, [&](boost::system::error_code, std::size_t) { pinged = true; });
            while (!pinged) sub_ioc.run_one();  // the SUBSCRIBE has reached Redis
        }

        // Publisher side: its own thread and connection.
        std::atomic<bool> stop{false};
        std::atomic<bool> pub_done{false};
        std::uint64_t sent = 0, published = 0, pub_failures = 0;
        double pub_seconds = 0;
        std::thread pub_thread([&] {
            asio::io_context ioc(1);
            redcoord::connection conn(ioc.get_executor());
            conn.async_run(cfg, asio::detached);
            redcoord::session s(conn);
            redcoord::event_bus bus(s);
            while (!conn.is_connected()) ioc.run_one();
            int running = 0;
            const auto start = clock_type::now();
            for (int i = 0; i < window; ++i, ++running)
                asio::co_spawn(ioc, publisher(bus, stop, consumed, sent, published, pub_failures),
                               [&](std::exception_ptr) { --running; });
            while (running > 0) ioc.run_one();
            pub_seconds = seconds_since(start);
            conn.cancel();
            ioc.run_for(std::chrono::milliseconds(50));
            pub_done = true;
        });

        const auto start = clock_type::now();
        const auto stop_at = start + std::chrono::duration_cast<clock_type::duration>(
                                         std::chrono::duration<double>(seconds));
        sub_ioc.run_until(stop_at);
        stop = true;
        run_until(sub_ioc, [&] { return pub_done.load(); });
        pub_thread.join();
        // Drain what is still on its way, bounded.
        auto total = [&] {
            std::uint64_t n = 0;
            for (auto& s : stats) n += s.delivered;
            return n;
        };
        const auto expected = published * static_cast<std::uint64_t>(listeners);
        run_until(sub_ioc, clock_type::now() + std::chrono::seconds(30),
                  [&] { return total() >= expected; });

        clock_type::time_point last = start;
        std::uint64_t gaps = 0, errors = 0;
        for (auto& s : stats) {
            last = std::max(last, s.last);
            gaps += s.gaps;
            errors += s.errors;
        }
        const auto delivered = total();
        const double sub_seconds = std::chrono::duration<double>(last - start).count();
        const auto usage = sub_conn.get_usage();

        // The listeners hold references to their receivers: close, let them end, then destroy.
        for (auto& r : receivers) r.close();
        while (listening > 0) sub_ioc.run_one();
        receivers.clear();
        sub_session.reset();
        sub_conn.cancel();
        sub_ioc.run_for(std::chrono::milliseconds(50));

        std::ostringstream json;
        json << "{\"figure\":\"event_fanout\",\"listeners\":" << listeners
             << ",\"delivered_msgs_per_s\":"
             << static_cast<long>(sub_seconds > 0 ? delivered / sub_seconds : 0)
             << ",\"published_msgs_per_s\":"
             << static_cast<long>(pub_seconds > 0 ? published / pub_seconds : 0)
             << ",\"max_lead\":" << max_lead << ",\"published\":" << published << ",\"delivered\":" << delivered
             << ",\"expected\":" << expected << ",\"gaps\":" << gaps
             << ",\"decode_errors\":" << errors << ",\"publish_failures\":" << pub_failures
             << ",\"pushes_dropped\":" << usage.pushes_dropped
             << ",\"seconds\":" << sub_seconds << "}";
        std::cout << json.str() << std::endl;
        return delivered == expected && pub_failures == 0 ? 0 : 1;
    } catch (const std::exception& e) {
        std::cerr << "events: " << e.what() << "\n";
        return 1;
    }
}
