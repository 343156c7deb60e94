// Data-plane benchmarks, one JSON line per figure:
// - cache_set, cache_get: 100 coroutines on one connection, each on its own key, storing or
//   reading a small typed value (a struct converted through Boost.JSON, 10 min TTL) for 3 s;
//   alongside, measured in the same run against the same server, `redis-benchmark -c 1 -P 100`
//   of SET and GET with values of the same size (as many commands in flight as we have
//   coroutines) and the ratio; plain_set, plain_get: the same commands on the same keys (the
//   entry's JSON text, sent as is) by as many coroutines through connection::async_exec, set
//   against the same reference: what the connection itself does on this machine in this run,
//   the most a cache operation (which adds the JSON conversions) can approach;
// - queue_throughput: reliable_queue with 4 consumers (each its own connection and session,
//   running 16 dequeue -> ack handlers), fed by a producer on a fifth connection (64
//   coroutines, one enqueue in flight each) that keeps at most 1,000 items unacknowledged, for
//   3 s: items acknowledged per second and the latency from the enqueue call to the ack's
//   completion (the enqueue time travels in the payload);
// - queue_latency: the same set-up with the producer paced at half the rate measured above,
//   so the latency is that of a loaded queue, not of a backlog;
// - stampede_1_connection, stampede_4_connections: 1,000 coroutines call async_get_or_set on
//   one missing key at once (on one connection, or 250 on each of four); the factory takes
//   20 ms. Five rounds, each on a fresh key: factory calls (must equal the rounds), the time
//   to serve all 1,000 (median and max) and the Redis calls per caller (INFO commandstats).
//
//   build/bench/data [cache|queue|stampede ...]   (default: all three)
// Uses REDIS_URL when set; otherwise starts a throwaway redis-server on a free loopback port.
#include <redcoord/redcoord.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <boost/system/error_code.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "bench_support.hpp"

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using namespace redcoord::bench;

namespace {

// The middle of v (the upper of the two middles of an even count); 0 when empty.
double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// Connections, each with a session of its own (its own node id), on one io_context and
// thread: what several processes would be, without the scheduling noise of extra threads on a
// small machine.
struct nodes {
    asio::io_context ioc{1};
    std::vector<std::unique_ptr<redcoord::connection>> conns;
    std::vector<std::unique_ptr<redcoord::session>> sessions;

