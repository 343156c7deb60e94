// Typed events over Redis pub/sub (the reference's IDistributedEventBus): values published as
// JSON on `<prefix>events:<channel>`, received through callbacks or awaitable receivers with
// bounded queues.
#pragma once

#include <redcoord/detail/converting_handler.hpp>
#include <redcoord/diagnostics.hpp>
#include <redcoord/error.hpp>
#include <redcoord/session.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>
#include <boost/json/value_to.hpp>
#include <boost/system/error_code.hpp>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace redcoord {

/// What a receiver does when its queue is full and another event arrives.
enum class overflow_policy {
    /// Drop the oldest queued event; the receiver gets error::events_gap once, before the
    /// oldest event it still has.
    drop_oldest,
    /// Drop the receiver: it stops listening, gets the events already queued, then
    /// error::subscriber_overflow (and nothing after).
    drop_subscriber,
};

/// Defaults of an event bus's receivers.
struct event_options {
    /// Queue limit of a receiver made without one (10,000 events). Must be positive.
    std::size_t queue_limit = 10000;
    /// Overflow policy of a receiver made without one (drop_oldest).
    overflow_policy overflow = overflow_policy::drop_oldest;
};

/// One event: the channel it was published on, as given to async_publish (without the key
/// prefix; for a pattern subscription, the channel that matched), and its value.
/// An event that comes with an error has an empty channel and a value-initialized T, except
/// with error::decode_failed, where the channel is set.
template <class T>
struct event {
    std::string channel;
    T value{};
};

namespace detail {
class session_impl;
class receiver_state;

// A message's event as a T (an event<T>: channel and value), or null when it did not convert.
using typed_ptr = std::shared_ptr<const void>;

// A message as received, shared by every local subscriber: its JSON is parsed once, and
// converted once to each type its subscribers ask for.
struct event_message {
    std::string channel;           // relative to `<prefix>events:` (empty for other channels)
    boost::system::error_code ec;  // error::decode_failed when the payload is not JSON
    bool empty_payload = false;
    boost::json::value value;
    // The events made of it so far, one per type. Only touched while the message is
    // dispatched, on the session's executor: a receiver keeps its own pointer to the event it
    // was given (alive as long as the message is; the vector may grow, the events stay put).
    mutable std::vector<std::pair<const void*, typed_ptr>> typed;
};
using event_ptr = std::shared_ptr<const event_message>;
// One entry of a receiver's queue: the message and its event as the receiver's type, null
// when it did not convert (a null message marks a gap).
using event_entry = std::pair<event_ptr, const void*>;
// A subscriber as the library sees it: (error, message); message is null with an error.
using event_fn = std::function<void(boost::system::error_code, const event_ptr&)>;
using event_handler =
    boost::asio::any_completion_handler<void(boost::system::error_code, event_ptr, const void*)>;
using batch_handler = boost::asio::any_completion_handler<void(boost::system::error_code,
                                                               std::vector<event_entry>)>;

template <class T>
std::string to_json_text(const T& value) {
    if constexpr (std::is_same_v<T, boost::json::value>)
        return boost::json::serialize(value);
    else
        return boost::json::serialize(boost::json::value_from(value));
}

// value_to<T>, with any failure (a type mismatch, a throwing tag_invoke) as decode_failed.
template <class T>
boost::system::error_code json_to(const boost::json::value& v, T& out) noexcept {
    try {
        out = boost::json::value_to<T>(v);
        return {};
    } catch (const std::exception&) {
        return error::decode_failed;
    }
}

// m as an event<T>, converted on the first call for T and shared by the later ones; null
// when it does not convert. Only while m is dispatched (see event_message::typed); the event
// lives as long as m.
template <class T>
const event<T>* decoded(const event_message& m) {
    static const char tag = 0;
    for (const auto& [t, v] : m.typed)
        if (t == &tag) return static_cast<const event<T>*>(v.get());
    std::shared_ptr<event<T>> v;
    if (!m.ec) {
        v = std::make_shared<event<T>>();
        v->channel = m.channel;
        if (json_to(m.value, v->value)) v.reset();
    }
    m.typed.emplace_back(&tag, v);
    return v.get();
}
using decode_fn = const void* (*)(const event_message&);
template <class T>
const void* decoded_erased(const event_message& m) {
    return decoded<T>(m);
}

// The outcome for one subscriber: the shared event, or the error with the channel (when
// there is a message).
template <class T>
boost::system::error_code event_error(boost::system::error_code ec, const event_message* m,
                                      const event<T>* ev) {
    if (ec || !m) return ec;
    if (m->ec) return m->ec;
    return ev ? boost::system::error_code{} : boost::system::error_code(error::decode_failed);
}

// An event of the subscriber's own (a copy of the shared one).
template <class T>
std::tuple<boost::system::error_code, event<T>> to_event(boost::system::error_code ec,
                                                         const event_ptr& m, const void* value) {
    const auto* shared = static_cast<const event<T>*>(value);
    ec = event_error<T>(ec, m.get(), shared);
    if (shared) return {ec, *shared};
    event<T> ev;
    if (m) ev.channel = m->channel;
    return {ec, std::move(ev)};
}

void receiver_next(const std::shared_ptr<receiver_state>& st, event_handler handler);
void receiver_next_all(const std::shared_ptr<receiver_state>& st, batch_handler handler);
}  // namespace detail

