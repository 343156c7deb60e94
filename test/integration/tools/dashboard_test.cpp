// The dashboard (tools/dashboard): its JSON API over real state made with the library (a held
// lock, joined nodes, a leadership, jobs), its actions read back through the library, its
// safety (read-only, token, Host and Origin checks, no password anywhere) and its live stream.
#include "dashboard.hpp"

#include <redcoord/redcoord.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "connection_helpers.hpp"
#include "lease_helpers.hpp"
#include "http_helpers.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using namespace std::chrono_literals;
using redcoord::job_state;
using redcoord::test::eventually_async;
using redcoord::test::must_acquire;
using redcoord::test::nothrow;
using redcoord::tools::dashboard;
using redcoord::tools::dashboard_options;

const std::string password = "pw-d4shb0ard-never-shown";

struct http_reply : redcoord::test::http_reply {
    json::value json() const { return json::parse(body); }
};

using headers_t = redcoord::test::http_headers;

asio::awaitable<http_reply> call(asio::ip::tcp::endpoint at, http::verb verb, std::string target,
                                 headers_t headers = {}, std::string host = "127.0.0.1",
                                 std::string body = "{}") {
    auto r = co_await redcoord::test::http_call(at, verb, std::move(target), std::move(headers),
                                                std::move(host), std::move(body));
    co_return http_reply{std::move(r)};
}

asio::awaitable<http_reply> get(asio::ip::tcp::endpoint at, std::string target) {
    co_return co_await call(at, http::verb::get, std::move(target));
}

asio::awaitable<http_reply> post(asio::ip::tcp::endpoint at, std::string target,
                                 headers_t headers = {}) {
    co_return co_await call(at, http::verb::post, std::move(target), std::move(headers));
}

// The element of `list` whose `key` is `value`, or null.
const json::object* find(const json::value& list, std::string_view key, std::string_view value) {
    for (const auto& v : list.as_array())
        if (const auto* s = v.as_object().if_contains(key);
            s && s->is_string() && s->as_string() == value)
            return &v.as_object();
    return nullptr;
}

// Reads the event stream until a whole snapshot has come; returns what was read.
asio::awaitable<std::string> first_snapshot(asio::ip::tcp::endpoint at) {
    boost::beast::tcp_stream stream(co_await asio::this_coro::executor);
    stream.expires_after(20s);
    co_await stream.async_connect(at, asio::use_awaitable);
    http::request<http::empty_body> req{http::verb::get, "/api/stream", 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::accept, "text/event-stream");
    co_await http::async_write(stream, req, asio::use_awaitable);
    std::string text;
    char buf[4096];
    for (;;) {
        const auto start = text.find("event: snapshot\n");
        if (start != std::string::npos && text.find("\n\n", start) != std::string::npos) break;
        const auto n = co_await stream.async_read_some(asio::buffer(buf), asio::use_awaitable);
        text.append(buf, n);
    }
    co_return text;
}

// A job function that runs until it is cancelled (the scheduler cancels its coroutine).
asio::awaitable<void> block(redcoord::job_context&) {
    asio::steady_timer t(co_await asio::this_coro::executor);
    t.expires_after(5min);
    co_await t.async_wait(nothrow);
}

asio::awaitable<void> quick(redcoord::job_context&) { co_return; }

dashboard_options board_options() {
    dashboard_options o;
    o.listen = "127.0.0.1:0";
    o.scheduler = "board";
    return o;
}

}  // namespace