    nodes(const redcoord::config& cfg, int count, const std::string& name) {
        for (int i = 0; i < count; ++i) {
            conns.push_back(std::make_unique<redcoord::connection>(ioc.get_executor()));
            conns.back()->async_run(cfg, asio::detached);
            redcoord::session_options opts;
            opts.node_id = name + "-" + std::to_string(i);
            sessions.push_back(std::make_unique<redcoord::session>(*conns.back(), opts));
        }
        run_until(ioc, [&] {
            return std::all_of(conns.begin(), conns.end(),
                               [](const auto& c) { return c->is_connected(); });
        });
    }
    ~nodes() {
        sessions.clear();
        for (auto& c : conns) c->cancel();
        ioc.run_for(100ms);
    }
    redcoord::connection& conn(std::size_t i = 0) { return *conns[i]; }
    redcoord::session& session(std::size_t i = 0) { return *sessions[i]; }
};

// The typed value of the cache and stampede figures.
struct product {
    std::int64_t id = 0;
    std::string name;
    double price = 0;
};

void tag_invoke(const json::value_from_tag&, json::value& jv, const product& p) {
    jv = {{"id", p.id}, {"name", p.name}, {"price", p.price}};
}

product tag_invoke(const json::value_to_tag<product>&, const json::value& jv) {
    const auto& o = jv.as_object();
    product p;
    p.id = o.at("id").to_number<std::int64_t>();
    p.name = json::value_to<std::string>(o.at("name"));
    p.price = o.at("price").to_number<double>();
    return p;
}

product make_product(std::int64_t id) {
    product p;
    p.id = id;
    p.name = "product-" + std::to_string(id);
    p.price = 19.99;
    return p;
}

// ---- cache get / set ------------------------------------------------------------------------

constexpr int cache_coroutines = 100;

asio::awaitable<void> cache_setter(redcoord::cache& c, int i, const bool& stop,
                                   std::uint64_t& ops, std::uint64_t& failures) {
    const std::string key = "bench:" + std::to_string(i);
    const product value = make_product(i);
    const std::optional<std::chrono::milliseconds> ttl = std::chrono::minutes(10);
    while (!stop && failures < 1000) {
        auto [ec] = co_await c.async_set(key, value, ttl, nothrow);
        if (ec) ++failures;
        ++ops;
    }
}

// The commands of cache_setter and cache_getter, built once and sent as they are.
asio::awaitable<void> plain_setter(redcoord::session& s, int i, const bool& stop,
                                   std::uint64_t& ops, std::uint64_t& failures) {
    auto& conn = s.get_connection();
    const auto& keys = s.keys();
    const std::string text = json::serialize(json::value_from(make_product(i)));
    redcoord::request req;
    req.push("SET", keys.cache("bench:" + std::to_string(i)), text, "PX", 600000);
    while (!stop && failures < 1000) {
        auto [ec, n] = co_await conn.async_exec(req, redcoord::ignore, nothrow);
        if (ec) ++failures;
        ++ops;
    }
}

asio::awaitable<void> plain_getter(redcoord::session& s, int i, const bool& stop,
                                   std::uint64_t& ops, std::uint64_t& failures) {
    auto& conn = s.get_connection();
    const auto& keys = s.keys();
    redcoord::request req;
    req.push("GET", keys.cache("bench:" + std::to_string(i)));
    std::optional<std::string> text;
    while (!stop && failures < 1000) {
        auto [ec, n] = co_await conn.async_exec(req, text, nothrow);
        if (ec || !text) ++failures;
        ++ops;
    }
}

asio::awaitable<void> cache_getter(redcoord::cache& c, int i, const bool& stop,
                                   std::uint64_t& ops, std::uint64_t& failures) {
    const std::string key = "bench:" + std::to_string(i);
    while (!stop && failures < 1000) {
        auto [ec, v] = co_await c.async_get<product>(key, nothrow);
        if (ec || !v || v->id != i) ++failures;
        ++ops;
    }
}

struct rate {
    double ops_per_s = 0;
    std::uint64_t ops = 0;
    double seconds = 0;
    double client_cpu_us_per_op = 0;
    std::uint64_t failures = 0;
};

// Runs `coroutines` copies of worker for 0.5 s of warm-up, then measures for `measure`.
template <class Worker>
rate measure_workers(nodes& n, Worker worker, std::chrono::milliseconds measure) {
    bool stop = false;
    std::uint64_t ops = 0, failures = 0;
    int done = 0;
    for (int i = 0; i < cache_coroutines; ++i)
        asio::co_spawn(n.ioc, worker(i, stop, ops, failures),
                       [&](std::exception_ptr) { ++done; });
    n.ioc.run_for(500ms);
    const auto ops0 = ops;
    const auto cpu0 = cpu_seconds();
    const auto t0 = clock_type::now();
    n.ioc.run_for(measure);
    rate r;
    r.seconds = seconds_since(t0);
    r.ops = ops - ops0;
    const double cpu = cpu_seconds() - cpu0;
    stop = true;
    run_until(n.ioc, [&] { return done == cache_coroutines; });
    r.ops_per_s = static_cast<double>(r.ops) / r.seconds;
    r.client_cpu_us_per_op = r.ops ? cpu * 1e6 / static_cast<double>(r.ops) : 0;
    r.failures = failures;
    return r;
}

void print_cache_line(const char* figure, const rate& r, std::size_t value_bytes,
                      const std::string& reference, std::optional<double> ref_rate) {
    std::ostringstream json;
    json << "{\"bench\":\"" << figure << "\",\"coroutines\":" << cache_coroutines
         << ",\"connections\":1,\"value_bytes\":" << value_bytes << ",\"seconds\":" << r.seconds
         << ",\"ops\":" << r.ops << ",\"ops_per_s\":" << static_cast<long>(r.ops_per_s)
         << ",\"client_cpu_us_per_op\":" << r.client_cpu_us_per_op
         << ",\"failures\":" << r.failures;
    if (ref_rate && *ref_rate > 0) {
        json << ",\"reference\":\"" << reference << "\""
             << ",\"reference_ops_per_s\":" << static_cast<long>(*ref_rate)
             << ",\"ratio\":" << r.ops_per_s / *ref_rate;
    } else {
        json << ",\"reference\":null";
    }
    json << "}";
    std::cout << json.str() << std::endl;
}

int bench_cache(const bench_env& env) {
    const auto measure = 3s;
    nodes n(env.cfg, 1, "bench-cache");
    redcoord::cache c(n.session());

    auto set = measure_workers(
        n,
        [&](int i, const bool& stop, std::uint64_t& ops, std::uint64_t& failures) {
            return cache_setter(c, i, stop, ops, failures);
        },
        measure);
    auto get = measure_workers(
        n,
        [&](int i, const bool& stop, std::uint64_t& ops, std::uint64_t& failures) {
            return cache_getter(c, i, stop, ops, failures);
        },
        measure);

    auto plain_set = measure_workers(
        n,
        [&](int i, const bool& stop, std::uint64_t& ops, std::uint64_t& failures) {
            return plain_setter(n.session(), i, stop, ops, failures);
        },
        measure);
    auto plain_get = measure_workers(
        n,
        [&](int i, const bool& stop, std::uint64_t& ops, std::uint64_t& failures) {
            return plain_getter(n.session(), i, stop, ops, failures);
        },
        measure);

    // The reference: SET and GET of values as long as ours, with as many commands in flight
    // on one connection as we have coroutines, each test running about as long as ours.
    const std::size_t value_bytes = json::serialize(json::value_from(make_product(0))).size();
    const long n_ops = std::clamp<long>(static_cast<long>(2 * std::max(set.ops_per_s,
                                                                       get.ops_per_s)),
                                        200000, 3000000);
    const std::string args = "-c 1 -P " + std::to_string(cache_coroutines) + " -d " +
                             std::to_string(value_bytes) + " -r " +
                             std::to_string(cache_coroutines) + " -n " + std::to_string(n_ops) +
                             " -t set,get";
    const auto ref = redis_benchmark(env.ep, args);
    const std::string label = "redis-benchmark -c 1 -P " + std::to_string(cache_coroutines) +
                              " -d " + std::to_string(value_bytes) + " -r " +
                              std::to_string(cache_coroutines);
    print_cache_line("cache_set", set, value_bytes, label + " SET", rate_of(ref, "SET"));
    print_cache_line("cache_get", get, value_bytes, label + " GET", rate_of(ref, "GET"));
    print_cache_line("plain_set", plain_set, value_bytes, label + " SET", rate_of(ref, "SET"));
    print_cache_line("plain_get", plain_get, value_bytes, label + " GET", rate_of(ref, "GET"));
    return set.failures == 0 && get.failures == 0 && plain_set.failures == 0 &&
                   plain_get.failures == 0
               ? 0
               : 1;
}

// ---- queue enqueue -> ack -------------------------------------------------------------------

constexpr int queue_consumers = 4;
constexpr int handlers_per_consumer = 16;
constexpr std::uint64_t max_unacked = 1000;  // throughput phase: the producer's bound

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               clock_type::now().time_since_epoch())
        .count();
}

