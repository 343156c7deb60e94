#include "core/access.hpp"
#include "events/events_impl.hpp"

#include <redcoord/error.hpp>
#include <redcoord/events.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/json/parser.hpp>

#include <deque>

namespace redcoord {

namespace asio = boost::asio;
using boost::system::error_code;
using detail::event_message;
using detail::event_ptr;
using detail::session_impl;

namespace detail {

namespace {

void parse_payload(event_message& out, std::string_view payload) {
    // One parser per thread, reused: its temporary storage is not allocated per message.
    thread_local unsigned char temp[4096];
    thread_local boost::json::parser parser({}, {}, temp, sizeof temp);
    parser.reset();
    error_code ec;
    parser.write(payload, ec);
    if (ec)
        out.ec = error::decode_failed;
    else
        out.value = parser.release();
}


}  // namespace

event_ptr message_of(session_impl& s, const push_message& m) {
    static const char tag = 0;
    auto& slot = s.hub.memo(&tag);
    if (!slot) {
        auto msg = std::make_shared<event_message>();
        msg->channel = s.keys.channel_name(m.channel);
        msg->empty_payload = m.payload.empty();
        parse_payload(*msg, m.payload);
        slot = std::move(msg);
    }
    return std::static_pointer_cast<const event_message>(slot);
}

push_hub::listener make_listener(session_impl& s, event_fn fn) {
    return [s = &s, fn = std::move(fn)](const push_message& m) {
        if (m.is_gap())
            fn(error::events_gap, nullptr);
        else if (m.event == push_event::closed)
            fn(error::session_closed, nullptr);
        else
            fn({}, message_of(*s, m));
    };
}

// A receiver's queue. An entry with a null message marks a gap; consecutive gaps are one.
class receiver_state : public std::enable_shared_from_this<receiver_state> {
public:
    std::weak_ptr<session_impl> session;
    asio::any_io_executor ex;
    std::string name;
    std::uint64_t listener = 0;
    std::size_t limit = 1;
    overflow_policy policy = overflow_policy::drop_oldest;
    decode_fn decode = nullptr;
    std::deque<event_entry> queue;
    bool lost = false;  // drop_oldest dropped the events before the front: a gap comes first
    error_code end;     // set: nothing more arrives; given once the queue is drained
    std::uint64_t dropped = 0;
    event_handler waiter;       // async_receive
    batch_handler batch_waiter;  // async_receive_all

    void on_push(session_impl& s, const push_message& m) {
        if (m.is_gap()) {
            put({});
        } else if (m.event == push_event::closed) {
            finish(error::session_closed);
        } else {
            auto msg = message_of(s, m);
            // Decoded here, on the session's executor, once for all receivers of this type.
            const void* value = decode && !msg->ec ? decode(*msg) : nullptr;
            put({std::move(msg), value});
        }
    }

    bool waiting() const noexcept { return waiter || batch_waiter; }

    void put(event_entry e) {
        if (end) return;
        const bool gap = !e.first;
        if (queue.empty() && !lost && waiter) {
            complete(gap ? error_code(error::events_gap) : error_code{}, std::move(e), false);
            return;
        }
        const bool gap_told = queue.empty() ? lost : !queue.back().first;
        if (gap && gap_told) return;
        if (queue.size() >= limit) {
            if (policy == overflow_policy::drop_subscriber) {
                if (!gap) ++dropped;
                finish(error::subscriber_overflow);
                return;
            }
            if (queue.front().first) ++dropped;
            queue.pop_front();
            lost = true;
        }
        queue.push_back(std::move(e));
        // A batch taker is completed once per turn of the executor, with all that came meanwhile.
        if (batch_waiter && !batch_posted) {
            batch_posted = true;
            asio::post(ex, [w = weak_from_this()] {
                if (auto st = w.lock()) st->deliver_batch();
            });
        }
    }

    // The error the front of the queue gives, when it gives one (a gap, or the end).
    error_code front_error() {
        if (lost) {
            lost = false;
            skip_gaps();
            return error::events_gap;
        }
        if (!queue.empty() && !queue.front().first) {
            skip_gaps();
            return error::events_gap;
        }
        if (queue.empty() && end) return end;
        return {};
    }

    void take(event_handler h) {
        if (waiting()) return post(std::move(h), error::invalid_argument, {});
        if (auto ec = front_error()) return post(std::move(h), ec, {});
        if (!queue.empty()) {
            auto e = std::move(queue.front());
            queue.pop_front();
            return post(std::move(h), {}, std::move(e));
        }
        // Not move assignment: Boost 1.81's any_completion_handler recurses forever in it.
        event_handler(std::move(h)).swap(waiter);
        watch_cancellation(waiter);
    }

