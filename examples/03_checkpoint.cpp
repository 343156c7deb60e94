// Tutorial 3: a worker that survives a restart by resuming from its latest checkpoint.
//
// The worker imports 100 records and saves a checkpoint (its position and running totals)
// every 10 records. The first run "crashes" after record 45; the second run, on a new
// connection and session as after a restart (or on another node), loads the latest checkpoint
// and carries on from record 40 instead of starting over.
//
// The connection string comes from REDIS_URL (default redis://127.0.0.1:6379).
#include <redcoord/redcoord.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <cstdlib>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>

namespace asio = boost::asio;
namespace json = boost::json;
using asio::use_awaitable;

// The worker's own state: anything Boost.JSON converts.
struct import_progress {
    int next_record = 0;
    long long total = 0;
};

void tag_invoke(const json::value_from_tag&, json::value& jv, const import_progress& p) {
    jv = {{"next_record", p.next_record}, {"total", p.total}};
}

import_progress tag_invoke(const json::value_to_tag<import_progress>&, const json::value& jv) {
    const auto& o = jv.as_object();
    return import_progress{json::value_to<int>(o.at("next_record")),
                           json::value_to<long long>(o.at("total"))};
}

constexpr int records = 100;
constexpr int every = 10;
const std::string task = "example:import-orders";

struct crash : std::runtime_error {
    crash() : std::runtime_error("simulated crash") {}
};

// One run of the worker: resume from the latest checkpoint, if any, and import the rest.
asio::awaitable<void> worker(redcoord::session& s, std::optional<int> crash_after) {
    redcoord::checkpoint_store store(s);
    auto latest = co_await store.async_load_latest<import_progress>(task, use_awaitable);
    import_progress p;
    std::int64_t sequence = 0;
    if (latest) {
        p = latest->data;
        sequence = latest->sequence;
        std::cout << "resuming at record " << p.next_record << " (checkpoint "
                  << latest->sequence << ", " << latest->progress * 100 << "% done)\n";
    } else {
        std::cout << "no checkpoint: starting at record 0\n";
    }
    for (; p.next_record < records; ++p.next_record) {
        if (crash_after && p.next_record == *crash_after) throw crash();
        p.total += p.next_record;  // "import" one record
        if ((p.next_record + 1) % every == 0) {
            redcoord::checkpoint<import_progress> cp;
            cp.task_id = task;
            cp.sequence = ++sequence;
            cp.progress = double(p.next_record + 1) / records;
            cp.data = p;
            cp.data.next_record = p.next_record + 1;
            co_await store.async_save(cp, use_awaitable);
        }
    }
    std::cout << "done: total " << p.total << " (expected " << records * (records - 1) / 2
              << ")\n";
    // The task is over: its checkpoints are no longer needed.
    co_await store.async_remove(task, use_awaitable);
}

// Runs the worker on a connection and session of its own, as a process would.
asio::awaitable<void> run_once(const redcoord::config& cfg, std::optional<int> crash_after) {
    redcoord::connection conn(co_await asio::this_coro::executor);
    conn.async_run(cfg, asio::detached);
    {
        redcoord::session s(conn, {.node_id = crash_after ? "worker-1" : "worker-2"});
        try {
            co_await worker(s, crash_after);
        } catch (const crash& e) {
            std::cout << "worker-1: " << e.what() << "\n";
        }
        // Close the session, then stop the connection: what it holds is released first.
        co_await s.async_close(use_awaitable);
    }
    conn.cancel();
}

asio::awaitable<void> tutorial(redcoord::config cfg) {
    {
        // Start from a clean slate, in case an earlier run of this example was interrupted.
        redcoord::connection conn(co_await asio::this_coro::executor);
        conn.async_run(cfg, asio::detached);
        {
            redcoord::session s(conn);
            redcoord::checkpoint_store store(s);
            co_await store.async_remove(task, use_awaitable);
            co_await s.async_close(use_awaitable);
        }
        conn.cancel();
    }
    co_await run_once(cfg, 45);            // crashes after record 45
    co_await run_once(cfg, std::nullopt);  // restarts from checkpoint 4 (record 40)
}

int main() {
    const char* url = std::getenv("REDIS_URL");
    try {
        const redcoord::config cfg = redcoord::parse_config(url ? url : "redis://127.0.0.1:6379");
        asio::io_context ioc;
        asio::co_spawn(ioc, tutorial(cfg), [](std::exception_ptr ep) {
            if (ep) std::rethrow_exception(ep);
        });
        ioc.run();
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "03_checkpoint: " << e.what() << "\n";
        return 1;
    }
}