struct queue_state {
    std::string name;  // the queue
    bool stop_producing = false;
    bool stop_consuming = false;
    bool measuring = false;
    std::uint64_t enqueued = 0;  // completed enqueues
    std::uint64_t launched = 0;  // enqueue calls made
    std::uint64_t in_flight = 0; // paced producer: enqueue calls not completed yet
    std::uint64_t acked = 0;
    std::uint64_t failures = 0;
    std::vector<std::int64_t> latency_us;  // of the acks inside the window
};

// One handler of a consumer: takes an item, acknowledges it, records its latency.
asio::awaitable<void> queue_handler(redcoord::reliable_queue& q, queue_state& st) {
    while (!st.stop_consuming && st.failures < 1000) {
        auto [ec, item] = co_await q.async_dequeue(st.name, "", 100ms, nothrow);
        if (ec) {
            ++st.failures;
            continue;
        }
        if (!item) continue;
        auto [aec, removed] = co_await q.async_ack(st.name, "", item->raw, nothrow);
        if (aec || !removed) {
            ++st.failures;
            continue;
        }
        const std::int64_t sent = std::atoll(item->payload.c_str());
        ++st.acked;
        if (st.measuring) st.latency_us.push_back((now_ns() - sent) / 1000);
    }
}

// The payload: the enqueue time (steady clock, ns), then filler up to 64 bytes.
std::string queue_payload() {
    std::string p = std::to_string(now_ns()) + " ";
    p.resize(64, 'x');
    return p;
}