    void take_all(batch_handler h) {
        if (waiting()) return post_batch(std::move(h), error::invalid_argument, {});
        if (auto ec = front_error()) return post_batch(std::move(h), ec, {});
        if (!queue.empty()) return post_batch(std::move(h), {}, take_events());
        batch_handler(std::move(h)).swap(batch_waiter);
        watch_cancellation(batch_waiter);
    }

    // Stops listening; the queue is still received, then `why`.
    void finish(error_code why) {
        if (end) return;
        end = why;
        if (listener) {
            if (auto s = session.lock()) s->hub.remove(listener);
            listener = 0;
        }
        if (queue.empty() && !lost) complete(end, {}, false);
    }

    void close() {
        queue.clear();
        lost = false;
        finish(asio::error::operation_aborted);
        end = asio::error::operation_aborted;
        complete(end, {}, false);
    }

    // Completes whichever receive is waiting: with `e` (single), or an error (either).
    void complete(error_code ec, event_entry e, bool from_slot) {
        if (waiter) {
            auto h = std::move(waiter);
            waiter = nullptr;
            if (!from_slot) clear_slot(h);
            post(std::move(h), ec, std::move(e));
        } else if (batch_waiter) {
            auto h = std::move(batch_waiter);
            batch_waiter = nullptr;
            if (!from_slot) clear_slot(h);
            post_batch(std::move(h), ec, {});
        }
    }

private:
    bool batch_posted = false;

    // Events from the front of the queue up to the first gap, and any decode failure (it is
    // appended, the batch ends after it).
    std::vector<event_entry> take_events() {
        std::vector<event_entry> out;
        out.reserve(queue.size());
        while (!queue.empty() && queue.front().first) {
            out.push_back(std::move(queue.front()));
            queue.pop_front();
            if (!out.back().second) break;  // does not decode: reported after what came before
        }
        return out;
    }

    void deliver_batch() {
        batch_posted = false;
        if (!batch_waiter) return;
        error_code ec = front_error();
        std::vector<event_entry> events;
        if (!ec) {
            if (queue.empty()) return;
            events = take_events();
        }
        auto h = std::move(batch_waiter);
        batch_waiter = nullptr;
        clear_slot(h);
        post_batch(std::move(h), ec, std::move(events));
    }

