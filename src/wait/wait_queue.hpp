// The local wait queues of a session: the waiters of one resource in this process form a
// queue, so that one of them at a time asks Redis (the head) while the others wait their turn,
// and a contended resource costs no burst of scripts per release. A queue listens on the
// resource's channel once for all its waiters. Kept per session as a session_part, so that the
// session (core) knows nothing of waiting beyond "tell them when you close".
#pragma once

#include "core/session_impl.hpp"
#include "wait/wait_fsm.hpp"

#include <boost/asio/steady_timer.hpp>

#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>

namespace redcoord::detail {

// The queue's view of a waiter: its machine, and the timer its driver sleeps on.
struct queued_waiter {
    asio::steady_timer* timer = nullptr;
    wait_fsm* fsm = nullptr;
    bool woken = false;  // by a release since the driver last looked (for tracing)
    void wake() {
        woken = true;
        fsm->wake();
        timer->cancel();
    }
    void rearm(clock::time_point hint) {
        fsm->rearm(hint);
        timer->cancel();
    }
};

struct wait_queue {
    std::string key;
    std::string channel;
    bool wake_all = false;  // every waiter attempts on a release (fair locks, readers)
    std::list<queued_waiter*> waiters;
    std::uint64_t listener = 0;
    // The mutex's local handoff (locks/lock.cpp): owners whose release we handed over, whose
    // push is then not a wake-up; the run of handoffs, bounded by handoff_bounds; and after a
    // yield, until when releases' pushes do not wake us.
    std::unordered_multiset<std::string> own_releases;
    unsigned streak = 0;
    clock::time_point streak_start{};
    clock::time_point yield_until{};

    void wake_head() {
        if (wake_all) {
            for (auto* w : waiters) w->wake();
        } else if (!waiters.empty()) {
            waiters.front()->wake();
        }
    }
};

class wait_queues final : public session_part {
public:
    explicit wait_queues(push_hub& hub) : hub_(hub) {}

    // The session's queues, made on first use.
    static wait_queues& of(session_impl& s) {
        if (!s.waits) s.waits = std::make_unique<wait_queues>(s.hub);
        return static_cast<wait_queues&>(*s.waits);
    }

    std::shared_ptr<wait_queue> find(const std::string& key) const {
        auto it = queues_.find(key);
        return it == queues_.end() ? nullptr : it->second;
    }

    std::shared_ptr<wait_queue> queue_for(const std::string& key, const std::string& channel,
                                          bool wake_all) {
        auto& q = queues_[key];
        if (!q) {
            q = std::make_shared<wait_queue>();
            q->key = key;
            q->channel = channel;
            q->wake_all = wake_all;
        }
        return q;
    }

    void drop_if_idle(const std::shared_ptr<wait_queue>& q) {
        if (!q->waiters.empty()) return;
        if (q->listener) {
            hub_.remove(q->listener);
            q->listener = 0;
        }
        q->own_releases.clear();
        // Another acquisition of the same key still holds the queue (its first attempt is
        // out): keep it findable, or that one would wait in a queue that local releases never
        // hand over to, and each release would be won again by the releasing coroutine's next
        // acquisition.
        if (q.use_count() > 2) return;
        if (auto it = queues_.find(q->key); it != queues_.end() && it->second == q)
            queues_.erase(it);
    }

    // Every waiter wakes and finds the session closed.
    void on_close() override {
        for (auto& [k, q] : queues_)
            for (auto* w : q->waiters) w->wake();
    }

private:
    push_hub& hub_;
    std::unordered_map<std::string, std::shared_ptr<wait_queue>> queues_;
};

}  // namespace redcoord::detail
