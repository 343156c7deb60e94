#include <redcoord/error.hpp>
#include <redcoord/queue.hpp>
#include <redcoord/script.hpp>

#include <boost/json/parse.hpp>

#include <initializer_list>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <tuple>
#include <utility>
#include <vector>

#include "core/access.hpp"
#include "core/data_ops.hpp"
#include "core/glob.hpp"
#include "core/random.hpp"

namespace redcoord {

namespace asio = boost::asio;
using boost::system::error_code;
using std::chrono::milliseconds;

namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

struct names {
    std::string queue, consumers, workers, redelivered, channel, processing_prefix, worker_prefix;
    names(const keyspace& k, std::string_view name)
        : queue(k.queue(name)),
          consumers(keyspace::companion(queue, "consumers")),
          workers(keyspace::companion(queue, "workers")),
          redelivered(keyspace::companion(queue, "redelivered")),
          channel(keyspace::companion(queue, "pushed")),
          processing_prefix(keyspace::companion(queue, "processing:")),
          worker_prefix(keyspace::companion(queue, "worker:")) {}
};

std::string new_id() {
    std::string out;
    out.reserve(32);
    detail::append_random_hex(out, 2);
    return out;
}

queue_item split(std::string raw, std::string worker) {
    queue_item it;
    const auto colon = raw.find(':');
    if (colon == std::string::npos) {
        it.payload = raw;
    } else {
        it.id = raw.substr(0, colon);
        it.payload = raw.substr(colon + 1);
    }
    it.worker = std::move(worker);
    it.raw = std::move(raw);
    return it;
}

// A message's step (trace_options::queue_events): who is the consumer or worker, count how
// many messages (redeliveries).
void trace_queue(const detail::session_impl& s, trace_kind kind, std::string_view queue,
                 std::string_view who, std::int64_t count = 0) {
    if (!s.trace.on(detail::trace_queues)) return;
    trace_event e;
    e.kind = kind;
    e.primitive = "queue";
    e.resource = queue;
    e.node = s.node_id;
    e.token = count;
    e.detail = who;
    s.trace.emit(detail::trace_queues, e);
}

using id_result = std::pair<error_code, std::string>;
using item_result = std::pair<error_code, std::optional<queue_item>>;

asio::awaitable<id_result> enqueue(std::shared_ptr<detail::session_impl> s, std::string name,
                                   std::optional<std::string> worker, std::string payload,
                                   detail::diag_target target) {
    diagnostics& d = target.get();
    const names n(s->keys, name);
    std::string id = new_id();
    static const script& push = script::embedded("queue_push");
    const std::vector<std::string> keys{worker ? n.worker_prefix + *worker : n.queue, n.workers};
    const std::vector<std::string> args{id + ":" + payload, n.channel, worker.value_or("")};
    std::int64_t len = 0;
    auto [ec, sz] = co_await detail::eval(s->conn, push, keys, args, len, d);
    if (ec) co_return id_result(ec, std::string());
    trace_queue(*s, trace_kind::queue_sent, name, worker ? std::string_view(*worker) : "");
    co_return id_result(error_code(), std::move(id));
}

asio::awaitable<item_result> dequeue(std::shared_ptr<detail::session_impl> s, std::string name,
                                     std::string consumer, milliseconds timeout,
                                     detail::diag_target target) {
    diagnostics& d = target.get();
    const names n(s->keys, name);
    const std::string processing = n.processing_prefix + consumer;
    {
        // Known as a consumer before it holds anything, so redelivery finds its list.
        request req;
        req.push("SADD", n.consumers, consumer);
        req.push("LMOVE", n.queue, processing, "RIGHT", "LEFT");
        response<std::int64_t, std::optional<std::string>> resp;
        auto [ec, sz] = co_await s->conn.async_exec(req, resp, d, nothrow);
        if (ec) co_return item_result(ec, std::nullopt);
        if (auto& raw = std::get<1>(resp)) {
            trace_queue(*s, trace_kind::queue_received, name, consumer);
            co_return item_result(error_code(), split(std::move(*raw), {}));
        }
    }
    if (timeout.count() <= 0) co_return item_result(error_code(), std::nullopt);
    // Blocking: the connection runs it on its side connection for blocking commands.
    request req;
    const double secs = static_cast<double>(timeout.count()) / 1000.0;
    req.push("BLMOVE", n.queue, processing, "RIGHT", "LEFT", std::to_string(secs));
    std::optional<std::string> raw;
    auto [ec, sz] = co_await s->conn.async_exec(req, raw, d, nothrow);
    if (ec || !raw) co_return item_result(ec, std::nullopt);
    trace_queue(*s, trace_kind::queue_received, name, consumer);
    co_return item_result(error_code(), split(std::move(*raw), {}));
}

asio::awaitable<std::pair<error_code, bool>> ack(std::shared_ptr<detail::session_impl> s,
                                                 std::string name, std::string consumer,
                                                 std::string raw, detail::diag_target target) {
    const names n(s->keys, name);
    request req;
    req.push("LREM", n.processing_prefix + consumer, 1, raw);
    std::int64_t removed = 0;
    auto [ec, sz] = co_await s->conn.async_exec(req, removed, target.get(), nothrow);
    if (!ec && removed > 0) trace_queue(*s, trace_kind::queue_acked, name, consumer);
    co_return std::pair<error_code, bool>(ec, !ec && removed > 0);
}

asio::awaitable<std::pair<error_code, std::int64_t>> redeliver(
    std::shared_ptr<detail::session_impl> s, std::string name, detail::diag_target target) {
    const names n(s->keys, name);
    // The consumers without a heartbeat, found here: heartbeats live in the node registry's
    // slot, the queue in its own (one Redis Cluster script cannot read both).
    std::vector<std::string> consumers;
    {
        request req;
        req.push("SMEMBERS", n.consumers);
        auto [ec, sz] = co_await s->conn.async_exec(req, consumers, target.get(), nothrow);
        if (ec || consumers.empty()) co_return std::pair<error_code, std::int64_t>(ec, 0);
    }
    std::vector<std::string> beats;
    beats.reserve(consumers.size());
    for (const auto& c : consumers) beats.push_back(s->keys.heartbeat(c));
    std::vector<std::optional<std::string>> alive;
    {
        request req;
        req.push_range("MGET", beats);
        auto [ec, sz] = co_await s->conn.async_exec(req, alive, target.get(), nothrow);
        if (ec) co_return std::pair<error_code, std::int64_t>(ec, 0);
    }
    std::vector<std::string> keys{n.queue, n.consumers, n.redelivered};
    std::vector<std::string> args{n.channel};
    for (std::size_t i = 0; i < consumers.size() && i < alive.size(); ++i) {
        if (alive[i]) continue;
        keys.push_back(n.processing_prefix + consumers[i]);
        args.push_back(consumers[i]);
    }
    if (args.size() == 1) co_return std::pair<error_code, std::int64_t>(error_code(), 0);
    static const script& give_back = script::embedded("queue_redeliver");
    std::int64_t moved = 0;
    auto [ec, sz] = co_await detail::eval(s->conn, give_back, keys, args, moved, target.get());
    if (!ec && moved > 0) trace_queue(*s, trace_kind::queue_redelivered, name, "", moved);
    co_return std::pair<error_code, std::int64_t>(ec, ec ? 0 : moved);
}

asio::awaitable<item_result> take(std::shared_ptr<detail::session_impl> s, std::string name,
                                  std::string worker, bool steal, detail::diag_target target) {
    diagnostics& d = target.get();
    const names n(s->keys, name);
    if (!steal) {
        request req;
        req.push("RPOP", n.worker_prefix + worker);
        std::optional<std::string> raw;
        auto [ec, sz] = co_await s->conn.async_exec(req, raw, d, nothrow);
        if (ec || !raw) co_return item_result(ec, std::nullopt);
        trace_queue(*s, trace_kind::queue_received, name, worker);
        co_return item_result(error_code(), split(std::move(*raw), worker));
    }
    static const script& thief = script::embedded("queue_steal");
    const std::vector<std::string> keys{n.workers};
    const std::vector<std::string> args{n.worker_prefix, worker};
    std::vector<std::optional<std::string>> reply;
    auto [ec, sz] = co_await detail::eval(s->conn, thief, keys, args, reply, d);
    if (ec || reply.size() != 2 || !reply[0] || !reply[1])
        co_return item_result(ec, std::nullopt);
    trace_queue(*s, trace_kind::queue_received, name, worker);
    co_return item_result(error_code(), split(std::move(*reply[1]), std::move(*reply[0])));
}

// The queue a key found by SCAN belongs to: `<prefix>queue:{<name>}` and its companions that
// name it (consumers, workers, redelivered); empty for any other key (a processing list or a
// worker's queue: their queue has the set that names them).
std::string_view queue_name_of(const keyspace& k, std::string_view key) {
    const std::string_view kind = "queue:{";
    if (!key.starts_with(k.prefix())) return {};
    key.remove_prefix(k.prefix().size());
    if (!key.starts_with(kind)) return {};
    key.remove_prefix(kind.size());
    for (std::string_view end : {"}", "}:consumers", "}:workers", "}:redelivered"})
        if (key.size() > end.size() && key.ends_with(end))
            return key.substr(0, key.size() - end.size());
    return {};
}

using names_result = std::pair<error_code, std::vector<std::string>>;

asio::awaitable<names_result> list_queues(std::shared_ptr<detail::session_impl> s,
                                          detail::diag_target target) {
    const std::string pattern = detail::glob_escape(s->keys.prefix()) + "queue:{*";
    std::set<std::string, std::less<>> found;
    std::string cursor = "0";
    do {
        request req;
        req.push("SCAN", cursor, "MATCH", pattern, "COUNT", 1000);
        std::pair<std::string, std::vector<std::string>> page;
        auto [ec, n] = co_await s->conn.async_exec(req, page, target.get(), nothrow);
        if (ec) co_return names_result(ec, {});
        cursor = std::move(page.first);
        for (const auto& k : page.second)
            if (auto name = queue_name_of(s->keys, k); !name.empty()) found.emplace(name);
    } while (cursor != "0");
    co_return names_result(error_code(), std::vector<std::string>(found.begin(), found.end()));
}

using stats_result = std::pair<error_code, queue_stats>;

asio::awaitable<stats_result> read_stats(std::shared_ptr<detail::session_impl> s, std::string name,
                                         detail::diag_target target) {
    const names n(s->keys, name);
    static const script& counts = script::embedded("queue_stats");
    const std::vector<std::string> keys{n.queue, n.consumers, n.workers, n.redelivered};
    const std::vector<std::string> args{n.processing_prefix, n.worker_prefix};
    // One reply, an array of four (a response<...> of one element: a bare tuple would be four
    // replies).
    response<std::tuple<std::int64_t, std::int64_t, std::map<std::string, std::int64_t>,
                        std::map<std::string, std::int64_t>>>
        whole;
    auto [ec, sz] = co_await detail::eval(s->conn, counts, keys, args, whole, target.get());
    queue_stats out;
    if (ec) co_return stats_result(ec, std::move(out));
    auto& reply = std::get<0>(whole);
    out.name = std::move(name);
    out.depth = std::get<0>(reply);
    out.redeliveries = std::get<1>(reply);
    out.consumers = std::move(std::get<2>(reply));
    out.workers = std::move(std::get<3>(reply));
    for (const auto& [c, len] : out.consumers) out.in_flight += len;
    for (const auto& [w, len] : out.workers) out.worker_depth += len;
    co_return stats_result(error_code(), std::move(out));
}

// Bad input: the first of fields (what, value) that is not a valid name, named in d; then a
// closed session.
error_code check_fields(const detail::session_impl& s, diagnostics& d,
                  std::initializer_list<std::pair<const char*, const std::string*>> fields) {
    for (auto& [field, value] : fields)
        if (auto ec = detail::check_name(field, *value, d)) return ec;
    if (s.closed) return error::session_closed;
    return {};
}

}  // namespace

