#include "core/access.hpp"
#include "core/data_ops.hpp"
#include "wait/fill_once.hpp"

#include <redcoord/error.hpp>
#include <redcoord/idempotency.hpp>

namespace redcoord {

using boost::system::error_code;
using std::chrono::milliseconds;

idempotency::idempotency(session& s, idempotency_options opts) : session_(&s), opts_(opts) {
    detail::check_duration_option("default_ttl", opts_.default_ttl);
    detail::check_duration_option("in_flight_ttl", opts_.in_flight_ttl);
    detail::check_size_option("max_value_bytes", opts_.max_value_bytes);
}

// The same scheme as the cache's get-or-set: the stored result is the value, the in-flight
// marker is the filler's lease.
void idempotency::once_impl(std::string key, detail::json_factory make,
                            std::optional<milliseconds> ttl, once_handler handler) {
    auto s = detail::access::impl(*session_);
    diagnostics d;
    const std::string what = "idempotent operation '" + key + "'";
    error_code ec = detail::check_name("idempotency key", key, d);
    if (!ec && ttl) ec = detail::check_duration_arg(d, what, "ttl", *ttl);
    if (!ec && s->closed) ec = error::session_closed;
    if (ec)
        return detail::complete_later(*s, std::move(handler), detail::make_error(ec, d),
                                      boost::json::value());
    detail::fill_spec spec;
    spec.what = what;
    spec.key = s->keys.idempotency(key);
    spec.lease_suffix = "running";
    spec.channel_suffix = "done";
    spec.ttl = ttl.value_or(opts_.default_ttl);
    spec.lease_ttl = opts_.in_flight_ttl;
    spec.max_bytes = opts_.max_value_bytes;
    spec.limit_name = "max_value_bytes";
    auto& sr = *s;
    detail::launch_throwing(sr, detail::fill_once(std::move(s), std::move(spec), std::move(make)),
                            std::move(handler));
}

}  // namespace redcoord
