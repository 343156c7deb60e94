#include "core/access.hpp"
#include "core/session_impl.hpp"

#include <redcoord/error.hpp>
#include <redcoord/lease.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

namespace redcoord {

namespace asio = boost::asio;
using boost::system::error_code;
using detail::clock;
using detail::lease_state;

namespace {

std::string describe(const lease_state& l) {
    return "'" + l.resource + "' (key " + l.keys.front() + ", owner " + l.owner + ")";
}

// What release and extend say once the session is closed: its leases were marked lost then.
error_code session_gone(const lease_state& l, std::string_view op, diagnostics& diag) {
    diag.set_client_message(std::string(op) + " of " + describe(l) +
                            ": the session is closed (its leases were marked lost then)");
    return error::session_closed;
}

// What extend says of a lease released or lost (for another reason than the session's end).
error_code no_longer_held(const lease_state& l, diagnostics& diag) {
    diag.set_client_message("extend of " + describe(l) + ": the lease is no longer held (" +
                            (l.status == lease::status::released
                                 ? std::string("released")
                                 : "lost: " + l.lost_reason.message()) +
                            ")");
    return error::not_held;
}

// A release under way: its script call (or its place in the lock batch) and what its
// completion needs.
struct release_op : detail::batch_entry {
    std::shared_ptr<lease_state> lease;
    detail::script_call script;
    std::int64_t reply = 0;
    diagnostics local;
    asio::any_completion_handler<void(error_code)> handler;

    // (Constructed with its handler: any_completion_handler's move assignment recurses
    // without end in Boost 1.81.)
    release_op(std::shared_ptr<lease_state> l, diagnostics* d,
               asio::any_completion_handler<void(error_code)> h)
        : lease(std::move(l)), handler(std::move(h)) {
        diag = d ? d : &local;
    }

    void complete(error_code ec, const detail::batch_reply& r) override {
        reply = r.values[0];
        done(ec);
    }

