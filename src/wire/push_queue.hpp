// The one bounded queue between the connection and whoever receives its pushes. No I/O.
#pragma once

#include <redcoord/connection.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

namespace redcoord::detail {

/// Holds at most `capacity` pushes. When a push arrives at a full queue the oldest is dropped
/// and the receiver is told, before the next push it takes, by an overflow event.
class push_queue {
public:
    explicit push_queue(std::size_t capacity) : capacity_(capacity ? capacity : 1) {}

    void set_capacity(std::size_t capacity) noexcept { capacity_ = capacity ? capacity : 1; }
    std::size_t capacity() const noexcept { return capacity_; }

    void push(push_message m) {
        q_.push_back(std::move(m));
        if (q_.size() > capacity_) {
            q_.pop_front();
            ++dropped_;
            overflow_ = true;
        }
    }

    /// Something to take: a push, or the overflow event.
    bool ready() const noexcept { return overflow_ || !q_.empty(); }
    std::size_t size() const noexcept { return q_.size(); }
    std::uint64_t dropped() const noexcept { return dropped_; }

    /// Takes the next push; an overflow event first when pushes were dropped. Needs ready().
    void take(push_message& out) {
        if (overflow_) {
            overflow_ = false;
            out = push_message{};
            out.event = push_event::overflow;
            return;
        }
        out = std::move(q_.front());
        q_.pop_front();
    }

    /// Takes everything there is (an overflow event first), appending to out; at most max.
    std::size_t take_all(std::vector<push_message>& out, std::size_t max = SIZE_MAX) {
        std::size_t n = 0;
        while (ready() && n < max) {
            take(out.emplace_back());
            ++n;
        }
        return n;
    }

private:
    std::deque<push_message> q_;
    std::size_t capacity_;
    std::uint64_t dropped_ = 0;
    bool overflow_ = false;
};

}  // namespace redcoord::detail
