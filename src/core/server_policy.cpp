// The server's maxmemory-policy, as a session sees it: an evicting server may drop lease keys
// under memory pressure, so the session tells the application (session_options::on_warning)
// and, when asked to, refuses new leases on it (refuse_evicting_server).
#include "core/session_impl.hpp"

#include <redcoord/error.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

namespace redcoord::detail {

void session_impl::read_policy() {
    if ((!opts.on_warning && !opts.refuse_evicting_server) || policy_reading || closed) return;
    policy_reading = true;
    policy = policy_state::unknown;
    struct read_op {
        request req;
        std::map<std::string, std::string> reply;
        diagnostics diag;
    };
    auto op = std::make_shared<read_op>();
    op->req.push("CONFIG", "GET", "maxmemory-policy");
    conn.async_exec(op->req, op->reply, op->diag,
                    [self = shared_from_this(), op](error_code ec, std::size_t) {
                        self->policy_read(ec, op->reply, op->diag);
                    });
}

void session_impl::policy_read(error_code ec, const std::map<std::string, std::string>& reply,
                               const diagnostics& diag) {
    policy_reading = false;
    auto warn = [&](session_warning::kind what, std::string message) {
        if (!opts.on_warning) return;
        session_warning w;
        w.what = what;
        w.message = std::move(message);
        opts.on_warning(w);
    };
    error_code outcome;
    if (closed) {
        outcome = error::session_closed;
    } else if (ec && (transient_error(ec) || ec == asio::error::operation_aborted)) {
        // No answer: read again after the next reconnect, or for the next acquisition.
        outcome = ec;
    } else if (auto it = reply.find("maxmemory-policy"); !ec && it != reply.end()) {
        policy_name = it->second;
        policy = policy_name == "noeviction" ? policy_state::safe : policy_state::evicting;
        if (policy == policy_state::evicting)
            warn(session_warning::kind::evicting_server,
                 "the server's maxmemory-policy is " + policy_name +
                     ": under memory pressure Redis may evict lease keys, and another owner "
                     "may then take a resource that is still held; set it to noeviction");
    } else {
        policy = policy_state::unreadable;
        const std::string why = ec ? ec.message() + (diag.message().empty()
                                                        ? std::string()
                                                        : ": " + diag.message())
                                   : "the server did not name it";
        warn(session_warning::kind::policy_unknown,
             "the server's maxmemory-policy could not be read (" + why +
                 "): whether it evicts lease keys is unknown");
    }
    auto waiters = std::move(policy_waiters);
    policy_waiters.clear();
    for (auto& w : waiters) asio::post(conn.get_executor(), asio::append(std::move(w), outcome));
}

bool session_impl::wait_for_policy(asio::any_completion_handler<void(error_code)> then) {
    if (!opts.refuse_evicting_server || policy != policy_state::unknown) return false;
    policy_waiters.push_back(std::move(then));
    read_policy();
    return true;
}

error_code session_impl::policy_refusal(diagnostics& diag, std::string_view what) const {
    if (!opts.refuse_evicting_server || policy != policy_state::evicting) return {};
    diag.set_client_message(std::string(what) + ": refused (refuse_evicting_server): the "
                            "server's maxmemory-policy is " + policy_name +
                            ", which may evict lease keys; set it to noeviction");
    return error::evicting_server;
}

bool policy_gate(session_impl& s, diag_target& diag, std::string_view what,
                 lease_handler& handler, std::function<void(lease_handler)> resume) {
    if (!s.opts.refuse_evicting_server) return false;
    if (auto ec = s.policy_refusal(diag.get(), what)) {
        complete_later(s.conn.get_executor(), std::move(handler), ec, lease());
        return true;
    }
    if (s.policy != session_impl::policy_state::unknown) return false;
    // Only the caller's diagnostics outlive this call (the operation's own go with it).
    s.wait_for_policy([caller = diag.caller(), what = std::string(what), h = std::move(handler),
                       resume = std::move(resume)](error_code ec) mutable {
        if (!ec) return resume(std::move(h));
        if (caller)
            caller->set_client_message(what + ": the server's maxmemory-policy could not be "
                                              "read (refuse_evicting_server): " + ec.message());
        asio::dispatch(asio::append(std::move(h), ec, lease()));
    });
    return true;
}

}  // namespace redcoord::detail
