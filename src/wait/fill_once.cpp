#include "core/access.hpp"
#include "wait/fill_once.hpp"
#include "wait/push_wait.hpp"
#include "wait/wait_fsm.hpp"
#include "core/data_ops.hpp"

#include <redcoord/error.hpp>
#include <redcoord/script.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <utility>
#include <vector>

namespace redcoord::detail {
namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

// Values up to this size travel in the announcement itself; larger ones are read by each
// waiter, so a large value does not fill the output buffers of every subscriber.
constexpr std::size_t inline_limit = 64 * 1024;

asio::awaitable<std::optional<std::string>> read(session_impl& s, const std::string& key,
                                                 diagnostics& d) {
    request req;
    req.push("GET", key);
    std::optional<std::string> v;
    auto [ec, n] = co_await s.conn.async_exec(req, v, d, nothrow);
    if (ec) fail(ec, d);
    co_return v;
}

boost::json::value parse_or_throw(std::string_view text, const std::string& what) {
    diagnostics d;
    boost::json::value v;
    if (auto ec = parse_stored(text, what, v, d)) fail(ec, d);
    return v;
}

struct filler {
    std::shared_ptr<session_impl> s;
    const fill_spec& spec;
    const std::string& lease_key;
    const std::string& channel;
    diagnostics& d;

    // The lease is a plain string holding the owner token (SET NX PX): it needs no fencing
    // counter, so a filled key leaves nothing behind. The session's watchdog renews it.
    asio::awaitable<lease> try_lease() {
        static const lease_spec fill_lease{&script::embedded("fill_lease_renew"),
                                           &script::embedded("compare_and_delete")};
        std::string owner = s->new_owner_token();
        request req;
        req.push("SET", lease_key, owner, "NX", "PX", spec.lease_ttl.count());
        std::optional<std::string> granted;
        const auto sent = clock::now();
        // Not cancellable: a grant must be known, or the waiters would wait for its TTL.
        auto [ec, n] = co_await s->conn.async_exec(
            req, granted, d, asio::bind_cancellation_slot(asio::cancellation_slot(), nothrow));
        if (ec) fail(ec, d);
        if (!granted) co_return lease();
        auto st = std::make_shared<lease_state>();
        st->session = s;
        st->spec = &fill_lease;
        st->primitive = "fill";
        st->resource = spec.what;
        st->keys = {lease_key};
        st->owner = std::move(owner);
        st->ttl = spec.lease_ttl;
        s->hold(st, sent);
        trace_lease(*s, trace_kind::lock_acquired, *st, micros(clock::now() - sent));
        co_return detail::access::make_lease(std::move(st));
    }

    // Lets the waiters take over: the lease goes first, so the one that hears "f" can take it.
    asio::awaitable<void> give_up(lease& l) {
        diagnostics ignored;
        co_await l.async_release(ignored, nothrow);
        request req;
        req.push(s->publish_command(), channel, "f");
        co_await s->conn.async_exec(req, ignore, ignored, nothrow);
    }

    asio::awaitable<boost::json::value> fill(lease l, const json_factory& make) {
        // The value may have been stored between our read and our grant.
        std::optional<std::string> text;
        std::exception_ptr ep;
        try {
            text = co_await read(*s, spec.key, d);
        } catch (...) {
            ep = std::current_exception();
        }
        if (ep || text) {
            diagnostics ignored;
            co_await l.async_release(ignored, nothrow);
            if (ep) std::rethrow_exception(ep);
            co_return parse_or_throw(*text, spec.what);
        }

        auto ex = co_await asio::this_coro::executor;
        auto [order, made_ep, value, lost_ec] =
            co_await asio::experimental::make_parallel_group(
                asio::co_spawn(ex, make(), asio::deferred), l.async_wait_lost(asio::deferred))
                .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
        if (order[0] == 1 && !lost_ec) {
            d.set_client_message(spec.what + ": the fill lease was lost while making the value (" +
                                 l.lost_reason().message() + ")");
            fail(error::lease_lost, d);
        }
        if (made_ep) {
            co_await give_up(l);
            std::rethrow_exception(made_ep);
        }
        std::string stored;
        if (auto ec = serialize_limited(value, spec.max_bytes, spec.limit_name, spec.what, stored,
                                        d)) {
            co_await give_up(l);
            fail(ec, d);
        }
        static const script& store = script::embedded("fill_store");
        const std::vector<std::string> keys{spec.key};
        const std::vector<std::string> args{
            std::move(stored), std::to_string(spec.ttl ? spec.ttl->count() : 0), channel,
            std::to_string(inline_limit), std::string(s->publish_command())};
        std::int64_t reply = 0;
        // Not cancellable: once made, the value is worth storing for the others.
        auto [ec, n] = co_await eval(s->conn, store, keys, args, reply, d, {}, false);
        if (ec) {
            co_await give_up(l);
            fail(ec, d);
        }
        diagnostics ignored;
        co_await l.async_release(ignored, nothrow);
        co_return std::move(value);
    }
};

}  // namespace

