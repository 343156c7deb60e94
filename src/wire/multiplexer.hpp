// The multiplexer: which request each reply answers. A plain class with no I/O: the queue of
// requests to write, the ones written and the replies they still await, the subscriptions to
// restore and the pushes to hand on. The connection (one per Redis node) drives it; its unit
// tests feed it messages directly.
#pragma once

#include "wire/push_queue.hpp"

#include <redcoord/diagnostics.hpp>
#include <redcoord/request.hpp>
#include <redcoord/response.hpp>

#include <boost/system/error_code.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace redcoord::detail {

using clock = std::chrono::steady_clock;

/// One request in the multiplexer: an async_exec in progress, or the connection's own (PING,
/// CLIENT UNBLOCK, the restore of subscriptions). What completing it means is up to the
/// owner: done() is called exactly once, with the request's outcome.
class mux_elem {
public:
    enum class state : std::uint8_t { waiting, written };

    // A subscription command still awaiting its confirmations, at its place in the request:
    // after `replies_before` of the request's ordinary replies.
    struct confirmation {
        std::size_t replies_before = 0;
        std::size_t change = 0;  // its index in the request's subscription_changes()
        subscription_change::kind what{};
        std::vector<std::string> channels;  // still to confirm; empty with `count` for "all"
        std::size_t count = 0;              // pushes still expected when channels is empty
    };

    mux_elem(const request& req, any_adapter adapter, diagnostics* diag)
        : req_(&req), adapter_(adapter), diag_(diag), expected_(req.expected_responses()) {}
    /// An internal request, owned by the element.
    explicit mux_elem(request req)
        : owned_(std::make_unique<request>(std::move(req))),
          req_(owned_.get()),
          expected_(req_->expected_responses()) {}
    virtual ~mux_elem() = default;
    mux_elem(const mux_elem&) = delete;
    mux_elem& operator=(const mux_elem&) = delete;

    const request& req() const noexcept { return *req_; }
    state get_state() const noexcept { return st_; }
    bool completed() const noexcept { return completed_; }
    std::size_t bytes() const noexcept { return bytes_; }
    std::size_t received() const noexcept { return received_; }
    diagnostics* diag() const noexcept { return diag_; }
    const any_adapter& adapter() const noexcept { return adapter_; }

    /// Completes the request (at most once). from_reader: called while a reply is handled,
    /// so the owner may resume its waiter at once; otherwise it must not run it inline.
    void complete(boost::system::error_code ec, bool from_reader = false) {
        if (completed_) return;
        completed_ = true;
        done(ec, from_reader);
    }

    clock::time_point deadline = clock::time_point::max();
    bool blocking = false;  // a blocking command or WAIT: the server may stay silent
    bool retry = false;     // written again after a connection loss if no reply came
    bool is_ping = false;   // the health check's own PING

protected:
    virtual void done(boost::system::error_code ec, bool from_reader) = 0;

private:
    friend class multiplexer;

    std::unique_ptr<request> owned_;
    const request* req_;
    any_adapter adapter_;
    diagnostics* diag_ = nullptr;
    state st_ = state::waiting;
    bool completed_ = false;
    std::size_t expected_ = 0;  // ordinary replies
    std::size_t received_ = 0;
    std::size_t bytes_ = 0;
    boost::system::error_code first_error_;
    std::vector<confirmation> confirmations_;  // subscription commands, in request order
};

/// Index of a message's first node after any leading attributes.
inline std::size_t first_value(std::span<const resp3::node_view> msg) noexcept {
    std::size_t i = 0;
    skip_attributes(msg, i);
    return std::min(i, msg.size() - 1);
}

inline bool starts_with(std::string_view s, std::string_view prefix) noexcept {
    return s.substr(0, prefix.size()) == prefix;
}

/// Stores reply number `index` (the message msg) into adapter and keeps the request's first
/// error in first_error, its text in diag: an error reply is error::server_error
/// (error::noscript for NOSCRIPT), a reply that does not convert is the conversion's error.
/// Every path that hands a reply to a caller's response goes through here.
void store_reply(const any_adapter& adapter, std::size_t index,
                 std::span<const resp3::node_view> msg, diagnostics* diag,
                 boost::system::error_code& first_error);

/// What a message read from the server was.
enum class message_kind : std::uint8_t {
    reply,         // answered (part of) the oldest written request
    confirmation,  // a push confirming a subscription command, then handed on like any push
    push,          // a push: queued for the receiver
    unexpected,    // nothing awaited it: the connection cannot be trusted any more
};

class multiplexer {
public:
    explicit multiplexer(std::size_t max_pushes = 10000) : pushes_(max_pushes) {}
    ~multiplexer();
    multiplexer(const multiplexer&) = delete;
    multiplexer& operator=(const multiplexer&) = delete;

    /// Queues a request to write; the multiplexer owns it from now on.
    void add(std::unique_ptr<mux_elem> e);
    /// Queues a request ahead of every other (the restore of subscriptions after a reconnect).
    void add_front(std::unique_ptr<mux_elem> e);

    /// Appends every queued request to buf, oldest first, and moves them to the written
    /// ones; requests completed before they were written (cancelled, timed out) are dropped
    /// unwritten. Returns the number of commands appended.
    std::size_t prepare_write(std::string& buf);