// Throughput phase: one of the producer's coroutines, each with one enqueue in flight; they
// stop when max_unacked items wait, so the backlog stays bounded.
asio::awaitable<void> bounded_producer(redcoord::reliable_queue& q, queue_state& st) {
    asio::steady_timer pause(co_await asio::this_coro::executor);
    while (!st.stop_producing && st.failures < 1000) {
        if (st.launched - st.acked >= max_unacked) {
            pause.expires_after(100us);
            co_await pause.async_wait(nothrow);
            continue;
        }
        ++st.launched;
        auto [ec, id] = co_await q.async_enqueue(st.name, queue_payload(), nothrow);
        if (ec) {
            ++st.failures;
            --st.launched;
            continue;
        }
        ++st.enqueued;
    }
}

// Latency phase: enqueues at a fixed rate, open loop (calls are not held back by the
// previous ones' replies), from a 1 ms tick.
asio::awaitable<void> paced_producer(redcoord::reliable_queue& q, queue_state& st,
                                     double per_second) {
    asio::steady_timer tick(co_await asio::this_coro::executor);
    const auto start = clock_type::now();
    while (!st.stop_producing && st.failures < 1000) {
        const auto due = static_cast<std::uint64_t>(seconds_since(start) * per_second);
        for (; st.launched < due; ++st.launched, ++st.in_flight)
            q.async_enqueue(st.name, queue_payload(),
                            [&st](boost::system::error_code ec, std::string) {
                                --st.in_flight;
                                if (ec)
                                    ++st.failures;
                                else
                                    ++st.enqueued;
                            });
        tick.expires_after(1ms);
        co_await tick.async_wait(nothrow);
    }
}

struct queue_result {
    double items_per_s = 0;
    double seconds = 0;
    std::uint64_t items = 0;
    double p50_ms = 0, p99_ms = 0, max_ms = 0;
    std::uint64_t enqueued = 0, acked = 0, failures = 0;
};