    void done(error_code ec) {
        if (!ec && reply == 0) {
            diag->set_client_message("release of " + describe(*lease) +
                                     ": Redis no longer holds it for this owner (expired or taken)");
            ec = error::not_held;
        }
        if (handler) asio::dispatch(asio::append(std::move(handler), ec));
    }
};

// Starts the release of a held lease; the status changes at once, so no renewal follows.
void start_release(const std::shared_ptr<lease_state>& l, diagnostics* diag,
                   asio::any_completion_handler<void(error_code)> handler) {
    l->session->mark_released(*l);
    l->session->send_release(l, diag, std::move(handler));
}

}  // namespace

lease::lease(std::shared_ptr<detail::lease_state> state) noexcept : state_(std::move(state)) {}

lease& lease::operator=(lease&& other) noexcept {
    if (this != &other) {
        lease old(std::move(*this));
        state_ = std::move(other.state_);
    }
    return *this;
}

lease::~lease() {
    if (!state_ || state_->status != status::held || state_->session->closed) return;
    try {
        start_release(state_, nullptr, {});
    } catch (...) {
        // Out of memory in a destructor: the key expires by its TTL.
    }
}

lease::status lease::get_status() const noexcept {
    return state_ ? state_->status : status::released;
}

namespace {
const std::string empty_string;
}

const std::string& lease::resource() const noexcept {
    return state_ ? state_->resource : empty_string;
}
const std::string& lease::key() const noexcept {
    return state_ ? state_->keys.front() : empty_string;
}
const std::string& lease::owner() const noexcept { return state_ ? state_->owner : empty_string; }
std::int64_t lease::fencing_token() const noexcept { return state_ ? state_->fence : 0; }
std::chrono::milliseconds lease::ttl() const noexcept {
    return state_ ? state_->ttl : std::chrono::milliseconds(0);
}
std::chrono::steady_clock::time_point lease::valid_until() const noexcept {
    return state_ && state_->status == status::held ? state_->deadline : clock::time_point{};
}
error_code lease::lost_reason() const noexcept { return state_ ? state_->lost_reason : error_code{}; }
std::uint64_t lease::renewals() const noexcept { return state_ ? state_->renewals : 0; }

asio::cancellation_slot lease::cancellation_slot() {
    if (!state_) return {};
    auto& sig = state_->signals.emplace_back();
    if (state_->status == status::lost) {
        // Lost already: emitted in the next turn, once the caller has bound its work to it.
        asio::post(state_->session->conn.get_executor(), [st = state_, &sig] {
            sig.emit(asio::cancellation_type::terminal);
        });
    }
    return sig.slot();
}

void lease::release_impl(diagnostics* caller_diag, handler_type handler) {
    detail::diag_target target(caller_diag);
    auto& diag = target.get();
    diag.clear();
    if (!state_) {
        diag.set_client_message("release: the lease is empty (nothing was acquired)");
        asio::dispatch(asio::append(std::move(handler), error_code(error::invalid_argument)));
        return;
    }
    auto& s = *state_->session;
    switch (state_->status) {
        case status::released: detail::complete_later(s.conn.get_executor(), std::move(handler), error_code{}); return;
        case status::lost:
            if (s.closed) break;  // the session's end says more than the loss it caused
            diag.set_client_message("release of " + describe(*state_) + ": the lease was lost (" +
                                    state_->lost_reason.message() + ")");
            detail::complete_later(s.conn.get_executor(), std::move(handler), error::not_held);
            return;
        case status::held: break;
    }
    if (s.closed) {
        detail::complete_later(s.conn.get_executor(), std::move(handler), session_gone(*state_, "release", diag));
        return;
    }
    start_release(state_, caller_diag, std::move(handler));
}

void lease::extend_impl(std::chrono::milliseconds ttl, diagnostics* caller_diag,
                        handler_type handler) {
    detail::diag_target target(caller_diag);
    auto& diag = target.get();
    diag.clear();
    if (!state_) {
        diag.set_client_message("extend: the lease is empty (nothing was acquired)");
        asio::dispatch(asio::append(std::move(handler), error_code(error::invalid_argument)));
        return;
    }
    auto& s = *state_->session;
    const auto what = "extend of " + describe(*state_);
    error_code ec = detail::check_duration_arg(diag, what, "ttl", ttl);
    if (!ec)
        ec = detail::check_ttl_renewable(diag, what, ttl, state_->renew_interval,
                                         state_->watchdog);
    if (!ec && s.closed) ec = session_gone(*state_, "extend", diag);
    if (!ec && state_->status != status::held) ec = no_longer_held(*state_, diag);
    if (ec) {
        detail::complete_later(s.conn.get_executor(), std::move(handler), ec);
        return;
    }
    auto run = [](std::shared_ptr<lease_state> l, std::chrono::milliseconds ttl,
                  detail::diag_target target) -> asio::awaitable<error_code> {
        auto& s = *l->session;
        auto& diag = target.get();
        const auto sent = clock::now();
        // Renewals sent from now on ask for the new TTL too.
        l->ttl = ttl;
        std::vector<std::string> args{l->owner, std::to_string(ttl.count())};
        args.insert(args.end(), l->extra_args.begin(), l->extra_args.end());
        args.emplace_back(s.publish_command());
        std::int64_t reply = 0;
        auto [ec, n] = co_await detail::eval(s.conn, *l->spec->renew, l->keys, args, reply, diag);
        if (ec) co_return ec;
        if (l->status != status::held || reply != 1) {
            if (reply != 1) s.mark_lost(*l, error::lease_lost);
            co_return no_longer_held(*l, diag);
        }
        s.hold(l, sent);
        co_return error_code{};
    };
    detail::launch(s.conn.get_executor(), run(state_, ttl, std::move(target)), std::move(handler));
}

void lease::wait_lost_impl(handler_type handler) {
    if (!state_) {
        asio::dispatch(asio::append(std::move(handler), error_code(error::invalid_argument)));
        return;
    }
    auto& s = *state_->session;
    if (state_->status == status::lost) {
        detail::complete_later(s.conn.get_executor(), std::move(handler), error_code{});
        return;
    }
    if (state_->status == status::released) {
        detail::complete_later(s.conn.get_executor(), std::move(handler), asio::error::operation_aborted);
        return;
    }
    auto slot = asio::get_associated_cancellation_slot(handler);
    auto it = state_->lost_waiters.insert(state_->lost_waiters.end(), std::move(handler));
    if (slot.is_connected()) {
        slot.assign([w = std::weak_ptr<lease_state>(state_), it](asio::cancellation_type) {
            auto l = w.lock();
            if (!l || l->status != status::held) return;
            auto h = std::move(*it);
            l->lost_waiters.erase(it);
            detail::complete_later(l->session->conn.get_executor(), std::move(h), asio::error::operation_aborted);
        });
    }
}

namespace detail {

void drop_expired_grant(lease& l, diagnostics& diag, grant_stage stage) {
    if (!l) return;
    const auto late = std::chrono::duration_cast<std::chrono::microseconds>(
        clock::now() - detail::access::state(l)->deadline);
    const auto gap = late.count() < 0 ? -late.count() : late.count();
    const std::string how_far =
        gap < 1000 ? std::to_string(gap) + " us" : std::to_string(gap / 1000) + " ms";
    const std::string validity =
        "the lease's validity (TTL " + std::to_string(l.ttl().count()) +
        " ms, less the clock drift allowance)";
    diag.set_client_message(
        "'" + l.resource() + "' was granted, but " +
        (stage == grant_stage::reply ? "the reply came " : "its completion was reached ") +
        how_far +
        (late.count() >= 0 ? " after " + validity + " had ended"
                           : " before " + validity + " ended, less than the " +
                                 std::to_string(min_validity_at_grant.count()) +
                                 " ms a grant must have left") +
        ": released");
    l = lease();  // releases it
}

bool keep_if_valid(lease& l, diagnostics& diag, grant_stage stage) {
    if (l.is_held() && l.valid_until() - clock::now() >= min_validity_at_grant) return true;
    drop_expired_grant(l, diag, stage);
    return false;
}

// Without a coroutine: releases are as frequent as acquisitions.
void session_impl::send_release(const std::shared_ptr<lease_state>& l, diagnostics* diag,
                                asio::any_completion_handler<void(error_code)> handler) {
    auto op = std::make_unique<release_op>(l, diag, std::move(handler));
    if (l->spec->batch_release) {
        l->spec->batch_release(lock_ops, *l, std::move(op));
        return;
    }
    auto& call = op->script;
    call.sc = l->spec->release;
    call.req.push("EVALSHA", call.sc->sha1(), l->keys.size(), l->keys, l->owner, l->extra_args,
                  publish_command());
    call.adapter = detail::make_adapter(op->reply);
    call.diag = op->diag;
    detail::run_script_call(conn, call, [op = std::move(op)](error_code ec, std::size_t) mutable {
        op->done(ec);
    });
}

void fenced_set_impl(session& s, std::string key, std::string value, std::int64_t token,
                     diagnostics* diag, asio::any_completion_handler<void(error_code)> handler) {
    auto impl = detail::access::impl(s);
    diag_target target(diag);
    diagnostics& d = target.get();
    d.clear();
    error_code ec = check_name("fenced write key", key, d);
    if (!ec && token < 0)
        ec = invalid(d, "fenced write of '" + key + "': token " + std::to_string(token) +
                            " is negative (fencing tokens never are)");
    if (ec) {
        detail::complete_later(impl->conn.get_executor(), std::move(handler), ec);
        return;
    }
    auto run = [](std::shared_ptr<session_impl> s, std::string key, std::string value,
                  std::int64_t token, diag_target target) -> asio::awaitable<error_code> {
        static const script& fenced = script::embedded("fenced_set");
        auto& diag = target.get();
        std::vector<std::string> keys{key, keyspace::companion(key, "fence")};
        std::vector<std::string> args{std::to_string(token), std::move(value)};
        std::int64_t reply = 0;
        auto [ec, n] = co_await eval(s->conn, fenced, keys, args, reply, diag);
        if (ec) co_return ec;
        if (reply == 1) co_return error_code{};
        diag.set_client_message("fenced write of '" + key + "': token " + std::to_string(token) +
                                " is older than one already used");
        co_return error::stale_fencing_token;
    };
    launch(impl->conn.get_executor(),
           run(impl, std::move(key), std::move(value), token, std::move(target)),
           std::move(handler));
}

}  // namespace detail
}  // namespace redcoord