namespace detail {

error_code parse_queue_payload(const queue_item& item, boost::json::value& out,
                               diagnostics& diag) {
    error_code ec;
    out = boost::json::parse(item.payload, ec);
    if (!ec) return {};
    diag.set_client_message("queue item '" + item.id + "': the payload is not JSON (" +
                            ec.message() + ")");
    return error::decode_failed;
}

error_code queue_payload_mismatch(const queue_item& item, diagnostics& diag) {
    diag.set_client_message("queue item '" + item.id +
                            "': the payload does not convert to the requested type");
    return error::decode_failed;
}

}  // namespace detail

reliable_queue::reliable_queue(session& s, queue_options opts) : session_(&s), opts_(opts) {
    detail::check_size_option("max_value_bytes", opts_.max_value_bytes);
}

// Each operation checks its input into the diagnostics it will fill (the caller's, or its own:
// diag_target), then runs a coroutine that owns them.

void reliable_queue::enqueue_impl(std::string name, std::optional<std::string> worker,
                                  std::string payload, diagnostics* diag, id_handler handler) {
    auto s = detail::access::impl(*session_);
    detail::diag_target target(diag);
    diagnostics& d = target.get();
    d.clear();
    const std::string none = "-";
    error_code ec =
        check_fields(*s, d, {{"queue name", &name}, {"worker", worker ? &*worker : &none}});
    if (!ec)
        ec = detail::check_size("queue '" + name + "'", "payload", payload.size(),
                                opts_.max_value_bytes, "max_value_bytes", d);
    if (ec) return detail::complete_later(*s, std::move(handler), ec, std::string());
    auto& sr = *s;
    detail::launch(sr, enqueue(std::move(s), std::move(name), std::move(worker),
                               std::move(payload), std::move(target)),
                   std::move(handler));
}