// One queue figure; paced_rate unset: the bounded, as-fast-as-possible producer.
queue_result run_queue(const bench_env& env, std::optional<double> paced_rate) {
    const auto measure = 3s;
    queue_state st;  // outlives the connections, which may still run handlers at teardown
    st.name = "bench:" + env.run_tag + (paced_rate ? ":paced" : ":bounded");
    st.latency_us.reserve(1 << 20);
    nodes producer(env.cfg, 1, "bench-producer");
    asio::io_context& ioc = producer.ioc;
    // The consumers share the producer's io_context (and thread): one loop drives all five
    // connections.
    std::vector<std::unique_ptr<redcoord::connection>> conns;
    std::vector<std::unique_ptr<redcoord::session>> sessions;
    std::vector<std::unique_ptr<redcoord::reliable_queue>> queues;
    for (int i = 0; i < queue_consumers; ++i) {
        conns.push_back(std::make_unique<redcoord::connection>(ioc.get_executor()));
        conns.back()->async_run(env.cfg, asio::detached);
        redcoord::session_options opts;
        opts.node_id = "bench-consumer-" + std::to_string(i);
        sessions.push_back(std::make_unique<redcoord::session>(*conns.back(), opts));
        queues.push_back(std::make_unique<redcoord::reliable_queue>(*sessions.back()));
    }
    run_until(ioc, [&] {
        return std::all_of(conns.begin(), conns.end(),
                           [](const auto& c) { return c->is_connected(); });
    });
    int running = 0;
    for (auto& q : queues)
        for (int h = 0; h < handlers_per_consumer; ++h, ++running)
            asio::co_spawn(ioc, queue_handler(*q, st), [&](std::exception_ptr) { --running; });
    redcoord::reliable_queue pq(producer.session());
    int producing = 1;
    if (paced_rate) {
        asio::co_spawn(ioc, paced_producer(pq, st, *paced_rate),
                       [&](std::exception_ptr) { --producing; });
    } else {
        producing = 64;
        for (int i = 0; i < producing; ++i)
            asio::co_spawn(ioc, bounded_producer(pq, st), [&](std::exception_ptr) { --producing; });
    }
    ioc.run_for(500ms);  // warm up

    const auto acked0 = st.acked;
    const auto t0 = clock_type::now();
    st.measuring = true;
    ioc.run_for(measure);
    st.measuring = false;
    queue_result r;
    r.seconds = seconds_since(t0);
    r.items = st.acked - acked0;

    // Drain: every item enqueued is acknowledged before the consumers stop.
    st.stop_producing = true;
    run_until(ioc, [&] { return producing == 0 && st.in_flight == 0; });
    run_until(ioc, clock_type::now() + 10s, [&] { return st.acked >= st.enqueued; });
    st.stop_consuming = true;
    run_until(ioc, [&] { return running == 0; });

    r.items_per_s = static_cast<double>(r.items) / r.seconds;
    r.p50_ms = percentile_ms(st.latency_us, 0.50);
    r.p99_ms = percentile_ms(st.latency_us, 0.99);
    r.max_ms = percentile_ms(st.latency_us, 1.0);
    r.enqueued = st.enqueued;
    r.acked = st.acked;
    r.failures = st.failures;

    // Every item is acknowledged: what is left is the set of consumers.
    const redcoord::keyspace keys(producer.session().options().prefix);
    const std::string queue_key = keys.queue(st.name);
    run(ioc, command_text(producer.conn(),
                          {"DEL", queue_key, redcoord::keyspace::companion(queue_key, "consumers")}));

    queues.clear();
    sessions.clear();
    for (auto& c : conns) c->cancel();
    ioc.run_for(100ms);
    return r;
}

void print_queue_line(const char* figure, const queue_result& r,
                      std::optional<double> offered) {
    std::ostringstream json;
    json << "{\"bench\":\"" << figure << "\",\"consumers\":" << queue_consumers
         << ",\"handlers_per_consumer\":" << handlers_per_consumer << ",\"connections\":"
         << queue_consumers + 1 << ",\"payload_bytes\":64";
    if (offered)
        json << ",\"producer\":\"paced\",\"offered_items_per_s\":" << static_cast<long>(*offered);
    else
        json << ",\"producer\":\"bounded\",\"max_unacked\":" << max_unacked;
    json << ",\"seconds\":" << r.seconds << ",\"items\":" << r.items
         << ",\"items_per_s\":" << static_cast<long>(r.items_per_s)
         << ",\"latency_p50_ms\":" << r.p50_ms << ",\"latency_p99_ms\":" << r.p99_ms
         << ",\"latency_max_ms\":" << r.max_ms << ",\"enqueued\":" << r.enqueued
         << ",\"acked\":" << r.acked << ",\"lost\":"
         << (r.enqueued > r.acked ? r.enqueued - r.acked : 0) << ",\"failures\":" << r.failures
         << "}";
    std::cout << json.str() << std::endl;
}

int bench_queue(const bench_env& env) {
    const auto saturated = run_queue(env, std::nullopt);
    print_queue_line("queue_throughput", saturated, std::nullopt);
    const double offered = std::max(1000.0, saturated.items_per_s / 2);
    const auto loaded = run_queue(env, offered);
    print_queue_line("queue_latency", loaded, offered);
    const auto ok = [](const queue_result& r) { return r.failures == 0 && r.acked == r.enqueued; };
    return ok(saturated) && ok(loaded) ? 0 : 1;
}

// ---- get_or_set stampede --------------------------------------------------------------------