error_code serialize_limited(const boost::json::value& v, std::size_t max_bytes,
                             std::string_view limit_name, const std::string& what,
                             std::string& out, diagnostics& diag) {
    out = boost::json::serialize(v);
    if (out.size() <= max_bytes) return {};
    diag.set_client_message(what + ": value of " + std::to_string(out.size()) +
                            " bytes (as JSON) exceeds " + std::string(limit_name) + " (" +
                            std::to_string(max_bytes) + ")");
    out.clear();
    return error::invalid_argument;
}

error_code parse_stored(std::string_view text, const std::string& what, boost::json::value& out,
                        diagnostics& diag) {
    error_code ec;
    out = boost::json::parse(text, ec);
    if (!ec) return {};
    diag.set_client_message(what + ": the stored value is not JSON (" + ec.message() + ")");
    return error::decode_failed;
}

asio::awaitable<boost::json::value> fill_once(std::shared_ptr<session_impl> s, fill_spec spec,
                                              json_factory make) {
    // Cancellation is checked where it is safe to stop: a filler always lets the waiters
    // take over before it leaves.
    co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
    co_await asio::this_coro::throw_if_cancelled(false);
    const std::string lease_key = keyspace::companion(spec.key, spec.lease_suffix);
    const std::string channel = keyspace::companion(spec.key, spec.channel_suffix);
    diagnostics d;
    filler f{s, spec, lease_key, channel, d};
    std::optional<channel_waiter> waiter;
    // The wait engine's fallback judges each look: how long to sleep after it, bounded by the
    // filler lease's remaining TTL (a push ends the sleep; fill's waiters do not queue, they
    // all look again).
    wait_policy p;
    p.retry_delay = milliseconds(1);
    p.wait = max_duration;
    const wait_fsm m(p, clock::now());
    for (;;) {
        if (s->closed) fail(error::session_closed, d);
        co_await stop_if_cancelled();
        if (auto text = co_await read(*s, spec.key, d)) co_return parse_or_throw(*text, spec.what);

        lease l = co_await f.try_lease();
        if (l) {
            auto v = co_await f.fill(std::move(l), make);
            co_return v;
        }

        // Another caller is making it: listen first, then look again.
        if (!waiter) waiter.emplace(*s, channel);
        waiter->clear();
        request req;
        req.push("GET", spec.key);
        req.push("PTTL", lease_key);
        response<std::optional<std::string>, std::int64_t> resp;
        auto [ec, n] = co_await s->conn.async_exec(req, resp, d, nothrow);
        if (ec) fail(ec, d);
        if (auto& text = std::get<0>(resp)) co_return parse_or_throw(*text, spec.what);
        // PTTL -2: the filler is gone (done or failed): look again at once. -1: a lease
        // without TTL (written by hand) is looked at again now and then.
        attempt_outcome look;
        look.hint = std::get<1>(resp) == -2 ? wait_hint::unknown : std::get<1>(resp);
        if (std::get<1>(resp) != -2)
            co_await waiter->wait_until(sat_add(clock::now(), m.fallback(look) + milliseconds(1)));
        if (s->closed || waiter->closed()) fail(error::session_closed, d);
        co_await stop_if_cancelled();
        for (const auto& heard : waiter->take()) {
            if (heard.size() >= 2 && heard[0] == 'v' && heard[1] == ':')
                co_return parse_or_throw(std::string_view(heard).substr(2), spec.what);
        }
        // "f" (the filler failed), "r" (stored, read it), a gap, or the fallback timer.
    }
}

}  // namespace redcoord::detail