/// A local subscription: unsubscribes when destroyed (or by unsubscribe()). The Redis
/// subscription of its channel is dropped when the session's last local subscriber of that
/// channel goes. Move-only. Thread safety: none; use it from the session's executor.
class subscription {
public:
    subscription() noexcept = default;
    /// For the primitives compiled in the library: listener `id` of the session's push hub.
    subscription(std::weak_ptr<detail::session_impl> s, std::uint64_t id) noexcept
        : session_(std::move(s)), id_(id) {}
    subscription(subscription&& o) noexcept
        : session_(std::move(o.session_)), id_(std::exchange(o.id_, 0)) {}
    subscription& operator=(subscription&& o) noexcept;
    subscription(const subscription&) = delete;
    subscription& operator=(const subscription&) = delete;
    ~subscription() { unsubscribe(); }

    /// Stops the callback; from within the callback itself too (it is not called again).
    void unsubscribe() noexcept;
    /// True until unsubscribed (or moved from).
    bool active() const noexcept { return id_ != 0; }
    explicit operator bool() const noexcept { return active(); }

private:
    std::weak_ptr<detail::session_impl> session_;
    std::uint64_t id_ = 0;
};

/// What receiver<T> does that does not depend on T. Move-only; destroying it (or close())
/// unsubscribes.
class receiver_base {
public:
    receiver_base() noexcept = default;
    explicit receiver_base(std::shared_ptr<detail::receiver_state> st) noexcept
        : state_(std::move(st)) {}
    receiver_base(receiver_base&&) noexcept = default;
    receiver_base& operator=(receiver_base&& o) noexcept;
    ~receiver_base();

    /// Unsubscribes and discards the queue. A pending async_receive, and every later one,
    /// completes with asio::error::operation_aborted.
    void close() noexcept;
    /// False after close(), after drop_subscriber dropped it, or when its session has closed.
    bool is_open() const noexcept;
    /// Events (and gap marks) waiting to be received; never above queue_limit().
    std::size_t queue_size() const noexcept;
    std::size_t queue_limit() const noexcept;
    overflow_policy policy() const noexcept;
    /// Events dropped by the overflow policy so far.
    std::uint64_t dropped() const noexcept;
    /// The channel or pattern, as given to make_receiver (without the prefix).
    const std::string& name() const noexcept;

protected:
    std::shared_ptr<detail::receiver_state> state_;
};

/// An awaitable subscriber with its own bounded queue (see overflow_policy): a slow receiver
/// neither grows memory without bound nor holds up the other subscribers. Made by
/// event_bus::make_receiver; T must be default-constructible and convertible with
/// boost::json::value_to.
template <class T>
class receiver : public receiver_base {
public:
    receiver() noexcept = default;
    explicit receiver(std::shared_ptr<detail::receiver_state> st) noexcept
        : receiver_base(std::move(st)) {}

