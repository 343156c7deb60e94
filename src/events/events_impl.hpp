// What events and shared state share inside the library: a pushed message parsed once for all
// local subscribers, and the hub listener that turns pushes into subscriber calls.
#pragma once

#include "core/session_impl.hpp"

#include <redcoord/events.hpp>

namespace redcoord::detail {

// The message being dispatched, parsed on the first call and shared by the later ones (the
// hub's per-message memo).
event_ptr message_of(session_impl& s, const push_message& m);

// A hub listener (add it with notify_close): messages as (success, message), gaps as
// events_gap, the session's end as session_closed.
push_hub::listener make_listener(session_impl& s, event_fn fn);

}  // namespace redcoord::detail