void reliable_queue::dequeue_impl(std::string name, std::string consumer, milliseconds timeout,
                                  diagnostics* diag, item_handler handler) {
    auto s = detail::access::impl(*session_);
    detail::diag_target target(diag);
    diagnostics& d = target.get();
    d.clear();
    if (consumer.empty()) consumer = s->node_id;
    error_code ec = check_fields(*s, d, {{"queue name", &name}, {"consumer", &consumer}});
    if (!ec) ec = detail::check_duration_arg(d, "queue '" + name + "'", "timeout", timeout, true);
    if (ec)
        return detail::complete_later(*s, std::move(handler), ec, std::optional<queue_item>());
    auto& sr = *s;
    detail::launch(sr, dequeue(std::move(s), std::move(name), std::move(consumer), timeout,
                               std::move(target)),
                   std::move(handler));
}

void reliable_queue::ack_impl(std::string name, std::string consumer, std::string raw,
                              diagnostics* diag, bool_handler handler) {
    auto s = detail::access::impl(*session_);
    detail::diag_target target(diag);
    target.get().clear();
    if (consumer.empty()) consumer = s->node_id;
    if (auto ec = check_fields(*s, target.get(), {{"queue name", &name}, {"consumer", &consumer}}))
        return detail::complete_later(*s, std::move(handler), ec, false);
    auto& sr = *s;
    detail::launch(sr, ack(std::move(s), std::move(name), std::move(consumer), std::move(raw),
                           std::move(target)),
                   std::move(handler));
}

