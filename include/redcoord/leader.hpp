// Lease-based leader election: campaign, terms that only grow, resign, watch leader changes.
#pragma once

#include <redcoord/detail/with_diagnostics_handler.hpp>
#include <redcoord/diagnostics.hpp>
#include <redcoord/error.hpp>
#include <redcoord/lease.hpp>
#include <redcoord/session.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace redcoord {

class membership;

namespace detail {
struct leader_watch_state;
}

/// Leader election settings, named as in the reference. Defaults in comments.
struct leader_info;

struct leader_options {
    /// The leader renews its lease this often (30 s).
    std::chrono::milliseconds renewal_interval{std::chrono::seconds(30)};
    /// The lease's TTL: a leader that stops renewing is replaced after this long (1 min).
    std::chrono::milliseconds leadership_timeout{std::chrono::minutes(1)};
    /// Split-brain guard: lead only while at least minimum_nodes live nodes are seen (needs the
    /// membership passed to leader_election). Checked before taking office and every
    /// renewal_interval while leading; below it the leader steps down (error::quorum_lost).
    bool require_quorum = false;
    int minimum_nodes = 1;
    /// Called when this election takes office for a name (a campaign is granted), on the
    /// session's executor, before the campaign completes: start leader-only services here
    /// (the reference's OnLeadershipAcquired). Runs synchronously: spawn a coroutine for
    /// asynchronous work.
    std::function<void(const leader_info&)> on_acquired;
    /// Called when a leadership won by this election is lost: its lease lapsed or was taken
    /// (error::lease_lost), or the quorum went (error::quorum_lost); stop leader-only services
    /// here (OnLeadershipLost). Not called on a resignation, a release or a session's close.
    std::function<void(const leader_info&, boost::system::error_code)> on_lost;
};

/// Per-campaign settings; zero takes the election's leader_options.
struct campaign_options {
    /// The leadership's TTL (leader_options::leadership_timeout).
    std::chrono::milliseconds leadership_timeout{0};
    /// How often the leader renews it (leader_options::renewal_interval); shorter than the
    /// leadership_timeout in effect.
    std::chrono::milliseconds renewal_interval{0};
};

/// Who leads: from the leadership key `<prefix>leader:{<name>}` (a string as a lock's).
struct leader_info {
    std::string name;
    std::string node;   ///< the leader's node id
    std::string owner;  ///< its owner token
    std::int64_t term = 0;  ///< the fencing token of its lease: strictly grows with each leader
    std::chrono::system_clock::time_point since;    ///< when it took office (its node's clock)
    std::chrono::system_clock::time_point expires;  ///< when its lease ends unless renewed
};

/// One term of a leadership, as recorded when it was granted (leader_election::
/// async_term_history).
struct leader_term {
    std::int64_t term = 0;                     ///< the fencing token of the term's lease
    std::string node;                          ///< the node that took office
    std::string owner;                         ///< its owner token
    std::chrono::system_clock::time_point at;  ///< when it was granted (Redis server time)
};

/// Leader election on one session. A leadership is a lease (lease.hpp): its fencing token is
/// the term, its cancellation slots cancel leader-only work when leadership is lost, and
/// releasing it resigns (the waiting candidates are woken by the release's push at once).
///
/// Thread safety: none; use it from the session's executor.
class leader_election {
public:
    /// Throws error_with_diagnostics (error::bad_config) naming a bad option, e.g.
    /// require_quorum without a membership, renewal_interval >= leadership_timeout.
    explicit leader_election(session& s, leader_options opts = {}, membership* members = nullptr);

    /// Campaigns for `name` until elected. Completion signature: void(error_code, lease): the
    /// leadership (term = fencing_token()). Waits without polling; with require_quorum, also
    /// until the quorum is seen. A term whose validity ends before it is handed over is
    /// released and the campaign goes on; error::lease_lost only when that happens while the
    /// completion itself waits its turn on the executor (docs/locks.md). Cancellation: terminal, partial, total (the candidate leaves).
    template <class Token = boost::asio::deferred_t>
    auto async_campaign(std::string name, Token&& token = {}) {
        return async_campaign(std::move(name), campaign_options{}, std::forward<Token>(token));
    }
    /// As above, with this campaign's TTL and renewal interval (the reference's
    /// AcquireLeadershipAsync(name, timeout)); error::invalid_argument when one is negative,
    /// above max_duration, or the interval is not shorter than the TTL.
    template <class Token = boost::asio::deferred_t>
    auto async_campaign(std::string name, campaign_options opts, diagnostics& diag,
                        Token&& token = {}) {
        return initiate_campaign(std::move(name), opts, &diag, std::forward<Token>(token));
    }
    template <class Token = boost::asio::deferred_t>
    auto async_campaign(std::string name, campaign_options opts, Token&& token = {}) {
        return initiate_campaign(std::move(name), opts, nullptr, std::forward<Token>(token));
    }

    /// Resigns: releases the leadership at once; the next candidate takes over by push.
    /// Completion signature: void(error_code), as lease::async_release.
    template <class Token = boost::asio::deferred_t>
    auto async_resign(lease& leadership, Token&& token = {}) {
        return leadership.async_release(std::forward<Token>(token));
    }

