// The one channel waiter: the results backend, the barrier, the fill lease's waiters and the
// leader watch subscribe through the session's push hub before they look at the key, so an
// announcement made after that look is heard; the only timer is the caller's deadline.
#pragma once

#include "core/session_impl.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace redcoord::detail {

// One subscription of a waiting operation. The SUBSCRIBE is queued when it is made, ahead of
// anything the waiter sends afterwards.
class channel_waiter {
public:
    channel_waiter(session_impl& s, const std::string& channel)
        : channel_waiter(s, std::vector<std::string>{channel}) {}
    // Listens on several channels at once: whatever is heard on any of them wakes the waiter.
    channel_waiter(session_impl& s, const std::vector<std::string>& channels)
        : s_(s), timer_(s.conn.get_executor()), st_(std::make_shared<state>()) {
        st_->timer = &timer_;
        for (const auto& channel : channels) {
            ids_.push_back(s.hub.add_wake_up(
                channel,
                [st = st_](const push_message& m) {
                    if (m.event == push_event::closed)
                        st->closed = true;
                    else if (m.is_gap())
                        st->gap = true;
                    else
                        st->payloads.push_back(m.payload);
                    if (st->timer) st->timer->cancel();
                },
                true));
        }
    }
    ~channel_waiter() {
        st_->timer = nullptr;
        for (auto id : ids_) s_.hub.remove(id);
    }
    channel_waiter(const channel_waiter&) = delete;
    channel_waiter& operator=(const channel_waiter&) = delete;

    // Forgets what was heard so far: the caller is about to read the key again.
    void clear() {
        st_->payloads.clear();
        st_->gap = false;
    }
    bool closed() const noexcept { return st_->closed; }
    // Ends a wait under way (or the next one) at once, as a message would.
    void wake() {
        st_->gap = true;
        timer_.cancel();
    }
    bool gap() const noexcept { return st_->gap; }

    // Until something is heard, the session closes, or `until` passes. Throws asio's
    // operation_aborted when the caller's cancellation reached the timer.
    asio::awaitable<void> wait_until(clock::time_point until) {
        if (!st_->payloads.empty() || st_->gap || st_->closed) co_return;
        timer_.expires_at(until);
        auto [ec] = co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
        (void)ec;
    }

    std::vector<std::string> take() { return std::exchange(st_->payloads, {}); }

private:
    struct state {
        asio::steady_timer* timer = nullptr;
        std::vector<std::string> payloads;
        bool gap = false;
        bool closed = false;
    };
    session_impl& s_;
    asio::steady_timer timer_;
    std::shared_ptr<state> st_;
    std::vector<std::uint64_t> ids_;
};

}  // namespace redcoord::detail
