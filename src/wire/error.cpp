#include <redcoord/error.hpp>

namespace redcoord {
namespace {

class category final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "redcoord"; }

    std::string message(int ev) const override {
        switch (static_cast<error>(ev)) {
            case error::protocol_error: return "malformed RESP3 data from the server";
            case error::depth_exceeded: return "RESP3 aggregates nested deeper than the limit";
            case error::size_exceeded: return "RESP3 string or aggregate larger than the limit";
            case error::unexpected_reply: return "a reply arrived that no request was waiting for";
            case error::reply_too_large: return "the reply is larger than config.max_reply_size";
            case error::unexpected_type: return "the reply's type does not fit the C++ type";
            case error::unexpected_null: return "null reply for a type that is not std::optional";
            case error::not_a_number: return "the reply is not a number of the requested type";
            case error::incompatible_size: return "the reply's size does not fit the C++ type";
            case error::server_error: return "the server replied with an error";
            case error::noscript: return "the server does not have the script (NOSCRIPT)";
            case error::auth_failed: return "authentication failed (wrong password or user)";
            case error::handshake_failed: return "the connection handshake was refused";
            case error::not_connected: return "not connected (fail-fast request)";
            case error::connection_lost: return "the connection was lost before the reply";
            case error::timeout: return "the request timed out";
            case error::connect_timeout: return "connecting timed out";
            case error::resolve_timeout: return "resolving the host timed out";
            case error::health_check_failed: return "the server did not answer the health check";
            case error::run_not_started: return "the connection is not running (async_run)";
            case error::sentinel_unavailable: return "no sentinel named a master for the service";
            case error::cluster_unavailable: return "the Redis Cluster's slot map is unavailable";
            case error::cross_slot: return "keys in different cluster slots";
            case error::too_many_redirects: return "too many cluster redirections";
            case error::bad_config: return "invalid configuration";
            case error::invalid_argument: return "invalid argument";
            case error::not_held: return "not held by this owner (released, expired or taken)";
            case error::lease_lost: return "the lease was lost (expired or taken) while held";
            case error::acquire_timeout: return "not acquired before the deadline";
            case error::session_closed: return "the session is closed";
            case error::stale_fencing_token:
                return "fenced write rejected: a newer fencing token has been used";
            case error::quorum_lost:
                return "stepped down: fewer live nodes than the quorum requires";
            case error::evicting_server:
                return "refused: the server's maxmemory-policy may evict lease keys";
            case error::replicas_not_acknowledged:
                return "fewer replicas than required acknowledged the write (WAIT) in time";
            case error::events_gap: return "pushes may have been missed (reconnect or overflow)";
            case error::subscriber_overflow: return "the subscriber fell behind and was dropped";
            case error::decode_failed:
                return "the payload is not valid JSON or does not convert to the type";
            case error::circuit_open:
                return "the circuit breaker is open: the call was not made";
            case error::corrupt_data:
                return "the stored data is corrupt or truncated (it does not decompress)";
            case error::dependency_failed: return "a dependency of the job did not succeed";
        }
        return "unknown redcoord error";
    }
};

}  // namespace

const boost::system::error_category& error_category() noexcept {
    static const category instance;
    return instance;
}

}  // namespace redcoord
