#include "core/access.hpp"
#include "core/data_ops.hpp"
#include "wait/fill_once.hpp"

#include <redcoord/checkpoint.hpp>
#include <redcoord/error.hpp>
#include <redcoord/script.hpp>

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <charconv>
#include <cmath>

namespace redcoord {

namespace asio = boost::asio;
using boost::system::error_code;
using detail::checkpoint_record;
using detail::data_nothrow;
using detail::session_impl;
using std::chrono::milliseconds;

namespace {

// The stored JSON of r, whose data is already serialized as data_text (checked against the
// size limit; not serialized twice).
std::string to_text(const checkpoint_record& r, std::string_view data_text) {
    boost::json::object o;
    o["task_id"] = r.task_id;
    o["sequence"] = r.sequence;
    o["progress"] = r.progress;
    std::string text = boost::json::serialize(o);  // {...}: ends with '}'
    text.pop_back();
    const auto saved_at =
        std::chrono::duration_cast<milliseconds>(r.saved_at.time_since_epoch()).count();
    text.reserve(text.size() + data_text.size() + 40);
    text += ",\"data\":";
    text += data_text;
    text += ",\"saved_at\":";
    text += std::to_string(saved_at);
    text += '}';
    return text;
}

// Reads what to_text wrote; false when a field is missing or of another type.
bool from_json(const boost::json::value& v, checkpoint_record& r) {
    const auto* o = v.if_object();
    if (!o) return false;
    const auto* task = o->if_contains("task_id");
    const auto* seq = o->if_contains("sequence");
    const auto* progress = o->if_contains("progress");
    const auto* data = o->if_contains("data");
    const auto* saved = o->if_contains("saved_at");
    if (!task || !task->is_string() || !seq || !seq->is_int64() || !progress ||
        !progress->is_number() || !data || !saved || !saved->is_int64())
        return false;
    r.task_id = std::string(task->get_string());
    r.sequence = seq->get_int64();
    r.progress = progress->to_number<double>();
    r.data = *data;
    r.saved_at = std::chrono::system_clock::time_point(milliseconds(saved->get_int64()));
    return true;
}

asio::awaitable<std::tuple<error_code>> save_coro(std::shared_ptr<session_impl> s,
                                                  checkpoint_options o, checkpoint_record rec,
                                                  std::string text, diagnostics& d) {
    static const script& index = script::embedded("checkpoint_index");
    // The checkpoint first, then the index: the index never names a checkpoint not written.
    request req;
    req.push("SET", s->keys.checkpoint(rec.task_id, rec.sequence), text, "PX", o.ttl.count());
    auto [ec, n] = co_await s->conn.async_exec(req, ignore, d, data_nothrow);
    if (ec) co_return std::tuple{ec};

    const std::vector<std::string> keys{s->keys.checkpoint_index(rec.task_id)};
    const std::vector<std::string> args{std::to_string(rec.sequence),
                                        std::to_string(o.ttl.count()),
                                        std::to_string(o.retention)};
    std::vector<std::string> dropped;
    std::tie(ec, n) = co_await detail::eval(s->conn, index, keys, args, dropped, d);
    if (ec || dropped.empty()) co_return std::tuple{ec};

    // One UNLINK per key: the checkpoints of a task may live in different cluster slots.
    request prune;
    for (const auto& seq : dropped) {
        std::int64_t v = 0;
        std::from_chars(seq.data(), seq.data() + seq.size(), v);
        prune.push("UNLINK", s->keys.checkpoint(rec.task_id, v));
    }
    std::tie(ec, n) = co_await s->conn.async_exec(prune, ignore, d, data_nothrow);
    co_return std::tuple{ec};
}

asio::awaitable<std::tuple<error_code, std::optional<checkpoint_record>>> load_coro(
    std::shared_ptr<session_impl> s, std::string task, diagnostics& d) {
    std::optional<checkpoint_record> out;
    request req;
    req.push("ZREVRANGE", s->keys.checkpoint_index(task), 0, -1);
    std::vector<std::string> seqs;
    auto [ec, n] = co_await s->conn.async_exec(req, seqs, d, data_nothrow);
    if (ec) co_return std::tuple{ec, std::move(out)};
    // The latest first; one that expired (or was deleted by hand) gives way to the one before.
    for (const auto& seq : seqs) {
        std::int64_t v = 0;
        std::from_chars(seq.data(), seq.data() + seq.size(), v);
        const std::string key = s->keys.checkpoint(task, v);
        request get;
        get.push("GET", key);
        std::optional<std::string> text;
        std::tie(ec, n) = co_await s->conn.async_exec(get, text, d, data_nothrow);
        if (ec) co_return std::tuple{ec, std::move(out)};
        if (!text) continue;
        boost::json::value jv;
        const std::string what = "checkpoint " + key;
        ec = detail::parse_stored(*text, what, jv, d);
        if (!ec && !from_json(jv, out.emplace())) {
            out.reset();
            ec = error::decode_failed;
            d.set_client_message(what + ": not a checkpoint (task_id, sequence, progress, "
                                        "data, saved_at)");
        }
        co_return std::tuple{ec, std::move(out)};
    }
    co_return std::tuple{ec, std::move(out)};
}

asio::awaitable<std::tuple<error_code, std::size_t>> remove_coro(
    std::shared_ptr<session_impl> s, std::string task) {
    diagnostics d;
    const std::string index = s->keys.checkpoint_index(task);
    request req;
    req.push("ZRANGE", index, 0, -1);
    std::vector<std::string> seqs;
    auto [ec, n] = co_await s->conn.async_exec(req, seqs, d, data_nothrow);
    if (ec) co_return std::tuple{ec, std::size_t(0)};
    std::size_t deleted = 0;
    for (const auto& seq : seqs) {
        std::int64_t v = 0;
        std::from_chars(seq.data(), seq.data() + seq.size(), v);
        request del;
        del.push("UNLINK", s->keys.checkpoint(task, v));
        std::int64_t c = 0;
        std::tie(ec, n) = co_await s->conn.async_exec(del, c, d, data_nothrow);
        if (ec) co_return std::tuple{ec, deleted};
        deleted += static_cast<std::size_t>(c);
    }
    request del_index;
    del_index.push("UNLINK", index);
    std::tie(ec, n) = co_await s->conn.async_exec(del_index, ignore, d, data_nothrow);
    co_return std::tuple{ec, deleted};
}

}  // namespace

checkpoint_store::checkpoint_store(session& s, checkpoint_options opts)
    : session_(&s), opts_(opts) {
    detail::check_duration_option("ttl", opts_.ttl);
    if (opts_.retention == 0) detail::throw_bad_config("retention: 0 is not positive");
    detail::check_size_option("max_value_bytes", opts_.max_value_bytes);
}

void checkpoint_store::save_impl(checkpoint_record rec, diagnostics* diag, void_handler handler) {
    auto s = detail::access::impl(*session_);
    detail::diag_target target(diag);
    diagnostics& d = target.get();
    d.clear();
    error_code ec = detail::check_name("checkpoint task_id", rec.task_id, d);
    const std::string what = "checkpoint of '" + rec.task_id + "'";
    if (!ec && rec.sequence < 0)
        ec = detail::invalid(d, what + ": sequence " + std::to_string(rec.sequence) +
                                    " is negative");
    if (!ec && !(rec.progress >= 0.0 && rec.progress <= 1.0))
        ec = detail::invalid(d, what + ": progress " + std::to_string(rec.progress) +
                                    " is not in [0, 1]");
    std::string data_text;
    if (!ec)
        ec = detail::serialize_limited(rec.data, opts_.max_value_bytes, "max_value_bytes",
                                       what, data_text, d);
    if (!ec && s->closed) ec = error::session_closed;
    if (ec) return detail::complete_later(*s, std::move(handler), ec);
    rec.saved_at = std::chrono::system_clock::now();
    std::string text = to_text(rec, data_text);
    rec.data = nullptr;  // the text holds it
    auto run = [](std::shared_ptr<session_impl> s, checkpoint_options o, checkpoint_record rec,
                  std::string text,
                  detail::diag_target target) -> asio::awaitable<std::tuple<error_code>> {
        co_return co_await save_coro(std::move(s), o, std::move(rec), std::move(text),
                                     target.get());
    };
    auto& sr = *s;
    detail::launch(sr, run(std::move(s), opts_, std::move(rec), std::move(text), std::move(target)),
                   std::move(handler));
}

void checkpoint_store::load_impl(std::string task_id, diagnostics* diag, load_handler handler) {
    auto s = detail::access::impl(*session_);
    detail::diag_target target(diag);
    diagnostics& d = target.get();
    d.clear();
    error_code ec = detail::check_name("checkpoint task_id", task_id, d);
    if (!ec && s->closed) ec = error::session_closed;
    if (ec)
        return detail::complete_later(*s, std::move(handler), ec,
                                      std::optional<checkpoint_record>());
    auto run = [](std::shared_ptr<session_impl> s, std::string task, detail::diag_target target)
        -> asio::awaitable<std::tuple<error_code, std::optional<checkpoint_record>>> {
        co_return co_await load_coro(std::move(s), std::move(task), target.get());
    };
    auto& sr = *s;
    detail::launch(sr, run(std::move(s), std::move(task_id), std::move(target)),
                   std::move(handler));
}

void checkpoint_store::remove_impl(std::string task_id, count_handler handler) {
    auto s = detail::access::impl(*session_);
    diagnostics d;
    error_code ec = detail::check_name("checkpoint task_id", task_id, d);
    if (!ec && s->closed) ec = error::session_closed;
    if (ec) return detail::complete_later(*s, std::move(handler), ec, std::size_t(0));
    auto& sr = *s;
    detail::launch(sr, remove_coro(std::move(s), std::move(task_id)), std::move(handler));
}

}  // namespace redcoord