    /// Takes the next event, waiting for one when the queue is empty.
    ///
    /// Completion signature: void(error_code, event<T>). Errors: error::events_gap (pushes may
    /// have been missed: the connection reconnected or fell behind, or drop_oldest dropped
    /// events); error::decode_failed (the payload is not JSON or does not convert to T; the
    /// receiver stays open); error::subscriber_overflow (dropped by drop_subscriber; final);
    /// error::session_closed (final, after the queued events); asio::error::operation_aborted
    /// (cancelled, or closed); error::invalid_argument (another receive is pending).
    ///
    /// Cancellation: any type; the operation completes with operation_aborted and no event is
    /// lost by it (events stay queued). Completes through the handler's associated executor
    /// (default: the session's), never inside this call. One receive at a time.
    template <class Token = boost::asio::deferred_t>
    auto async_receive(Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, event<T>)>(
            [](auto handler, std::shared_ptr<detail::receiver_state> st) {
                detail::receiver_next(
                    st, detail::converting_handler(
                            std::move(handler), [](boost::system::error_code ec,
                                                   detail::event_ptr m, const void* v) {
                                return detail::to_event<T>(ec, m, v);
                            }));
            },
            token, state_);
    }

    /// Takes every event queued (waiting for one when there is none), appended to out in
    /// order: one resume for many events, which is how a receiver keeps up with a busy
    /// channel.
    ///
    /// Completion signature: void(error_code). The events appended come before the error:
    /// a gap or the end is reported by the next call when events come before it, on its own
    /// (nothing appended) otherwise. An event whose payload does not decode is appended with
    /// its channel, and the call completes with error::decode_failed after it. Otherwise as
    /// async_receive (one receive at a time, of either kind).
    template <class Token = boost::asio::deferred_t>
    auto async_receive_all(std::vector<event<T>>& out, Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
            [](auto handler, std::shared_ptr<detail::receiver_state> st,
               std::vector<event<T>>* out) {
                detail::receiver_next_all(
                    st, detail::converting_handler(
                            std::move(handler),
                            [out](boost::system::error_code ec,
                                  std::vector<detail::event_entry> entries) {
                                out->reserve(out->size() + entries.size());
                                for (const auto& [m, v] : entries) {
                                    if (v) {  // a copy of the event decoded for all receivers
                                        out->push_back(*static_cast<const event<T>*>(v));
                                        continue;
                                    }
                                    out->emplace_back().channel = m->channel;
                                    ec = detail::event_error<T>({}, m.get(), nullptr);
                                }
                                return std::tuple<boost::system::error_code>(ec);
                            }));
            },
            token, state_, &out);
    }
};

/// Publishes and subscribes to typed events on one session. A channel `name` is the Redis
/// channel `<prefix>events:<name>`; values travel as JSON text (boost::json::value_from /
/// value_to, so user types take part through tag_invoke).
///
/// Each channel (and pattern) is subscribed once per session, whatever the number of local
/// subscribers, on the session's connection; each message's JSON is parsed once for all of
/// them. After a reconnect (or when the connection's push queue overflowed) every subscriber
/// is told with error::events_gap: messages published meanwhile are lost, as pub/sub goes.
///
/// Ordering: messages of one channel reach each subscriber in publish order.
///
/// The bus is a light handle; several may share a session. Thread safety: none; use it from
/// the session's executor.
class event_bus {
public:
    /// Throws error_with_diagnostics (error::bad_config) naming a bad option.
    explicit event_bus(session& s, event_options opts = {});

    session& get_session() const noexcept { return *session_; }
    const event_options& options() const noexcept { return opts_; }

    /// Publishes value (as JSON) on channel. Completion signature:
    /// void(error_code, std::int64_t receivers): the number of Redis subscriptions (clients)
    /// that got it, as PUBLISH counts. error::invalid_argument for an empty channel; connection
    /// errors as connection::async_exec. The value is serialized by this call.
    /// Cancellation: as connection::async_exec (a publish not yet written is dropped).
    template <class T, class Token = boost::asio::deferred_t>
    auto async_publish(std::string channel, const T& value, Token&& token = {}) {
        return boost::asio::async_initiate<Token,
                                           void(boost::system::error_code, std::int64_t)>(
            [this](auto handler, std::string channel, std::string payload) {
                publish_impl(std::move(channel), std::move(payload), std::move(handler));
            },
            token, std::move(channel), detail::to_json_text(value));
    }

