// Making a value once cluster-wide, shared by the cache's get-or-set and idempotent
// operations: the first caller that misses takes a short lease (renewed by the watchdog while
// it works), makes the value and stores it; the others wait for it by push.
#pragma once

#include "core/session_impl.hpp"

#include <redcoord/detail/json_bridge.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>

namespace redcoord::detail {

struct fill_spec {
    std::string what;                  // "cache 'users'", for messages
    std::string key;                   // where the value lives (JSON text)
    std::string lease_suffix;          // companion of key holding the filler's lease
    std::string channel_suffix;        // companion channel the filler announces on
    std::optional<milliseconds> ttl;   // PX of the stored value; none: persistent
    milliseconds lease_ttl{0};         // the filler's lease, renewed while it works
    std::size_t max_bytes = 0;         // limit of the stored JSON text
    const char* limit_name = "";       // the option that sets it, for messages
};

// Returns the value at spec.key or, when there is none, makes it with make() and stores it;
// make() runs once cluster-wide among the callers that miss together.
//
// The filler holds a lease on companion(key, lease_suffix) (a string with its owner token,
// renewed by the watchdog); when it has stored the value it publishes it on
// companion(key, channel_suffix) ("v:" + JSON text for small values, "r" for large ones, which
// the waiters then read). A waiter subscribes before it reads the key
// again, so a value stored after that read is heard; a fallback timer bounded by the filler
// lease's remaining TTL covers a lost message and a filler that died. When make() throws, the
// filler releases the lease, then publishes "f": a waiter takes over; the exception reaches
// the filler's caller. When the filler's lease is lost while make() runs, make() is cancelled
// (terminal) and error::lease_lost is thrown.
//
// Throws error_with_diagnostics on errors (connection, decode_failed, invalid_argument when the
// value is over max_bytes, session_closed), asio's operation_aborted when cancelled (terminal,
// partial or total; a filler cancelled inside make() releases its lease and lets a waiter take
// over).
boost::asio::awaitable<boost::json::value> fill_once(std::shared_ptr<session_impl> s,
                                                     fill_spec spec, json_factory make);

// Serializes v into out; error::invalid_argument (diag names what and the limit) when the text
// is longer than max_bytes.
error_code serialize_limited(const boost::json::value& v, std::size_t max_bytes,
                             std::string_view limit_name, const std::string& what,
                             std::string& out, diagnostics& diag);

// Parses stored JSON text; error::decode_failed (diag names what) when it is not JSON.
error_code parse_stored(std::string_view text, const std::string& what, boost::json::value& out,
                        diagnostics& diag);

}  // namespace redcoord::detail
