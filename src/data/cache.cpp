#include <redcoord/cache.hpp>
#include <redcoord/error.hpp>
#include <redcoord/response.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/parser.hpp>
#include <boost/json/serializer.hpp>

#include <algorithm>
#include <charconv>
#include <memory>
#include <set>

#include "core/access.hpp"
#include "core/data_ops.hpp"
#include "wait/fill_once.hpp"

namespace redcoord {

namespace asio = boost::asio;
using boost::system::error_code;
using detail::data_nothrow;
using detail::session_impl;
using std::chrono::milliseconds;

namespace {

std::string what_of(std::string_view key) { return "cache '" + std::string(key) + "'"; }

error_code check_key(std::string_view key, diagnostics& d) {
    return detail::check_name("cache key", key, d);
}

error_code check_ttl(std::string_view key, std::optional<milliseconds> ttl, diagnostics& d) {
    if (!ttl) return {};
    auto ec = detail::check_duration_arg(d, what_of(key), "ttl", *ttl);
    if (ec && ttl->count() <= 0)
        d.set_client_message(d.client_message() + " (omit it for no expiry)");
    return ec;
}

// The part of every entry's key before the caller's key, `<prefix>cache:{`; the key ends with
// '}' after the caller's key (keyspace::cache).
std::string entry_prefix(const keyspace& keys) { return keys.prefix() + "cache:{"; }

// ---- get, set and del: one command each, without a coroutine -------------------------------
// A coroutine per operation (a frame for it, another for co_spawn's entry point, and the
// type-erased hops of completing through them) cost several times what the command itself
// does. These are plain objects instead: built with the request, sent with the caller's
// cancellation slot bound to the reply, and completed from the reply through the handler's
// associated executor.

// The key of an entry as one bulk string, written straight into the request: the entry prefix
// (entry_prefix), the caller's key and '}', as keyspace::cache builds it, without a string of
// its own.
struct entry_key {
    std::string_view prefix;
    std::string_view key;
};

void to_bulk(std::string& out, const entry_key& k) {
    char len[24];
    const auto r = std::to_chars(len, len + sizeof len, k.prefix.size() + k.key.size() + 1);
    out.push_back('$');
    out.append(len, r.ptr);
    out.append("\r\n", 2);
    out.append(k.prefix);
    out.append(k.key);
    out.append("}\r\n", 3);
}

// A value as its JSON text, one bulk string written straight into the request; size receives
// the length of the text (the limit applies to it).
struct json_text {
    const boost::json::value* value;
    std::size_t* size;
};

void to_bulk(std::string& out, const json_text& j) {
    boost::json::serializer sr;
    sr.reset(j.value);
    char buf[4096];
    const auto first = sr.read(buf, sizeof buf);
    if (sr.done()) {  // the common case: a value that fits the stack buffer
        *j.size = first.size();
        detail::append_bulk(out, first);
        return;
    }
    std::string text(first);
    while (!sr.done()) {
        const std::size_t at = text.size();
        text.resize(std::max<std::size_t>(2 * at, at + 4096));
        text.resize(at + sr.read(text.data() + at, text.size() - at).size());
    }
    *j.size = text.size();
    detail::append_bulk(out, text);
}

// What get, set and del share. handler is the caller's; diag the caller's diagnostics or null
// (then nothing is written: no one would read it).
template <class Handler>
struct command_op {
    command_op(std::shared_ptr<session_impl> s, Handler h, diagnostics* diag, bool inline_ok,
               std::string key)
        : s(std::move(s)),
          handler(std::move(h)),
          diag(diag),
          inline_ok(inline_ok),
          key(std::move(key)) {}

