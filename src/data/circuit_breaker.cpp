#include "core/access.hpp"
#include "core/data_ops.hpp"

#include <redcoord/circuit_breaker.hpp>
#include <redcoord/error.hpp>
#include <redcoord/script.hpp>

#include <boost/asio/this_coro.hpp>

namespace redcoord {

namespace asio = boost::asio;
using boost::system::error_code;
using detail::data_nothrow;
using detail::session_impl;
using std::chrono::milliseconds;

namespace {

struct circuit_keys {
    std::string hash, failures;
    circuit_keys(const keyspace& ks, std::string_view name)
        : hash(ks.circuit(name)), failures(keyspace::companion(hash, "failures")) {}
    std::vector<std::string> list() const { return {hash, failures}; }
};

// The circuit's keys outlive every window they hold: an idle circuit is forgotten (closed)
// only long after anything in it could matter.
milliseconds key_ttl(const circuit_breaker_options& o) {
    return 2 * (o.recovery_timeout + o.trial_timeout + o.sampling_duration);
}

circuit_state state_of(std::int64_t code) {
    switch (code) {
        case 1: return circuit_state::open;
        case 2: return circuit_state::half_open;
        default: return circuit_state::closed;
    }
}

bool is_cancellation(std::exception_ptr ep) {
    try {
        std::rethrow_exception(ep);
    } catch (const boost::system::system_error& e) {
        return e.code() == asio::error::operation_aborted;
    } catch (...) {
        return false;
    }
}

struct execute_call {
    std::shared_ptr<session_impl> s;
    circuit_breaker_options o;
    std::string name;
    std::function<asio::awaitable<void>()> run;
};

asio::awaitable<void> execute_coro(execute_call c) {
    // The outcome is recorded even when the caller is cancelled: errors are checked by hand.
    co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
    co_await asio::this_coro::throw_if_cancelled(false);
    static const script& acquire = script::embedded("circuit_acquire");
    static const script& record = script::embedded("circuit_record");
    auto& s = *c.s;
    const circuit_keys ck(s.keys, c.name);
    const auto keys = ck.list();
    const std::string token = s.new_owner_token();
    diagnostics d;

    std::vector<std::int64_t> reply;
    const std::vector<std::string> acquire_args{token, std::to_string(c.o.recovery_timeout.count()),
                                                std::to_string(c.o.trial_timeout.count()),
                                                std::to_string(key_ttl(c.o).count())};
    // Not cancellable: a trial handed out must be known, or it would block others until it
    // timed out.
    auto [ec, n] = co_await detail::eval(s.conn, acquire, keys, acquire_args, reply, d, {}, false);
    if (!ec && reply.size() != 3) {
        ec = error::unexpected_reply;
        d.set_client_message("circuit_acquire: expected 3 integers");
    }
    if (ec) throw error_with_diagnostics(ec, d);
    const bool trial = reply[0] == 1 && reply[1] == 1;
    if (reply[0] != 1) {
        d.set_client_message(
            "circuit '" + c.name + "' is " +
            (reply[1] == 1 ? "open: a trial call is due in " + std::to_string(reply[2]) + " ms"
                           : "half-open: the trial call under way times out in " +
                                 std::to_string(reply[2]) + " ms"));
        throw error_with_diagnostics(error::circuit_open, d);
    }
    {
        auto cs = co_await asio::this_coro::cancellation_state;
        if (cs.cancelled() != asio::cancellation_type::none) {
            if (trial) {
                // Hand the trial on at once instead of making the others wait for its timeout.
                std::vector<std::string> args{"abandon", token, "0", "0", "0", token};
                std::vector<std::int64_t> ignored;
                diagnostics d2;
                co_await detail::eval(s.conn, record, keys, args, ignored, d2, {}, false);
            }
            throw boost::system::system_error(asio::error::operation_aborted);
        }
    }

    std::exception_ptr ep;
    try {
        co_await c.run();
    } catch (...) {
        ep = std::current_exception();
    }
    // A success while closed changes nothing: no round trip for it.
    if (ep || trial) {
        const char* outcome = !ep ? "ok" : is_cancellation(ep) ? "abandon" : "fail";
        if (!(ep && !trial && is_cancellation(ep))) {
            const std::vector<std::string> args{
                outcome,
                trial ? token : std::string(),
                std::to_string(c.o.failure_threshold),
                std::to_string(c.o.sampling_duration.count()),
                std::to_string(key_ttl(c.o).count()),
                token};
            std::vector<std::int64_t> ignored;
            diagnostics d2;
            co_await detail::eval(s.conn, record, keys, args, ignored, d2, {}, false);
        }
    }
    if (ep) std::rethrow_exception(ep);
}

asio::awaitable<std::tuple<error_code, circuit_status>> state_coro(
    std::shared_ptr<session_impl> s, circuit_breaker_options o, std::string name,
    diagnostics& d) {
    static const script& status = script::embedded("circuit_status");
    const circuit_keys ck(s->keys, name);
    std::vector<std::int64_t> reply;
    const std::vector<std::string> args{std::to_string(o.sampling_duration.count()),
                                        std::to_string(o.recovery_timeout.count())};
    auto [ec, n] = co_await detail::eval(s->conn, status, ck.list(), args, reply, d);
    circuit_status out;
    if (!ec && reply.size() != 3) {
        ec = error::unexpected_reply;
        d.set_client_message("circuit_status: expected 3 integers");
    }
    if (!ec) {
        out.state = state_of(reply[0]);
        out.failures = reply[1];
        out.retry_after = milliseconds(reply[2]);
    }
    co_return std::tuple{ec, out};
}

}  // namespace

const char* to_string(circuit_state s) noexcept {
    switch (s) {
        case circuit_state::closed: return "closed";
        case circuit_state::open: return "open";
        case circuit_state::half_open: return "half_open";
    }
    return "unknown";
}

circuit_breaker::circuit_breaker(session& s, circuit_breaker_options opts)
    : session_(&s), opts_(opts) {
    if (opts_.failure_threshold <= 0)
        detail::throw_bad_config("failure_threshold: " + std::to_string(opts_.failure_threshold) +
                                 " is not positive");
    detail::check_duration_option("recovery_timeout", opts_.recovery_timeout);
    detail::check_duration_option("sampling_duration", opts_.sampling_duration);
    detail::check_duration_option("trial_timeout", opts_.trial_timeout);
}

void circuit_breaker::execute_impl(std::string name, erased_op run, execute_handler handler) {
    auto s = detail::access::impl(*session_);
    diagnostics d;
    error_code ec = detail::check_name("circuit name", name, d);
    if (!ec && s->closed) ec = error::session_closed;
    if (ec) return detail::complete_later(*s, std::move(handler), detail::make_error(ec, d));
    execute_call call{s, opts_, std::move(name), std::move(run)};
    detail::launch_throwing(*s, execute_coro(std::move(call)), std::move(handler));
}

void circuit_breaker::state_impl(std::string name, diagnostics* diag, state_handler handler) {
    auto s = detail::access::impl(*session_);
    detail::diag_target target(diag);
    diagnostics& d = target.get();
    d.clear();
    error_code ec = detail::check_name("circuit name", name, d);
    if (!ec && s->closed) ec = error::session_closed;
    if (ec) return detail::complete_later(*s, std::move(handler), ec, circuit_status{});
    auto run =
        [](std::shared_ptr<session_impl> s, circuit_breaker_options o, std::string name,
           detail::diag_target target) -> asio::awaitable<std::tuple<error_code, circuit_status>> {
        co_return co_await state_coro(std::move(s), o, std::move(name), target.get());
    };
    auto& sr = *s;
    detail::launch(sr, run(std::move(s), opts_, std::move(name), std::move(target)),
                   std::move(handler));
}

void circuit_breaker::reset_impl(std::string name, void_handler handler) {
    auto s = detail::access::impl(*session_);
    diagnostics d;
    error_code ec = detail::check_name("circuit name", name, d);
    if (!ec && s->closed) ec = error::session_closed;
    if (ec) return detail::complete_later(*s, std::move(handler), ec);
    auto run = [](std::shared_ptr<session_impl> s,
                  std::string name) -> asio::awaitable<std::tuple<error_code>> {
        const circuit_keys ck(s->keys, name);
        request req;
        req.push("DEL", ck.hash, ck.failures);
        diagnostics d;
        auto [ec, n] = co_await s->conn.async_exec(req, ignore, d, data_nothrow);
        co_return std::tuple{ec};
    };
    auto& sr = *s;
    detail::launch(sr, run(std::move(s), std::move(name)), std::move(handler));
}

}  // namespace redcoord
