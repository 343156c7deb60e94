// A session's trace emitter: the application's sink (session_options::trace) and the library's
// own observers (metrics), each with the categories it wants. Off, an emission point costs one
// test of a mask.
#pragma once

#include <redcoord/trace.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <string_view>

namespace redcoord::detail {

// The categories of trace_options' switches.
enum trace_category : unsigned {
    trace_locks = 1,         // lock_tracing
    trace_elections = 2,     // leader_election_logging
    trace_coordination = 4,  // coordination_events
    trace_queues = 8,        // queue_events
    trace_all = 15,
};

class tracer {
  public:
    using id = std::uint64_t;

    // The application's sink and switches (replaces the ones set before).
    void configure(const trace_options& o);
    // A further observer of the given categories (trace_category bits); remove() ends it.
    id add(unsigned categories, trace_sink sink);
    void remove(id observer) noexcept;

    bool on(unsigned categories) const noexcept { return (mask_ & categories) != 0; }
    // Hands e to every observer of its category; fills e.time when unset.
    void emit(unsigned category, trace_event& e) const;

  private:
    struct observer {
        unsigned categories;
        trace_sink sink;
    };
    void recompute() noexcept;

    std::map<id, observer> observers_;  // id 0: the application's
    id next_ = 1;
    unsigned mask_ = 0;
};

struct lease_state;
class session_impl;

// The category of a lease's events: leaderships are elections, everything else locks.
inline unsigned lease_category(std::string_view primitive) noexcept {
    return primitive == "leadership" ? trace_elections : trace_locks;
}

// Emits kind for lease l (resource, owner, fencing token, node) when its category is on. For
// a leadership, lock_acquired, lock_released and lease_lost become election_won,
// election_resigned and election_lost.
void trace_lease(session_impl& s, trace_kind kind, const lease_state& l,
                 std::chrono::microseconds duration = {}, std::string_view detail = {});

// Emits kind for a wait on the resource `name` of the given primitive, not (or not yet) held.
void trace_wait(session_impl& s, trace_kind kind, std::string_view primitive, std::string_view name,
                std::chrono::microseconds duration = {});

template <class Rep, class Period>
std::chrono::microseconds micros(std::chrono::duration<Rep, Period> d) noexcept {
    return std::chrono::duration_cast<std::chrono::microseconds>(d);
}

}  // namespace redcoord::detail