    /// Accounts one complete message of `bytes` bytes from the server.
    message_kind consume(std::span<const resp3::node_view> msg, std::size_t bytes);

    /// A reply larger than the connection accepts arrived in place of one (its nodes were
    /// discarded): the oldest written request awaiting a reply fails with ec.
    message_kind consume_discarded(std::size_t bytes, boost::system::error_code ec,
                                   std::string_view why);

    /// The connection was lost. Written requests fail with ec, except those that may be
    /// retried (put back first in the queue, in order) and subscription commands whose only
    /// wait was for confirmations (done: restored after the reconnect).
    void on_connection_lost(boost::system::error_code ec);
    /// Hands every queued (not yet written) request to the caller, who owns them now.
    std::vector<std::unique_ptr<mux_elem>> take_waiting();
    /// Fails every queued request, or only those the predicate picks.
    void fail_waiting(boost::system::error_code ec);
    template <class Pred>
    void fail_waiting_if(boost::system::error_code ec, Pred pred);
    void fail_all(boost::system::error_code ec) {
        fail_waiting(ec);
        on_connection_lost(ec);  // no retries: ec is not connection_lost
    }

    /// Requests whose deadline has passed by `now`, still incomplete; returns the earliest
    /// deadline of the others (time_point::max() for none).
    clock::time_point expired(clock::time_point now, std::vector<mux_elem*>& out) const;

    /// A request that restores the subscriptions made so far, or null.
    std::unique_ptr<request> restore_request(bool sharded = true) const;
    // Sharded channels the server dropped unasked since the last call (their slots moved to
    // other masters); they are not restored any more.
    std::size_t take_moved_shard_channels() noexcept {
        return std::exchange(moved_shard_channels_, std::size_t{0});
    }

    bool has_waiting() const noexcept { return !waiting_.empty(); }
    std::size_t waiting_count() const noexcept { return waiting_.size(); }
    std::size_t written_count() const noexcept { return written_.size(); }
    bool idle() const noexcept { return waiting_.empty() && written_.empty(); }
    std::size_t queued_bytes() const noexcept { return queued_bytes_; }
    /// Blocking commands written and unanswered, and until when they may block.
    std::size_t blocking_in_flight() const noexcept { return blocking_in_flight_; }
    clock::time_point blocked_until() const noexcept { return blocked_until_; }
    std::uint64_t replies() const noexcept { return replies_; }
    std::uint64_t unexpected_replies() const noexcept { return unexpected_; }
    std::uint64_t pushes_received() const noexcept { return pushes_received_; }
    const std::set<std::string>& channels() const noexcept { return channels_; }
    const std::set<std::string>& patterns() const noexcept { return patterns_; }
    const std::set<std::string>& shard_channels() const noexcept { return shard_channels_; }

    push_queue& pushes() noexcept { return pushes_; }
    const push_queue& pushes() const noexcept { return pushes_; }

private:
    std::set<std::string>& set_of(subscription_change::kind k);
    void track(const subscription_change& change);
    void plan_confirmations(mux_elem& e);
    // The element's next expected message is a subscription confirmation.
    static bool awaits_confirmation(const mux_elem& e) noexcept {
        return !e.confirmations_.empty() && e.confirmations_.front().replies_before == e.received_;
    }
    static bool finished(const mux_elem& e) noexcept {
        return e.received_ >= e.expected_ && e.confirmations_.empty();
    }
    // Deletes e when it is a tombstone (completed, cancelled or timed out, before it was
    // written) without a look at its request, which its caller may have freed already. True
    // when it did.
    static bool drop_tombstone(mux_elem* e) noexcept {
        if (!e->completed_) return false;
        delete e;
        return true;
    }
    bool confirm(std::span<const resp3::node_view> msg);
    void refuse(mux_elem& e, std::string_view text);
    void reply(mux_elem& e, std::span<const resp3::node_view> msg);
    void finish_front();

    std::deque<mux_elem*> waiting_;
    std::deque<mux_elem*> written_;
    std::size_t queued_bytes_ = 0;  // queued since the last prepare_write
    std::size_t blocking_in_flight_ = 0;
    clock::time_point blocked_until_ = clock::time_point::min();
    std::uint64_t replies_ = 0;
    std::uint64_t unexpected_ = 0;
    std::uint64_t pushes_received_ = 0;
    // Subscriptions to restore after a reconnect.
    std::set<std::string> channels_, patterns_, shard_channels_;
    std::size_t moved_shard_channels_ = 0;
    push_queue pushes_;
};

template <class Pred>
void multiplexer::fail_waiting_if(boost::system::error_code ec, Pred pred) {
    // waiting_ is settled before any completion runs: one run inline may queue more.
    std::vector<mux_elem*> failing;
    std::erase_if(waiting_, [&](mux_elem* e) {
        if (drop_tombstone(e)) return true;
        const bool fail = pred(*e);
        if (fail) failing.push_back(e);
        return fail;
    });
    for (auto* e : failing) {
        std::unique_ptr<mux_elem> owned(e);
        e->complete(ec);
    }
}

}  // namespace redcoord::detail