    /// The current leader of `name`, if any. Completion: void(error_code,
    /// std::optional<leader_info>).
    template <class Token = boost::asio::deferred_t>
    auto async_leader_info(std::string name, Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code,
                                                       std::optional<leader_info>)>(
            [this](auto h, std::string name) { info_impl(std::move(name), std::move(h)); },
            token, std::move(name));
    }

    /// Runs fn(lease&) (returning asio::awaitable<void>) as leader of `name`: campaigns, then
    /// runs fn bound to the term; when leadership is lost, fn is cancelled (terminal) and the
    /// operation fails with error::lease_lost (or quorum_lost); when fn returns, it resigns.
    /// Completion signature: void(std::exception_ptr). Name fn before the co_await: g++ 12
    /// destroys an inline lambda capturing a std::string twice (docs/connection.md).
    template <class Fn, class Token = boost::asio::deferred_t>
    auto async_run_as_leader(std::string name, Fn fn, Token&& token = {}) {
        return boost::asio::co_spawn(executor(), run_as_leader(*this, std::move(name), std::move(fn)),
                                     std::forward<Token>(token));
    }

    /// Notifies `callback` of every leader change of `name` (a new term, or no leader) while
    /// the handle lives, starting with the current state. Woken by the leadership's pushes;
    /// a leader that dies without resigning is noticed when its lease expires.
    class watch {
    public:
        watch() = default;
        watch(watch&&) noexcept = default;
        watch& operator=(watch&& o) noexcept;
        ~watch();

    private:
        friend class leader_election;
        std::shared_ptr<detail::leader_watch_state> state_;
    };
    [[nodiscard]] watch watch_leader(
        std::string name, std::function<void(const std::optional<leader_info>&)> callback);

    const leader_options& options() const noexcept { return opts_; }

    /// The last terms of `name` (at most 100), newest first: each grant of a new term records
    /// it in `<prefix>leader:{<name>}:terms` (a list in the leadership's slot, in the same
    /// script call that grants; its TTL slides to 30 days with every grant). A reentrant hold
    /// or a renewal is not a new term. Completion signature: void(error_code,
    /// std::vector<leader_term>): empty when no term was recorded (never led, or the last
    /// term is older than the list's TTL); error::invalid_argument for an empty name;
    /// connection errors as connection::async_exec. A record that does not parse (written by
    /// something else) is skipped. Cancellation: terminal (as connection::async_exec).
    /// Completes through the handler's associated executor. The grant script tells a
    /// leadership from a lock by its key (the text before its first '{' ends with "leader:"),
    /// so terms are recorded only with a session prefix without '{'.
    template <class Token = boost::asio::deferred_t>
    auto async_term_history(std::string name, Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code,
                                                       std::vector<leader_term>)>(
            [this](auto h, std::string name) { history_impl(std::move(name), std::move(h)); },
            token, std::move(name));
    }

private:
    using lease_handler =
        boost::asio::any_completion_handler<void(boost::system::error_code, lease)>;
    using info_handler = boost::asio::any_completion_handler<void(
        boost::system::error_code, std::optional<leader_info>)>;
    template <class Token>
    auto initiate_campaign(std::string name, campaign_options opts, diagnostics* diag,
                           Token&& token) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, lease)>(
            [this](auto h, std::string name, campaign_options opts, diagnostics* diag) {
                diag = detail::diagnostics_for(h, diag);
                campaign_impl(std::move(name), opts, diag, std::move(h));
            },
            token, std::move(name), opts, diag);
    }
    void campaign_impl(std::string name, campaign_options opts, diagnostics* diag,
                       lease_handler h);
    void info_impl(std::string name, info_handler h);
    session::executor_type executor() const noexcept { return session_->get_executor(); }

    template <class Fn>
    static boost::asio::awaitable<void> run_as_leader(leader_election& self, std::string name,
                                                      Fn fn) {
        namespace asio = boost::asio;
        auto [ec, l] = co_await self.async_campaign(std::move(name),
                                                    asio::as_tuple(asio::use_awaitable));
        diagnostics diag;
        throw_on_error(ec, diag);
        auto ex = co_await asio::this_coro::executor;
        auto [order, ep, lost_ec] =
            co_await asio::experimental::make_parallel_group(
                asio::co_spawn(ex, fn(l), asio::deferred), l.async_wait_lost(asio::deferred))
                .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
        if (order[0] == 1 && !lost_ec) {
            diag.set_client_message("leadership of '" + l.resource() +
                                    "' lost: " + l.lost_reason().message());
            throw error_with_diagnostics(l.lost_reason(), diag);
        }
        auto [rec] = co_await l.async_release(diag, asio::as_tuple(asio::use_awaitable));
        if (ep) std::rethrow_exception(ep);
        throw_on_error(rec, diag);
    }

    session* session_;
    leader_options opts_;
    membership* members_;

    void history_impl(std::string name,
                      boost::asio::any_completion_handler<void(boost::system::error_code,
                                                               std::vector<leader_term>)>
                          h);
};

}  // namespace redcoord