TEST_CASE("dashboard: nodes, locks, leaders and jobs as JSON, actions, safety, live stream",
          "[dashboard]") {
    redcoord::test::redis_server srv(redcoord::test::redis_options{.password = password});
    redcoord::test::run_async([&](asio::io_context& ioc) -> asio::awaitable<void> {
        auto cfg = redcoord::test::config_for(srv);
        cfg.password = password;
        redcoord::connection conn(ioc.get_executor());
        conn.async_run(cfg, asio::detached);
        redcoord::session s(conn, redcoord::test::as_node("node-a"));

        // Real state: two nodes, a leadership, a held lock, jobs in several states.
        redcoord::membership members(s);
        const std::string node_a = "node-a", node_b = "node-b";
        auto [jaec] = co_await members.async_join(node_a, nothrow);
        auto [jbec] = co_await members.async_join(node_b, nothrow);
        REQUIRE_FALSE(jaec);
        REQUIRE_FALSE(jbec);
        redcoord::leader_election election(s);
        auto [cec, term] = co_await election.async_campaign("scheduler", nothrow);
        REQUIRE_FALSE(cec);
        redcoord::lock_provider locks(s);
        const redcoord::acquire_options ao;
        auto held = co_await must_acquire(locks, "orders", ao);

        redcoord::scheduler_options so;
        so.name = "board";
        so.poll_interval = 50ms;
        redcoord::scheduler sched(s, so);
        sched.add_function("block", block);
        sched.add_function("quick", quick);
        sched.async_run(asio::detached);
        redcoord::job_request quick_req{
            .function = "quick", .payload = "{\"n\":1}", .id = "job-quick"};
        redcoord::job_request block_req{.function = "block", .id = "job-block"};
        redcoord::job_request later_req{
            .function = "quick", .delay = std::chrono::milliseconds(1h), .id = "job-later"};
        for (const auto* req : {&quick_req, &block_req, &later_req}) {
            auto [eec, id] = co_await sched.async_enqueue(*req, nothrow);
            REQUIRE_FALSE(eec);
            CHECK(id == req->id);
        }
        auto [wec, quick_done] = co_await sched.async_wait("job-quick", 20s, nothrow);
        REQUIRE_FALSE(wec);
        REQUIRE(quick_done->state == job_state::succeeded);
        const std::string block_id = "job-block";
        auto running = [&]() -> asio::awaitable<bool> {
            auto [ec, r] = co_await sched.async_get(block_id, nothrow);
            co_return !ec && r && r->state == job_state::running;
        };
        REQUIRE(co_await eventually_async(running, 20s, 20ms));

        // A queue with three items, one of them taken by a consumer.
        redcoord::reliable_queue queue(s);
        const std::string queue_name = "emails";
        for (int i = 0; i < 3; ++i) {
            auto [qec, qid] = co_await queue.async_enqueue(queue_name, "item", nothrow);
            REQUIRE_FALSE(qec);
        }
        const std::string consumer = "worker-1";
        auto [dec, taken] = co_await queue.async_dequeue(queue_name, consumer, 0ms, nothrow);
        REQUIRE_FALSE(dec);
        REQUIRE(taken);

        auto opts = board_options();
        opts.url_shown = redcoord::test::url_for(srv, ":" + password);
        dashboard board(s, opts);
        const auto at = board.local_endpoint();
        CHECK(at.port() != 0);
        board.async_run(asio::detached);

        // Locks: the held mutex with its owner, node and fencing token; the leadership.
        const auto locks_reply = co_await get(at, "/api/locks");
        REQUIRE(locks_reply.status == 200);
        const auto locks_json = locks_reply.json();
        const auto* orders = find(locks_json.at("holders"), "name", "orders");
        REQUIRE(orders != nullptr);
        CHECK(orders->at("kind") == "mutex");
        CHECK(orders->at("node") == "node-a");
        CHECK(orders->at("owner").as_string() == held.owner());
        CHECK(orders->at("fencing_token").to_number<std::int64_t>() == held.fencing_token());
        CHECK(orders->at("ttl_ms").to_number<std::int64_t>() > 0);

        const auto nodes = (co_await get(at, "/api/nodes")).json();
        for (const auto* id : {"node-a", "node-b"}) {
            const auto* n = find(nodes, "id", id);
            REQUIRE(n != nullptr);
            CHECK(n->at("alive").as_bool());
        }

        const auto leaders = (co_await get(at, "/api/leaders")).json();
        const auto* leader = find(leaders.at("leaders"), "name", "scheduler");
        REQUIRE(leader != nullptr);
        CHECK(leader->at("node") == "node-a");
        CHECK(leader->at("term").to_number<std::int64_t>() == term.fencing_token());
        CHECK(leaders.at("history").at("scheduler").as_array().size() == 1);

        // Jobs: by state and function, counts, a detail with history; a missing one.
        const auto succeeded =
            (co_await get(at, "/api/jobs?state=succeeded&function=quick")).json();
        CHECK(find(succeeded.at("jobs"), "id", "job-quick") != nullptr);
        CHECK(succeeded.at("total").to_number<int>() == 1);
        const auto running_list = (co_await get(at, "/api/jobs?state=running")).json();
        CHECK(find(running_list.at("jobs"), "id", "job-block") != nullptr);
        const auto counts = (co_await get(at, "/api/job-counts")).json();
        CHECK(counts.at("scheduled").to_number<int>() == 1);
        const auto detail = co_await get(at, "/api/jobs/job-quick");
        REQUIRE(detail.status == 200);
        const auto detail_json = detail.json();
        CHECK(detail_json.at("state") == "succeeded");
        CHECK(detail_json.at("payload") == "{\"n\":1}");
        CHECK(detail_json.at("function") == "quick");
        CHECK(!detail_json.at("history").as_array().empty());
        CHECK((co_await get(at, "/api/jobs/no-such-job")).status == 404);
        const auto bad_state = co_await get(at, "/api/jobs?state=sleeping");
        CHECK(bad_state.status == 400);
        CHECK(bad_state.body.find("state: 'sleeping'") != std::string::npos);
        const auto page = co_await get(at, "/");
        CHECK(page.status == 200);
        CHECK(page.body.find("redcoord") != std::string::npos);

        const auto queues = (co_await get(at, "/api/queues")).json();
        const auto* emails = find(queues.at("queues"), "name", "emails");
        REQUIRE(emails != nullptr);
        CHECK(emails->at("length").to_number<int>() == 2);
        CHECK(emails->at("in_flight").to_number<int>() == 1);
        CHECK(emails->at("consumers").to_number<int>() == 1);
        CHECK(queues.at("queues").as_array().size() == 1);  // companions are not queues

        // The password appears nowhere; the URL is shown without it.
        const auto info = co_await get(at, "/api/info");
        const auto snapshot = co_await get(at, "/api/snapshot");
        for (const auto* r : {&info, &snapshot, &locks_reply, &page}) {
            INFO(r->body);
            CHECK(r->body.find(password) == std::string::npos);
        }
        const std::string shown(info.json().at("url").as_string());
        CHECK(shown.starts_with("redis"));
        CHECK(shown.find('@') == std::string::npos);
        CHECK(shown.find(std::to_string(srv.port())) != std::string::npos);

        // The live stream delivers a snapshot with the nodes and the lock.
        const std::string stream = co_await first_snapshot(at);
        CHECK(stream.find("event: info") != std::string::npos);
        CHECK(stream.find("\"node-b\"") != std::string::npos);
        CHECK(stream.find("\"orders\"") != std::string::npos);
        CHECK(stream.find(password) == std::string::npos);

        // Actions: GET is refused, another site's page is refused, then each one's effect is
        // read back through the library.
        CHECK((co_await get(at, "/api/locks/orders/release")).status == 405);
        const headers_t evil{{"Origin", "http://evil.example"}};
        CHECK((co_await post(at, "/api/locks/orders/release", evil)).status == 403);
        const headers_t none;
        const auto other_host =
            co_await call(at, http::verb::get, "/api/info", none, "evil.example");
        CHECK(other_host.status == 403);

        const auto released = co_await post(at, "/api/locks/orders/release");
        CHECK(released.status == 200);
        CHECK(released.json().at("released").as_bool());
        redcoord::lock_monitor monitor(s);
        auto [aec, active] = co_await monitor.async_active_locks(nothrow);
        REQUIRE_FALSE(aec);
        for (const auto& l : active) CHECK(l.name != "orders");
        CHECK((co_await post(at, "/api/locks/orders/release")).status == 404);

        const auto cancelled = co_await post(at, "/api/jobs/job-block/cancel");
        CHECK(cancelled.status == 200);
        CHECK(cancelled.json().at("previous_state") == "running");
        auto [cwec, block_end] = co_await sched.async_wait("job-block", 20s, nothrow);
        REQUIRE_FALSE(cwec);
        CHECK(block_end->state == job_state::cancelled);

        const auto run_now = co_await post(at, "/api/jobs/job-later/run-now");
        CHECK(run_now.status == 200);
        CHECK(run_now.json().at("queued").as_bool());
        auto [lwec, later_end] = co_await sched.async_wait("job-later", 20s, nothrow);
        REQUIRE_FALSE(lwec);
        CHECK(later_end->state == job_state::succeeded);
        // Once more: it has ended and succeeded, so it cannot run now.
        CHECK((co_await post(at, "/api/jobs/job-later/run-now")).status == 409);
        CHECK((co_await post(at, "/api/jobs/job-later/cancel")).status == 409);

        // Read-only: every action is refused, and nothing changes.
        auto ro = board_options();
        ro.read_only = true;
        dashboard read_only(s, ro);
        read_only.async_run(asio::detached);
        const auto refused =
            co_await post(read_only.local_endpoint(), "/api/jobs/job-block/run-now");
        CHECK(refused.status == 403);
        CHECK(refused.body.find("read-only") != std::string::npos);
        auto [rgec, still] = co_await sched.async_get("job-block", nothrow);
        REQUIRE(still);
        CHECK(still->state == job_state::cancelled);

        // A token: actions need it, reads do not.
        auto tk = board_options();
        tk.token = "t0ken";
        dashboard with_token(s, tk);
        with_token.async_run(asio::detached);
        const auto tat = with_token.local_endpoint();
        CHECK((co_await get(tat, "/api/info")).status == 200);
        const auto no_token = co_await post(tat, "/api/jobs/job-block/cancel");
        CHECK(no_token.status == 401);
        CHECK(no_token.body.find("token") != std::string::npos);
        const headers_t wrong{{"Authorization", "Bearer nope"}};
        CHECK((co_await post(tat, "/api/jobs/job-block/cancel", wrong)).status == 401);
        // With the token the action runs: the job has ended, so it is a conflict, not a refusal.
        const headers_t right{{"Authorization", "Bearer t0ken"}};
        CHECK((co_await post(tat, "/api/jobs/job-block/cancel", right)).status == 409);
        CHECK((co_await post(tat, "/api/jobs/no-such-job/cancel", right)).status == 404);
        // Or as a field of a form or of a JSON body.
        const headers_t form{{"Content-Type", "application/x-www-form-urlencoded"}};
        const auto by_form = co_await call(tat, http::verb::post, "/api/jobs/no-such-job/cancel",
                                           form, "127.0.0.1", "token=t0ken");
        CHECK(by_form.status == 404);
        const auto by_json = co_await call(tat, http::verb::post, "/api/jobs/no-such-job/cancel",
                                           none, "127.0.0.1", "{\"token\":\"t0ken\"}");
        CHECK(by_json.status == 404);
        const auto wrong_form = co_await call(tat, http::verb::post, "/api/jobs/no-such-job/cancel",
                                              form, "127.0.0.1", "token=t0ke");
        CHECK(wrong_form.status == 401);

        board.stop();
        read_only.stop();
        with_token.stop();
        sched.stop();
        co_await s.async_close(nothrow);
        conn.cancel();
    });
}

TEST_CASE("dashboard: a bad listen address or scheduler name is refused, naming it",
          "[dashboard]") {
    redcoord::test::with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        redcoord::session s(conn);
        auto remote = board_options();
        remote.listen = "0.0.0.0:0";
        CHECK_THROWS_WITH(dashboard(s, remote), Catch::Contains("not a loopback address"));
        auto port = board_options();
        port.listen = "127.0.0.1:http";
        CHECK_THROWS_WITH(dashboard(s, port), Catch::Contains("port 'http'"));
        auto name = board_options();
        name.scheduler = "a{b}";
        CHECK_THROWS_WITH(dashboard(s, name), Catch::Contains("name"));
        co_return;
    });
}
