#include "wire/multiplexer.hpp"
#include "wire/time_math.hpp"

#include <redcoord/error.hpp>

#include <algorithm>

namespace redcoord::detail {

namespace {

using boost::system::error_code;
using kind = subscription_change::kind;

bool adds(kind k) { return k == kind::subscribe || k == kind::psubscribe || k == kind::ssubscribe; }

// The push kind that confirms a subscription command: "subscribe" for SUBSCRIBE, ...
std::string_view confirmation_kind(kind k) {
    switch (k) {
        case kind::subscribe: return "subscribe";
        case kind::unsubscribe: return "unsubscribe";
        case kind::psubscribe: return "psubscribe";
        case kind::punsubscribe: return "punsubscribe";
        case kind::ssubscribe: return "ssubscribe";
        case kind::sunsubscribe: return "sunsubscribe";
    }
    return {};
}

// A push as the receiver gets it: its kind, then channel/pattern/payload by kind.
push_message to_push(std::span<const resp3::node_view> msg) {
    push_message out;
    out.nodes.reserve(msg.size());
    for (const auto& n : msg) out.nodes.emplace_back(n);
    std::string_view elems[4];
    std::size_t count = 0;
    std::size_t i = first_value(msg) + 1;
    while (i < msg.size() && count < 4) {
        const auto& n = msg[i];
        elems[count++] = resp3::is_aggregate(n.data_type) ? std::string_view{} : n.value;
        skip_value(msg, i);
    }
    out.kind = elems[0];
    if (out.kind == "pmessage") {
        out.pattern = elems[1];
        out.channel = elems[2];
        out.payload = elems[3];
    } else if (out.kind == "psubscribe" || out.kind == "punsubscribe") {
        out.pattern = elems[1];
        out.payload = elems[2];
    } else {
        out.channel = elems[1];
        out.payload = elems[2];
    }
    return out;
}

}  // namespace

multiplexer::~multiplexer() {
    fail_all(boost::asio::error::operation_aborted);
}

void multiplexer::add(std::unique_ptr<mux_elem> e) {
    queued_bytes_ += e->req().payload().size();
    waiting_.push_back(e.release());
}

std::vector<std::unique_ptr<mux_elem>> multiplexer::take_waiting() {
    std::vector<std::unique_ptr<mux_elem>> out;
    for (auto* e : waiting_)
        if (!drop_tombstone(e)) out.emplace_back(e);
    waiting_.clear();
    queued_bytes_ = 0;  // (nothing is queued any more)
    return out;
}

void multiplexer::add_front(std::unique_ptr<mux_elem> e) {
    queued_bytes_ += e->req().payload().size();
    waiting_.push_front(e.release());
}

std::set<std::string>& multiplexer::set_of(kind k) {
    switch (k) {
        case kind::subscribe:
        case kind::unsubscribe: return channels_;
        case kind::psubscribe:
        case kind::punsubscribe: return patterns_;
        default: return shard_channels_;
    }
}

void multiplexer::track(const subscription_change& change) {
    auto& set = set_of(change.what);
    if (adds(change.what))
        set.insert(change.channels.begin(), change.channels.end());
    else if (change.channels.empty())
        set.clear();
    else
        for (const auto& c : change.channels) set.erase(c);
}

// Each subscription command is confirmed by one push per channel it names; one naming no
// channel ("unsubscribe from all") by one per channel it had (one, with a null channel, when
// it had none). A refusal is one error reply instead.
void multiplexer::plan_confirmations(mux_elem& e) {
    const auto& changes = e.req().subscription_changes();
    if (changes.empty()) return;
    e.confirmations_.clear();
    e.confirmations_.reserve(changes.size());
    for (std::size_t i = 0; i < changes.size(); ++i) {
        const auto& change = changes[i];
        mux_elem::confirmation c;
        c.replies_before = change.replies_before;
        c.change = i;
        c.what = change.what;
        if (change.channels.empty()) {
            c.count = std::max<std::size_t>(set_of(change.what).size(), 1);
        } else {
            c.channels = change.channels;
            std::sort(c.channels.begin(), c.channels.end());
            c.channels.erase(std::unique(c.channels.begin(), c.channels.end()), c.channels.end());
        }
        e.confirmations_.push_back(std::move(c));
        track(change);
    }
}

std::size_t multiplexer::prepare_write(std::string& buf) {
    std::size_t commands = 0;
    queued_bytes_ = 0;
    while (!waiting_.empty()) {
        mux_elem* e = waiting_.front();
        waiting_.pop_front();
        if (drop_tombstone(e)) continue;
        buf.append(e->req().payload());
        commands += e->req().commands();
        plan_confirmations(*e);
        e->st_ = mux_elem::state::written;
        written_.push_back(e);
        if (e->blocking) {
            ++blocking_in_flight_;
            const auto block = e->req().blocking_time();
            const auto until = block ? sat_add(clock::now(), *block) : clock::time_point::max();
            blocked_until_ = std::max(blocked_until_, until);
        }
    }
    return commands;
}

message_kind multiplexer::consume(std::span<const resp3::node_view> msg, std::size_t bytes) {
    const auto& head = msg[first_value(msg)];
    if (head.data_type == resp3::type::push) {
        const bool confirmed = confirm(msg);
        ++pushes_received_;
        auto p = to_push(msg);
        if (!confirmed && p.kind == "sunsubscribe") {
            // Unrequested: a cluster moved the channel's slot to another master. Not restored
            // here after a reconnect; the owner is told (take_moved_shard_channels).
            shard_channels_.erase(p.channel);
            ++moved_shard_channels_;
        }
        pushes_.push(std::move(p));
        return confirmed ? message_kind::confirmation : message_kind::push;
    }
    if (written_.empty()) {
        ++unexpected_;
        return message_kind::unexpected;
    }
    mux_elem& e = *written_.front();
    e.bytes_ += bytes;
    if (awaits_confirmation(e)) {
        // A subscription command answers with pushes, or with one error when refused.
        if (!resp3::is_error(head.data_type)) {
            ++unexpected_;
            return message_kind::unexpected;
        }
        refuse(e, head.value);
    } else {
        reply(e, msg);
    }
    ++replies_;
    if (finished(e)) finish_front();
    return message_kind::reply;
}

message_kind multiplexer::consume_discarded(std::size_t bytes, error_code ec,
                                            std::string_view why) {
    if (written_.empty() || awaits_confirmation(*written_.front())) {
        ++unexpected_;
        return message_kind::unexpected;
    }
    mux_elem& e = *written_.front();
    e.bytes_ += bytes;
    if (!e.first_error_) {
        e.first_error_ = ec;
        if (e.diag_ && !e.completed_) e.diag_->set_client_message(why);
    }
    ++e.received_;
    ++replies_;
    if (finished(e)) finish_front();
    return message_kind::reply;
}

// The oldest written request awaits a confirmation this push gives: one channel fewer to
// confirm. Pushes that confirm nothing awaited (a cluster's unrequested sunsubscribe when a
// slot moves) are plain pushes.
bool multiplexer::confirm(std::span<const resp3::node_view> msg) {
    if (written_.empty() || !awaits_confirmation(*written_.front())) return false;
    mux_elem& e = *written_.front();
    auto& c = e.confirmations_.front();
    std::size_t i = first_value(msg);
    const auto end = i + 1 + msg[i].aggregate_size;  // scalars only in a confirmation
    if (msg[i].aggregate_size < 2 || end > msg.size()) return false;
    ++i;
    if (msg[i].value != confirmation_kind(c.what)) return false;
    const auto channel = msg[i + 1];
    if (c.channels.empty()) {
        if (--c.count > 0) return true;
    } else {
        auto it = std::lower_bound(c.channels.begin(), c.channels.end(), channel.value);
        if (it == c.channels.end() || *it != channel.value) return false;
        c.channels.erase(it);
        if (!c.channels.empty()) return true;
    }
    e.confirmations_.erase(e.confirmations_.begin());
    if (finished(e)) finish_front();
    return true;
}

// The server refused a subscription command (ACL NOPERM, a cluster's MOVED): the request
// fails with the server's text, and what it would have subscribed is not restored later.
void multiplexer::refuse(mux_elem& e, std::string_view text) {
    auto& c = e.confirmations_.front();
    if (adds(c.what)) {
        auto& set = set_of(c.what);
        for (const auto& ch : e.req().subscription_changes()[c.change].channels) set.erase(ch);
    }
    if (!e.first_error_) {
        e.first_error_ = error::server_error;
        if (e.diag_ && !e.completed_) e.diag_->set_server_message(text);
    }
    e.confirmations_.erase(e.confirmations_.begin());
}

void store_reply(const any_adapter& adapter, std::size_t index,
                 std::span<const resp3::node_view> msg, diagnostics* diag,
                 error_code& first_error) {
    const auto& head = msg[first_value(msg)];
    error_code ec;
    if (resp3::is_error(head.data_type)) {
        ec = starts_with(head.value, "NOSCRIPT") ? error::noscript : error::server_error;
        if (adapter.wants_errors()) {
            error_code ignored;
            adapter(index, msg, ignored);
        }
        if (!first_error && diag) diag->set_server_message(head.value);
    } else {
        adapter(index, msg, ec);
        if (ec && !first_error && diag) {
            // An error inside an aggregate (e.g. one command of EXEC) carries its own text.
            auto err = std::find_if(msg.begin(), msg.end(), [](const auto& n) {
                return resp3::is_error(n.data_type);
            });
            if (err != msg.end())
                diag->set_server_message(err->value);
            else
                diag->set_client_message("reply " + std::to_string(index) + " (" +
                                         std::string(resp3::to_string(head.data_type)) +
                                         "): " + ec.message());
        }
    }
    if (ec && !first_error) first_error = ec;
}

void multiplexer::reply(mux_elem& e, std::span<const resp3::node_view> msg) {
    if (!e.completed_) store_reply(e.adapter_, e.received_, msg, e.diag_, e.first_error_);
    ++e.received_;
}

void multiplexer::finish_front() {
    std::unique_ptr<mux_elem> e(written_.front());
    written_.pop_front();
    if (e->blocking && --blocking_in_flight_ == 0) blocked_until_ = clock::time_point::min();
    e->complete(e->first_error_, true);
}

void multiplexer::on_connection_lost(error_code ec) {
    auto items = std::move(written_);
    written_.clear();
    blocking_in_flight_ = 0;
    blocked_until_ = clock::time_point::min();
    std::vector<mux_elem*> again;
    std::vector<std::unique_ptr<mux_elem>> done;
    for (auto* e : items) {
        if (e->retry && e->received_ == 0 && !e->completed_ && ec == error::connection_lost) {
            e->st_ = mux_elem::state::waiting;
            e->confirmations_.clear();
            again.push_back(e);
            continue;
        }
        done.emplace_back(e);
    }
    // Retried requests go first, in their original order.
    waiting_.insert(waiting_.begin(), again.begin(), again.end());
    for (auto& e : done) {
        // Only confirmations missing: the subscriptions are restored after the reconnect.
        const bool confirmations_only = e->received_ >= e->expected_ && !e->first_error_ &&
                                        ec == error::connection_lost;
        e->complete(confirmations_only ? error_code{} : ec);
    }
}

void multiplexer::fail_waiting(error_code ec) {
    fail_waiting_if(ec, [](const mux_elem&) { return true; });
}

clock::time_point multiplexer::expired(clock::time_point now, std::vector<mux_elem*>& out) const {
    auto next = clock::time_point::max();
    for (const auto* queue : {&waiting_, &written_}) {
        for (auto* e : *queue) {
            if (e->completed_) continue;
            if (e->deadline <= now)
                out.push_back(e);
            else
                next = std::min(next, e->deadline);
        }
    }
    return next;
}

std::unique_ptr<request> multiplexer::restore_request(bool sharded) const {
    if (channels_.empty() && patterns_.empty() && (!sharded || shard_channels_.empty()))
        return nullptr;
    auto req = std::make_unique<request>();
    if (!channels_.empty()) req->push("SUBSCRIBE", channels_);
    if (!patterns_.empty()) req->push("PSUBSCRIBE", patterns_);
    // One SSUBSCRIBE per channel: a cluster refuses one whose channels span slots.
    if (sharded)
        for (const auto& ch : shard_channels_) req->push("SSUBSCRIBE", ch);
    return req;
}

}  // namespace redcoord::detail