constexpr int stampede_callers = 1000;
constexpr int stampede_rounds = 5;
constexpr auto factory_time = 20ms;

struct stampede_round {
    int factory_calls = 0;
    int served = 0;
    int failures = 0;
    clock_type::time_point factory_done{};
    clock_type::time_point last{};
};

asio::awaitable<void> stampede_caller(redcoord::cache& c, std::string key, stampede_round& r) {
    auto factory = [&r]() -> asio::awaitable<product> {
        ++r.factory_calls;
        asio::steady_timer work(co_await asio::this_coro::executor, factory_time);
        co_await work.async_wait(nothrow);
        r.factory_done = clock_type::now();
        co_return make_product(42);
    };
    const std::optional<std::chrono::milliseconds> ttl = std::chrono::minutes(10);
    auto [ep, v] = co_await c.async_get_or_set<product>(std::move(key), factory, ttl, nothrow);
    if (ep || v.id != 42) ++r.failures;
    ++r.served;
    r.last = clock_type::now();
}

int bench_stampede(const bench_env& env, int connections) {
    // The rounds' state outlives the connections: callers of a round that timed out may still
    // run while they close.
    std::vector<std::unique_ptr<stampede_round>> rounds;
    nodes n(env.cfg, connections, "bench-stampede");
    std::vector<std::unique_ptr<redcoord::cache>> caches;
    for (auto& s : n.sessions) caches.push_back(std::make_unique<redcoord::cache>(*s));

    std::vector<double> serve_ms, after_factory_ms;
    int factory_calls = 0, failures = 0;
    long calls = 0;
    for (int round = 0; round < stampede_rounds; ++round) {
        const std::string key = "stampede:" + env.run_tag + ":" + std::to_string(connections) +
                                ":" + std::to_string(round);
        run(n.ioc, command_text(n.conn(), {"CONFIG", "RESETSTAT"}));
        stampede_round& r = *rounds.emplace_back(std::make_unique<stampede_round>());
        const auto t0 = clock_type::now();
        for (int i = 0; i < stampede_callers; ++i)
            asio::co_spawn(n.ioc,
                           stampede_caller(*caches[static_cast<std::size_t>(i % connections)],
                                           key, r),
                           asio::detached);
        const bool all = run_until(n.ioc, t0 + 30s, [&] { return r.served == stampede_callers; });
        calls += server_calls(
            parse_command_calls(run(n.ioc, command_text(n.conn(), {"INFO", "commandstats"}))));
        factory_calls += r.factory_calls;
        failures += r.failures + (all ? 0 : stampede_callers - r.served);
        serve_ms.push_back(ms_between(t0, r.last));
        after_factory_ms.push_back(ms_between(r.factory_done, r.last));
        if (!all) break;
    }

    std::ostringstream json;
    json << "{\"bench\":\"stampede_" << connections << "_connection"
         << (connections > 1 ? "s" : "") << "\",\"callers\":" << stampede_callers
         << ",\"connections\":" << connections << ",\"rounds\":" << serve_ms.size()
         << ",\"factory_ms\":" << factory_time.count() << ",\"factory_calls\":" << factory_calls
         << ",\"factory_calls_per_round\":"
         << static_cast<double>(factory_calls) / static_cast<double>(serve_ms.size())
         << ",\"serve_all_ms_median\":" << median(serve_ms)
         << ",\"serve_all_ms_max\":" << *std::max_element(serve_ms.begin(), serve_ms.end())
         << ",\"after_factory_ms_median\":" << median(after_factory_ms)
         << ",\"redis_calls_per_caller\":"
         << static_cast<double>(calls) /
                static_cast<double>(serve_ms.size() * stampede_callers)
         << ",\"failures\":" << failures << "}";
    std::cout << json.str() << std::endl;
    return failures == 0 && factory_calls == static_cast<int>(serve_ms.size()) ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    auto stampede = [](const bench_env& env) {
        const int one = bench_stampede(env, 1);
        return one | bench_stampede(env, 4);
    };
    return run_phases("data", argc, argv,
                      {{"cache", bench_cache}, {"queue", bench_queue}, {"stampede", stampede}});
}
