#include "core/access.hpp"
#include "core/data_ops.hpp"
#include "events/events_impl.hpp"
#include "wait/fill_once.hpp"

#include <redcoord/error.hpp>
#include <redcoord/script.hpp>
#include <redcoord/state.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

namespace redcoord {

namespace asio = boost::asio;
using boost::system::error_code;
using std::chrono::milliseconds;

namespace {

// What an operation keeps alive until its reply: the request's reply, the diagnostics it
// fills (the caller's, or its own when the caller gave none), and the caller's handler.
template <class Reply, class Handler>
struct op {
    op(Handler h, diagnostics* diag) : diag(diag), handler(std::move(h)) {}
    request req;
    Reply reply{};
    detail::diag_target diag;
    Handler handler;
};

template <class Reply, class Handler>
auto make_op(Handler& handler, diagnostics* diag) {
    // Constructed in place: Boost 1.81's any_completion_handler move assignment recurses.
    return std::make_shared<op<Reply, Handler>>(std::move(handler), diag);
}

std::string change_channel(const keyspace& keys, std::string_view key) {
    return keyspace::companion(keys.state(key), "changed");
}

}  // namespace

shared_state::shared_state(session& s, state_options opts) : session_(&s), opts_(opts) {
    detail::check_duration_option("default_ttl", opts_.default_ttl);
    detail::check_size_option("max_value_bytes", opts_.max_value_bytes);
}

void shared_state::set_impl(std::string key, boost::json::value value,
                            std::optional<milliseconds> ttl, diagnostics* diag,
                            void_handler handler) {
    auto s = detail::access::impl(*session_);
    const auto ex = s->conn.get_executor();
    const auto slot = asio::get_associated_cancellation_slot(handler);
    auto o = make_op<std::int64_t>(handler, diag);
    diagnostics& d = o->diag.get();
    d.clear();
    error_code ec = detail::check_name("state key", key, d);
    if (!ec && ttl) ec = detail::check_duration_arg(d, "state '" + key + "'", "ttl", *ttl);
    std::string text;
    if (!ec)
        ec = detail::serialize_limited(value, opts_.max_value_bytes, "max_value_bytes",
                                       "state '" + key + "'", text, d);
    if (!ec && s->closed) ec = error::session_closed;
    if (ec) {
        asio::post(ex, asio::append(std::move(o->handler), ec));
        return;
    }
    static const script& set = script::embedded("state_set");
    const auto px = ttl.value_or(opts_.default_ttl);
    std::vector<std::string> keys{s->keys.state(key)};
    std::vector<std::string> args{std::move(text), std::to_string(px.count()),
                                  change_channel(s->keys, key)};
    async_eval(s->conn, set, std::move(keys), std::move(args), o->reply, d,
               asio::bind_cancellation_slot(slot, [o, ex](error_code ec, std::size_t) {
                   asio::dispatch(ex, asio::append(std::move(o->handler), ec));
               }));
}

void shared_state::get_impl(std::string key, diagnostics* diag, text_handler handler) {
    auto s = detail::access::impl(*session_);
    const auto ex = s->conn.get_executor();
    const auto slot = asio::get_associated_cancellation_slot(handler);
    auto o = make_op<std::optional<std::string>>(handler, diag);
    diagnostics& d = o->diag.get();
    d.clear();
    error_code ec = detail::check_name("state key", key, d);
    if (!ec && s->closed) ec = error::session_closed;
    if (ec) {
        asio::post(ex, asio::append(std::move(o->handler), ec, std::optional<std::string>()));
        return;
    }
    o->req.push("GET", s->keys.state(key));
    s->conn.async_exec(o->req, o->reply, d,
                       asio::bind_cancellation_slot(slot, [o, ex](error_code ec, std::size_t) {
                           if (ec) o->reply.reset();
                           asio::dispatch(ex, asio::append(std::move(o->handler), ec,
                                                           std::move(o->reply)));
                       }));
}

void shared_state::remove_impl(std::string key, diagnostics* diag, bool_handler handler) {
    auto s = detail::access::impl(*session_);
    const auto ex = s->conn.get_executor();
    const auto slot = asio::get_associated_cancellation_slot(handler);
    auto o = make_op<std::int64_t>(handler, diag);
    diagnostics& d = o->diag.get();
    d.clear();
    error_code ec = detail::check_name("state key", key, d);
    if (!ec && s->closed) ec = error::session_closed;
    if (ec) {
        asio::post(ex, asio::append(std::move(o->handler), ec, false));
        return;
    }
    static const script& remove = script::embedded("state_remove");
    std::vector<std::string> keys{s->keys.state(key)};
    std::vector<std::string> args{change_channel(s->keys, key)};
    async_eval(s->conn, remove, std::move(keys), std::move(args), o->reply, d,
               asio::bind_cancellation_slot(slot, [o, ex](error_code ec, std::size_t) {
                   asio::dispatch(ex, asio::append(std::move(o->handler), ec,
                                                   !ec && o->reply == 1));
               }));
}

subscription shared_state::watch_impl(std::string key, detail::event_fn fn) {
    diagnostics diag;
    if (auto ec = detail::check_name("state key", key, diag))
        throw error_with_diagnostics(ec, diag);
    auto s = detail::access::impl(*session_);
    if (s->closed) {
        asio::post(s->conn.get_executor(),
                   [fn = std::move(fn)] { fn(error::session_closed, nullptr); });
        return {};
    }
    const auto id = s->hub.add(change_channel(s->keys, key), false,
                               detail::make_listener(*s, std::move(fn)), true);
    return subscription(s, id);
}

}  // namespace redcoord