void reliable_queue::redeliver_impl(std::string name, diagnostics* diag, count_handler handler) {
    auto s = detail::access::impl(*session_);
    detail::diag_target target(diag);
    target.get().clear();
    if (auto ec = check_fields(*s, target.get(), {{"queue name", &name}}))
        return detail::complete_later(*s, std::move(handler), ec, std::int64_t(0));
    auto& sr = *s;
    detail::launch(sr, redeliver(std::move(s), std::move(name), std::move(target)),
                   std::move(handler));
}

void reliable_queue::take_impl(std::string name, std::string worker, bool steal,
                               diagnostics* diag, item_handler handler) {
    auto s = detail::access::impl(*session_);
    detail::diag_target target(diag);
    target.get().clear();
    if (auto ec = check_fields(*s, target.get(), {{"queue name", &name}, {"worker", &worker}}))
        return detail::complete_later(*s, std::move(handler), ec, std::optional<queue_item>());
    auto& sr = *s;
    detail::launch(sr, take(std::move(s), std::move(name), std::move(worker), steal,
                            std::move(target)),
                   std::move(handler));
}

void reliable_queue::list_impl(
    diagnostics* diag,
    asio::any_completion_handler<void(error_code, std::vector<std::string>)> handler) {
    auto s = detail::access::impl(*session_);
    detail::diag_target target(diag);
    target.get().clear();
    if (s->closed)
        return detail::complete_later(*s, std::move(handler), error_code(error::session_closed),
                                      std::vector<std::string>());
    auto& sr = *s;
    detail::launch(sr, list_queues(std::move(s), std::move(target)), std::move(handler));
}

void reliable_queue::stats_impl(
    std::string name, diagnostics* diag,
    asio::any_completion_handler<void(error_code, queue_stats)> handler) {
    auto s = detail::access::impl(*session_);
    detail::diag_target target(diag);
    target.get().clear();
    if (auto ec = check_fields(*s, target.get(), {{"queue name", &name}}))
        return detail::complete_later(*s, std::move(handler), ec, queue_stats());
    auto& sr = *s;
    detail::launch(sr, read_stats(std::move(s), std::move(name), std::move(target)),
                   std::move(handler));
}

}  // namespace redcoord