    std::shared_ptr<session_impl> s;
    Handler handler;
    diagnostics* diag;
    bool inline_ok;  // the handler belongs to the session's executor
    std::string key;
    request req;
};

// Completes op's handler with args, op freed first. A reply arrives on the session's executor,
// outside the initiating call: a handler that belongs to that executor is called right here
// (what dispatch would do); any other goes through dispatch to its associated executor.
template <class Op, class... Args>
void finish(std::unique_ptr<Op> op, Args... args) {
    auto h = std::move(op->handler);
    const auto ex = op->s->conn.get_executor();
    const bool inline_ok = op->inline_ok;
    op.reset();
    detail::complete_from_reply(ex, inline_ok, std::move(h), std::move(args)...);
}

// The completion handler of the command: owns the op until the reply (or an error) comes.
template <class Op>
struct on_reply {
    std::unique_ptr<Op> op;
    void operator()(error_code ec, std::size_t) { Op::done(std::move(op), ec); }
};

// Sends op's request, replies stored through adapter. The caller's cancellation slot goes to
// the command: cancellation (any type) is connection::async_exec's, which completes it with
// operation_aborted.
template <class Op>
void send(std::unique_ptr<Op> op, detail::any_adapter adapter) {
    auto& conn = op->s->conn;
    const request& req = op->req;
    diagnostics* diag = op->diag;
    auto slot = asio::get_associated_cancellation_slot(op->handler);
    detail::access::exec_erased(conn, req, adapter, diag,
                                asio::bind_cancellation_slot(slot, on_reply<Op>{std::move(op)}));
}

// Parses text into out; false when it is not JSON. A short text (the common case) goes through
// a parser kept by the thread, whose buffers are reused: constructing one per reply was a
// third of the parse. A long one gets a parser of its own, so what the thread keeps stays
// small. The parser holds nothing between calls and never suspends.
bool parse_json(std::string_view text, boost::json::value& out) {
    error_code ec;
    if (text.size() > 4096) {
        out = boost::json::parse(text, ec);
        return !ec;
    }
    thread_local boost::json::parser parser;
    parser.reset();
    parser.write(text, ec);
    if (ec) return false;
    out = parser.release();
    return true;
}

template <class Handler>
struct get_op : command_op<Handler> {
    using command_op<Handler>::command_op;

    std::optional<boost::json::value> value;
    std::optional<std::string> bad_text;  // the stored text, when it is not JSON

    // The reply to GET, parsed where it lies in the read buffer: a miss, or the JSON text.
    static void store(void* obj, std::size_t, node_span reply, error_code& ec) {
        auto& op = *static_cast<get_op*>(obj);
        std::size_t i = 0;
        if (detail::take_null(reply, i)) {
            if (i != reply.size()) ec = error::incompatible_size;
            return;
        }
        std::optional<std::string> copy;  // a reply in another form than a plain bulk string
        std::string_view text;
        if (reply.size() == 1 && reply[0].data_type == resp3::type::blob_string) {
            text = reply[0].value;
        } else {
            from_resp3(reply, copy, ec);
            if (ec || !copy) return;
            text = *copy;
        }
        if (!parse_json(text, op.value.emplace())) {
            op.value.reset();
            op.bad_text.emplace(text);
        }
    }

    static void done(std::unique_ptr<get_op> op, error_code ec) {
        std::optional<boost::json::value> out;
        if (!ec && op->bad_text) {
            diagnostics unused;
            boost::json::value ignored;
            ec = detail::parse_stored(*op->bad_text, what_of(op->key), ignored,
                                      op->diag ? *op->diag : unused);
        } else if (!ec) {
            out = std::move(op->value);
        }
        auto key = std::move(op->key);
        finish(std::move(op), ec, std::move(out), std::move(key));
    }
};

template <class Handler>
struct set_op : command_op<Handler> {
    using command_op<Handler>::command_op;

    static void done(std::unique_ptr<set_op> op, error_code ec) { finish(std::move(op), ec); }
};

template <class Handler>
struct del_op : command_op<Handler> {
    using command_op<Handler>::command_op;

    std::int64_t removed = 0;

