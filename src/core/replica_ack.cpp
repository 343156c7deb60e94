#include "core/access.hpp"
#include "core/replica_ack.hpp"

#include <redcoord/error.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

#include <string>

namespace redcoord::detail {

void check_replica_ack(const replica_ack_options& o) {
    if (o.replicas < 0)
        throw_bad_config("replica_ack.replicas: " + std::to_string(o.replicas) + " is negative");
    if (o.replicas > 0) check_duration_option("replica_ack.timeout", o.timeout);
}

namespace {

struct wait_op {
    request req;
    std::int64_t acked = 0;
    response<ignore_t, std::int64_t> routed;  // PTTL key, WAIT: on a cluster
    int required = 0;
    milliseconds timeout{0};
    diagnostics local;
    diagnostics* diag = nullptr;
    asio::any_completion_handler<void(error_code)> handler;

    wait_op(const replica_ack_options& o, diagnostics* d,
            asio::any_completion_handler<void(error_code)> h)
        : req(fail_fast()), required(o.replicas), timeout(o.timeout), diag(d ? d : &local),
          handler(std::move(h)) {}

    // Written after a reconnect, the WAIT would confirm the new connection's writes (none):
    // it fails with the connection instead.
    static request::config fail_fast() {
        request::config cfg;
        cfg.fail_fast = true;
        return cfg;
    }

    void done(error_code ec) {
        if (!ec && acked < required) {
            diag->set_client_message(std::to_string(acked) + " of " + std::to_string(required) +
                                     " replicas acknowledged within " +
                                     std::to_string(timeout.count()) + " ms (WAIT)");
            ec = error::replicas_not_acknowledged;
        }
        asio::dispatch(asio::append(std::move(handler), ec));
    }
};

struct grant_op {
    lease held;
    diagnostics local;
    diagnostics* diag = nullptr;
    diagnostics release_diag;
    asio::any_completion_handler<void(error_code, lease)> handler;

    grant_op(lease l, diagnostics* d, asio::any_completion_handler<void(error_code, lease)> h)
        : held(std::move(l)), diag(d ? d : &local), handler(std::move(h)) {}

    void finish(error_code ec) {
        asio::dispatch(asio::append(std::move(handler), ec, ec ? lease() : std::move(held)));
    }
};

// An operation's handler with the last look at its grant (delivering_grants).
struct grant_delivery {
    diagnostics* diag;
    lease_handler inner;
    bool confirm;

    using cancellation_slot_type = asio::cancellation_slot;
    cancellation_slot_type get_cancellation_slot() const noexcept {
        return asio::get_associated_cancellation_slot(inner);
    }

    void operator()(error_code ec, lease l) {
        if (!ec && l) {
            if (confirm) return confirm_grant(std::move(l), diag, std::move(inner));
            diagnostics unused;
            if (!keep_if_valid(l, diag ? *diag : unused, grant_stage::hand_over))
                ec = error::lease_lost;
        }
        asio::dispatch(asio::append(std::move(inner), ec, std::move(l)));
    }
};

}  // namespace

void confirm_replicas(session_impl& s, diagnostics* diag,
                      asio::any_completion_handler<void(error_code)> handler,
                      std::string_view key) {
    if (!replica_ack_on(s)) {
        asio::post(s.conn.get_executor(), asio::append(std::move(handler), error_code{}));
        return;
    }
    auto op = std::make_unique<wait_op>(s.opts.replica_ack, diag, std::move(handler));
    auto& o = *op;
    if (!key.empty() && access::is_cluster(s.conn)) {
        // On a Redis Cluster the WAIT must reach the master that took the write: a read of
        // the key before it routes the request there.
        o.req.push("PTTL", key);
        o.req.push("WAIT", o.required, o.timeout.count());
        s.conn.async_exec(o.req, o.routed, *o.diag,
                          [op = std::move(op)](error_code ec, std::size_t) {
                              op->acked = std::get<1>(op->routed);
                              op->done(ec);
                          });
        return;
    }
    o.req.push("WAIT", o.required, o.timeout.count());
    s.conn.async_exec(o.req, o.acked, *o.diag,
                      [op = std::move(op)](error_code ec, std::size_t) { op->done(ec); });
}

void confirm_grant(lease l, diagnostics* diag,
                   asio::any_completion_handler<void(error_code, lease)> handler) {
    const auto st = detail::access::state(l);
    if (!st || !l.is_held() || !replica_ack_on(*st->session)) {
        asio::dispatch(asio::append(std::move(handler), error_code{}, std::move(l)));
        return;
    }
    auto op = std::make_unique<grant_op>(std::move(l), diag, std::move(handler));
    auto& o = *op;
    const std::string key = o.held.key();
    confirm_replicas(*st->session, o.diag, [op = std::move(op)](error_code ec) mutable {
        auto& o = *op;
        if (!ec)
            return o.finish(keep_if_valid(o.held, *o.diag, grant_stage::hand_over)
                                ? error_code{}
                                : error_code(error::lease_lost));
        o.diag->set_client_message("'" + o.held.resource() + "' (key " + o.held.key() +
                                   ", fencing token " + std::to_string(o.held.fencing_token()) +
                                   ") was granted, but " + o.diag->message() + ": released");
        if (!o.held.is_held()) return o.finish(ec);
        auto& held = o.held;
        held.async_release(o.release_diag,
                           [op = std::move(op), ec](error_code) mutable { op->finish(ec); });
    }, key);
}

lease_handler delivering_grants(const session_impl& s, diagnostics* diag, lease_handler handler,
                                bool confirm) {
    return grant_delivery{diag, std::move(handler), confirm && replica_ack_on(s)};
}

}  // namespace redcoord::detail