    template <class Handler>
    void watch_cancellation(Handler& h) {
        auto slot = asio::get_associated_cancellation_slot(h);
        if (slot.is_connected()) {
            slot.assign([w = weak_from_this()](asio::cancellation_type) {
                if (auto st = w.lock()) st->complete(asio::error::operation_aborted, {}, true);
            });
        }
    }
    template <class Handler>
    static void clear_slot(Handler& h) {
        // Not from inside the slot's own handler: clearing would destroy it while it runs.
        auto slot = asio::get_associated_cancellation_slot(h);
        if (slot.is_connected()) slot.clear();
    }
    void skip_gaps() {
        while (!queue.empty() && !queue.front().first) queue.pop_front();
    }
    void post(event_handler h, error_code ec, event_entry e) {
        // Never inline: the receiver may be completed from inside the hub's dispatch.
        asio::post(ex, asio::append(std::move(h), ec, std::move(e.first), e.second));
    }
    void post_batch(batch_handler h, error_code ec, std::vector<event_entry> events) {
        asio::post(ex, asio::append(std::move(h), ec, std::move(events)));
    }
};

void receiver_next(const std::shared_ptr<receiver_state>& st, event_handler handler) {
    if (!st) {
        // A moved-from receiver: there is no session executor to go through.
        std::move(handler)(error_code(asio::error::operation_aborted), event_ptr(),
                           static_cast<const void*>(nullptr));
        return;
    }
    st->take(std::move(handler));
}

void receiver_next_all(const std::shared_ptr<receiver_state>& st, batch_handler handler) {
    if (!st) {
        std::move(handler)(error_code(asio::error::operation_aborted),
                           std::vector<event_entry>());
        return;
    }
    st->take_all(std::move(handler));
}

}  // namespace detail

// ---- subscription ---------------------------------------------------------------------------

subscription& subscription::operator=(subscription&& o) noexcept {
    if (this != &o) {
        unsubscribe();
        session_ = std::move(o.session_);
        id_ = std::exchange(o.id_, 0);
    }
    return *this;
}

void subscription::unsubscribe() noexcept {
    if (id_ == 0) return;
    if (auto s = session_.lock()) s->hub.remove(id_);
    id_ = 0;
    session_.reset();
}

// ---- receiver_base --------------------------------------------------------------------------

receiver_base& receiver_base::operator=(receiver_base&& o) noexcept {
    if (this != &o) {
        close();
        state_ = std::move(o.state_);
    }
    return *this;
}

receiver_base::~receiver_base() { close(); }

void receiver_base::close() noexcept {
    if (state_) state_->close();
}

bool receiver_base::is_open() const noexcept { return state_ && !state_->end; }
std::size_t receiver_base::queue_size() const noexcept {
    return state_ ? state_->queue.size() : 0;
}
std::size_t receiver_base::queue_limit() const noexcept { return state_ ? state_->limit : 0; }
overflow_policy receiver_base::policy() const noexcept {
    return state_ ? state_->policy : overflow_policy::drop_oldest;
}
std::uint64_t receiver_base::dropped() const noexcept { return state_ ? state_->dropped : 0; }
const std::string& receiver_base::name() const noexcept {
    static const std::string none;
    return state_ ? state_->name : none;
}

// ---- event_bus ------------------------------------------------------------------------------

namespace {

std::string redis_channel(const keyspace& keys, std::string_view name, bool pattern) {
    return pattern ? detail::glob_escape(keys.channel("")) + std::string(name)
                   : keys.channel(name);
}

void check_or_throw(std::string_view field, std::string_view value) {
    diagnostics diag;
    if (auto ec = detail::check_name(field, value, diag)) throw error_with_diagnostics(ec, diag);
}

}  // namespace

event_bus::event_bus(session& s, event_options opts) : session_(&s), opts_(opts) {
    if (opts_.queue_limit == 0) {
        diagnostics diag;
        diag.set_client_message("queue_limit: 0 is not positive");
        throw error_with_diagnostics(error::bad_config, diag);
    }
}

void event_bus::publish_impl(std::string channel, std::string payload,
                             publish_handler handler) {
    auto s = detail::access::impl(*session_);
    const auto ex = s->conn.get_executor();
    error_code ec;
    if (channel.empty())
        ec = error::invalid_argument;
    else if (s->closed)
        ec = error::session_closed;
    if (ec) {
        asio::post(ex, asio::append(std::move(handler), ec, std::int64_t(0)));
        return;
    }
    struct op {
        explicit op(publish_handler h) : handler(std::move(h)) {}
        request req;
        std::int64_t receivers = 0;
        publish_handler handler;
    };
    auto slot = asio::get_associated_cancellation_slot(handler);
    auto o = std::make_shared<op>(std::move(handler));
    o->req.push("PUBLISH", s->keys.channel(channel), payload);
    s->conn.async_exec(o->req, o->receivers,
                       asio::bind_cancellation_slot(slot, [o, ex](error_code ec, std::size_t) {
                           asio::dispatch(ex, asio::append(std::move(o->handler), ec,
                                                           o->receivers));
                       }));
}

subscription event_bus::subscribe_impl(std::string name, bool pattern, detail::event_fn fn) {
    check_or_throw(pattern ? "pattern" : "channel", name);
    auto s = detail::access::impl(*session_);
    if (s->closed) {
        asio::post(s->conn.get_executor(),
                   [fn = std::move(fn)] { fn(error::session_closed, nullptr); });
        return {};
    }
    const auto id = s->hub.add(redis_channel(s->keys, name, pattern), pattern,
                               detail::make_listener(*s, std::move(fn)), true);
    return subscription(s, id);
}

std::shared_ptr<detail::receiver_state> event_bus::receiver_impl(std::string name, bool pattern,
                                                                 std::size_t queue_limit,
                                                                 overflow_policy policy,
                                                                 detail::decode_fn decode) {
    check_or_throw(pattern ? "pattern" : "channel", name);
    if (queue_limit == 0) {
        diagnostics diag;
        diag.set_client_message("receiver of '" + name + "': queue_limit 0 is not positive");
        throw error_with_diagnostics(error::invalid_argument, diag);
    }
    auto s = detail::access::impl(*session_);
    auto st = std::make_shared<detail::receiver_state>();
    st->session = s;
    st->ex = s->conn.get_executor();
    st->name = name;
    st->limit = queue_limit;
    st->policy = policy;
    st->decode = decode;
    if (s->closed) {
        st->end = error::session_closed;
        return st;
    }
    st->listener = s->hub.add(
        redis_channel(s->keys, name, pattern), pattern,
        [st, sp = s.get()](const push_message& m) { st->on_push(*sp, m); }, true);
    return st;
}

}  // namespace redcoord