    /// As above, for a JSON value as it is.
    template <class Token = boost::asio::deferred_t>
    auto async_publish(std::string channel, const boost::json::value& value,
                       Token&& token = {}) {
        return async_publish<boost::json::value>(std::move(channel), value,
                                                 std::forward<Token>(token));
    }

    /// Calls callback(error_code, const event<T>&) for each message on channel, on the
    /// session's executor, inside the delivery of the message (it must not block or throw).
    /// Errors it gets: error::events_gap, error::decode_failed (the event names the channel;
    /// the subscription goes on), error::session_closed (last call). It may subscribe and
    /// unsubscribe (itself included).
    ///
    /// The SUBSCRIBE is queued on the connection before anything sent after this call, so a
    /// publish made afterwards on the same connection is heard. Throws error_with_diagnostics
    /// (error::invalid_argument) for an empty channel.
    template <class T, class F>
    subscription subscribe(std::string channel, F callback) {
        return subscribe_impl(std::move(channel), false, make_fn<T>(std::move(callback)));
    }

    /// As subscribe, for every channel whose name matches the glob pattern (PSUBSCRIBE; the
    /// prefix is matched literally). The event names the channel that matched.
    template <class T, class F>
    subscription psubscribe(std::string pattern, F callback) {
        return subscribe_impl(std::move(pattern), true, make_fn<T>(std::move(callback)));
    }

    /// A receiver of channel, with the bus's default queue limit and policy. Subscribed as
    /// subscribe() is. Throws error_with_diagnostics (error::invalid_argument) for an empty
    /// channel or a zero queue limit.
    template <class T>
    receiver<T> make_receiver(std::string channel) {
        return make_receiver<T>(std::move(channel), opts_.queue_limit, opts_.overflow);
    }
    template <class T>
    receiver<T> make_receiver(std::string channel, std::size_t queue_limit,
                              overflow_policy policy) {
        return receiver<T>(
            receiver_impl(std::move(channel), false, queue_limit, policy, &detail::decoded_erased<T>));
    }

    /// A receiver of every channel matching the glob pattern (see psubscribe).
    template <class T>
    receiver<T> make_pattern_receiver(std::string pattern) {
        return make_pattern_receiver<T>(std::move(pattern), opts_.queue_limit, opts_.overflow);
    }
    template <class T>
    receiver<T> make_pattern_receiver(std::string pattern, std::size_t queue_limit,
                                      overflow_policy policy) {
        return receiver<T>(
            receiver_impl(std::move(pattern), true, queue_limit, policy, &detail::decoded_erased<T>));
    }

private:
    using publish_handler = boost::asio::any_completion_handler<void(
        boost::system::error_code, std::int64_t)>;

    template <class T, class F>
    static detail::event_fn make_fn(F callback) {
        return [cb = std::move(callback)](boost::system::error_code ec,
                                          const detail::event_ptr& m) mutable {
            // Every callback of the message gets the one event decoded for all of them.
            const event<T>* shared = m && !ec ? detail::decoded<T>(*m) : nullptr;
            ec = detail::event_error<T>(ec, m.get(), shared);
            if (shared) {
                cb(ec, *shared);
                return;
            }
            event<T> ev;
            if (m) ev.channel = m->channel;
            cb(ec, static_cast<const event<T>&>(ev));
        };
    }

    void publish_impl(std::string channel, std::string payload, publish_handler handler);
    subscription subscribe_impl(std::string name, bool pattern, detail::event_fn fn);
    std::shared_ptr<detail::receiver_state> receiver_impl(std::string name, bool pattern,
                                                          std::size_t queue_limit,
                                                          overflow_policy policy,
                                                          detail::decode_fn decode);

    session* session_;
    event_options opts_;
};

}  // namespace redcoord