    static void done(std::unique_ptr<del_op> op, error_code ec) {
        const bool deleted = !ec && op->removed > 0;
        finish(std::move(op), ec, deleted);
    }
};

// error::invalid_argument for a value of `size` bytes of JSON over max_value_bytes, in the words
// of serialize_limited (the value is already serialized, into the request).
error_code too_large(std::string_view key, std::size_t size, std::size_t max_bytes,
                     diagnostics& d) {
    return detail::invalid(d, what_of(key) + ": value of " + std::to_string(size) +
                                  " bytes (as JSON) exceeds max_value_bytes (" +
                                  std::to_string(max_bytes) + ")");
}

// A TTL that check_ttl accepts, checked without building its message.
bool plain_ttl(std::optional<milliseconds> ttl) {
    return !ttl || (ttl->count() > 0 && *ttl <= max_duration);
}

// Calls on_batch(keys) for every batch SCAN MATCH finds; stops at the first error.
template <class OnBatch>
asio::awaitable<error_code> scan(session_impl& s, const std::string& match, std::size_t count,
                                 diagnostics& d, OnBatch on_batch) {
    std::string cursor = "0";
    do {
        request req;
        req.push("SCAN", cursor, "MATCH", match, "COUNT", count);
        std::pair<std::string, std::vector<std::string>> reply;
        auto [ec, n] = co_await s.conn.async_exec(req, reply, d, data_nothrow);
        if (ec) co_return ec;
        cursor = std::move(reply.first);
        if (!reply.second.empty()) {
            if (auto bec = co_await on_batch(std::move(reply.second))) co_return bec;
        }
    } while (cursor != "0");
    co_return error_code{};
}

asio::awaitable<std::tuple<error_code, std::size_t>> clear_coro(std::shared_ptr<session_impl> s,
                                                                std::size_t batch, diagnostics& d) {
    std::size_t deleted = 0;
    auto unlink = [&](std::vector<std::string> keys) -> asio::awaitable<error_code> {
        for (std::size_t i = 0; i < keys.size(); i += batch) {
            const auto end = std::min(keys.size(), i + batch);
            std::vector<std::string> part(std::make_move_iterator(keys.begin() + i),
                                          std::make_move_iterator(keys.begin() + end));
            request req;
            if (!detail::access::is_cluster(s->conn)) {
                req.push("UNLINK", part);
                std::int64_t n = 0;
                auto [ec, c] = co_await s->conn.async_exec(req, n, d, data_nothrow);
                if (ec) co_return ec;
                deleted += static_cast<std::size_t>(n);
                continue;
            }
            // A Redis Cluster refuses keys of several slots in one UNLINK: one per key, in one
            // request (split per master by the connection).
            for (const auto& k : part) req.push("UNLINK", k);
            generic_response replies;
            auto [ec, c] = co_await s->conn.async_exec(req, replies, d, data_nothrow);
            if (ec) co_return ec;
            for (const auto& r : replies)
                if (r.data_type == resp3::type::number && r.value == "1") ++deleted;
        }
        co_return error_code{};
    };
    // Main keys only (they end with '}'): a fill in progress keeps its lease.
    auto ec = co_await scan(*s, s->keys.main_key_pattern("cache:"), batch, d, unlink);
    co_return std::tuple{ec, deleted};
}

asio::awaitable<std::tuple<error_code, std::vector<std::string>>> keys_coro(
    std::shared_ptr<session_impl> s, std::string pattern, std::size_t batch, diagnostics& d) {
    std::set<std::string> found;
    auto collect = [&](std::vector<std::string> keys) -> asio::awaitable<error_code> {
        for (auto& k : keys)
            if (auto name = s->keys.name_of(k, "cache:"); !name.empty()) found.emplace(name);
        co_return error_code{};
    };
    auto ec = co_await scan(*s, s->keys.main_key_pattern("cache:", pattern), batch, d, collect);
    std::vector<std::string> out;
    if (!ec) out.assign(found.begin(), found.end());
    co_return std::tuple{ec, std::move(out)};
}

}  // namespace

cache::cache(session& s, cache_options opts)
    : session_(&s), opts_(opts), entry_prefix_(entry_prefix(s.keys())) {
    detail::check_size_option("max_value_bytes", opts_.max_value_bytes);
    detail::check_duration_option("fill_lease_ttl", opts_.fill_lease_ttl);
    if (opts_.scan_batch == 0) detail::throw_bad_config("scan_batch: 0 is not positive");
}

// get, set and del check their input, then send one command (see command_op); clear and keys
// run a coroutine, which owns its diagnostics when the caller gave none (diag_target).

void cache::get_impl(std::string key, diagnostics* diag, bool inline_ok, json_handler handler) {
    const auto& s = detail::access::impl(*session_);
    if (diag) diag->clear();
    diagnostics unused;
    error_code ec = check_key(key, diag ? *diag : unused);
    if (!ec && s->closed) ec = error::session_closed;
    if (ec)
        return detail::complete_later(*s, std::move(handler), ec,
                                      std::optional<boost::json::value>(), std::move(key));
    using op_type = get_op<json_handler>;
    auto op = std::make_unique<op_type>(s, std::move(handler), diag, inline_ok, std::move(key));
    op->req.reserve(32 + entry_prefix_.size() + op->key.size());
    op->req.push("GET", entry_key{entry_prefix_, op->key});
    const detail::any_adapter adapter(op.get(), &op_type::store, 1, false);
    send(std::move(op), adapter);
}

void cache::set_impl(std::string key, boost::json::value value, std::optional<milliseconds> ttl,
                     diagnostics* diag, bool inline_ok, void_handler handler) {
    const auto& s = detail::access::impl(*session_);
    if (diag) diag->clear();
    diagnostics unused;
    diagnostics& d = diag ? *diag : unused;
    error_code ec = check_key(key, d);
    if (!ec && !plain_ttl(ttl)) ec = check_ttl(key, ttl, d);
    if (ec) return detail::complete_later(*s, std::move(handler), ec);
    using op_type = set_op<void_handler>;
    auto op = std::make_unique<op_type>(s, std::move(handler), diag, inline_ok, std::move(key));
    auto& req = op->req;
    req.reserve(96 + entry_prefix_.size() + op->key.size());
    std::size_t size = 0;
    if (ttl)
        req.push("SET", entry_key{entry_prefix_, op->key}, json_text{&value, &size}, "PX",
                 ttl->count());
    else
        req.push("SET", entry_key{entry_prefix_, op->key}, json_text{&value, &size});
    if (size > opts_.max_value_bytes) ec = too_large(op->key, size, opts_.max_value_bytes, d);
    if (!ec && s->closed) ec = error::session_closed;
    if (ec) return detail::complete_later(*s, std::move(op->handler), ec);
    send(std::move(op), detail::any_adapter());
}

void cache::del_impl(std::string key, diagnostics* diag, bool inline_ok, bool_handler handler) {
    const auto& s = detail::access::impl(*session_);
    if (diag) diag->clear();
    diagnostics unused;
    error_code ec = check_key(key, diag ? *diag : unused);
    if (!ec && s->closed) ec = error::session_closed;
    if (ec) return detail::complete_later(*s, std::move(handler), ec, false);
    using op_type = del_op<bool_handler>;
    auto op = std::make_unique<op_type>(s, std::move(handler), diag, inline_ok, std::move(key));
    op->req.reserve(32 + entry_prefix_.size() + op->key.size());
    op->req.push("UNLINK", entry_key{entry_prefix_, op->key});
    const auto adapter = detail::make_adapter(op->removed);
    send(std::move(op), adapter);
}

void cache::clear_impl(diagnostics* diag, count_handler handler) {
    auto s = detail::access::impl(*session_);
    if (diag) diag->clear();
    if (s->closed)
        return detail::complete_later(*s, std::move(handler), error_code(error::session_closed),
                                      std::size_t(0));
    auto run = [](std::shared_ptr<session_impl> s, std::size_t batch,
                  detail::diag_target d) -> asio::awaitable<std::tuple<error_code, std::size_t>> {
        co_return co_await clear_coro(std::move(s), batch, d.get());
    };
    auto& sr = *s;
    detail::launch(sr, run(std::move(s), opts_.scan_batch, detail::diag_target(diag)),
                   std::move(handler));
}

void cache::keys_impl(std::string pattern, diagnostics* diag, keys_handler handler) {
    auto s = detail::access::impl(*session_);
    if (diag) diag->clear();
    if (s->closed)
        return detail::complete_later(*s, std::move(handler), error_code(error::session_closed),
                                      std::vector<std::string>());
    if (pattern.empty()) pattern = "*";
    auto run = [](std::shared_ptr<session_impl> s, std::string pattern, std::size_t batch,
                  detail::diag_target d)
        -> asio::awaitable<std::tuple<error_code, std::vector<std::string>>> {
        co_return co_await keys_coro(std::move(s), std::move(pattern), batch, d.get());
    };
    auto& sr = *s;
    detail::launch(
        sr, run(std::move(s), std::move(pattern), opts_.scan_batch, detail::diag_target(diag)),
        std::move(handler));
}

void cache::get_or_set_impl(std::string key, detail::json_factory make,
                            std::optional<milliseconds> ttl, fill_handler handler) {
    auto s = detail::access::impl(*session_);
    diagnostics d;
    error_code ec = check_key(key, d);
    if (!ec) ec = check_ttl(key, ttl, d);
    if (!ec && s->closed) ec = error::session_closed;
    if (ec)
        return detail::complete_later(*s, std::move(handler), detail::make_error(ec, d),
                                      boost::json::value());
    detail::fill_spec spec;
    spec.what = what_of(key);
    spec.key = s->keys.cache(key);
    spec.lease_suffix = "fill";
    spec.channel_suffix = "filled";
    spec.ttl = ttl;
    spec.lease_ttl = opts_.fill_lease_ttl;
    spec.max_bytes = opts_.max_value_bytes;
    spec.limit_name = "max_value_bytes";
    auto& sr = *s;
    detail::launch_throwing(sr, detail::fill_once(std::move(s), std::move(spec), std::move(make)),
                            std::move(handler));
}

}  // namespace redcoord
