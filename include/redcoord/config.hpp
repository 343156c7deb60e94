// Connection configuration and the connection-string forms users already write.
#pragma once

#include <redcoord/diagnostics.hpp>

#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace redcoord {

/// One host:port. IPv6 literals are written with brackets in strings: "[::1]:6379".
struct endpoint {
    std::string host = "127.0.0.1";
    std::uint16_t port = 6379;
    friend bool operator==(const endpoint&, const endpoint&) = default;
};

/// Everything a connection needs to know. A plain aggregate: set the fields you need, or parse a
/// connection string with parse_config(). Durations of zero disable the feature they time,
/// where noted.
struct config {
    /// Servers to try, in order (a failover list). With service_name set these are sentinels.
    std::vector<endpoint> endpoints = {endpoint{}};

    /// Path of a Unix-domain socket; when set, endpoints are ignored.
    std::string unix_socket;

    /// Redis Sentinel: the monitored master's name (comma form `serviceName=`).
    std::string service_name;

    /// TLS (`ssl=true`, or the `rediss://` scheme).
    bool use_tls = false;
    /// Name sent for SNI and checked against the certificate; defaults to the host.
    std::string tls_server_name;
    /// PEM file of trusted CAs; empty means the system's default verify paths.
    std::string tls_ca_file;
    /// Verify the server's certificate and host name (`sslVerify=`).
    bool tls_verify = true;

    /// AUTH: an empty username means "default".
    std::string username;
    std::string password;

    /// SELECT after connecting (`defaultDatabase=`, `/2` in a URL, `?db=` for unix URLs).
    int database = 0;

    /// CLIENT SETNAME (`name=`); empty sends none.
    std::string client_name = "redcoord";

    /// Per connection attempt: resolve + connect + TLS + handshake (`connectTimeout=`, ms).
    std::chrono::milliseconds connect_timeout{5000};

    /// Default deadline of every request (`syncTimeout=` / `asyncTimeout=`, ms); zero = none.
    std::chrono::milliseconds request_timeout{5000};

    /// How many connection attempts async_run makes before its first success (`connectRetry=`).
    int connect_retry = 3;

    /// When true, async_run fails once connect_retry first attempts have failed. When false it
    /// keeps retrying in the background (`abortConnect=`).
    bool abort_connect = true;

    /// Requests made while disconnected fail at once with error::not_connected instead of
    /// waiting (up to their timeout) for the reconnect.
    bool fail_fast_when_disconnected = false;

    /// A PING is sent when no reply came for this long. When a PING has had this long to be
    /// answered and neither a reply nor a steady stream of bytes came meanwhile (a server that
    /// trickles a byte now and then is not making progress), the connection is declared dead
    /// and replaced (`keepAlive=`, s). Zero disables.
    std::chrono::milliseconds health_check_interval{2000};

    /// Reconnect backoff: capped exponential, with jitter.
    std::chrono::milliseconds reconnect_wait_min{50};
    std::chrono::milliseconds reconnect_wait_max{5000};

    /// Parser limits for anything the server sends.
    std::size_t max_nesting_depth = 32;
    std::size_t max_bulk_size = 512u * 1024 * 1024;
    std::size_t max_aggregate_size = 64u * 1024 * 1024;
    /// Memory one reply or push may take while it is parsed: its bytes plus about 64 per
    /// element. A bigger reply is read to its end and dropped, and its request fails with
    /// error::reply_too_large; the connection stays up.
    std::size_t max_reply_size = 512u * 1024 * 1024;

    /// Pushes buffered while nobody calls async_receive; past this the oldest are dropped
    /// and a gap event tells the receiver so.
    std::size_t max_pending_pushes = 100000;

    /// Side connections opened for blocking commands (BLPOP, XREAD BLOCK, ...; not WAIT).
    std::size_t max_blocking_connections = 8;

    /// Redis Cluster (`cluster=true`, or the `redis+cluster://` and `rediss+cluster://`
    /// schemes): endpoints are seeds, the slot map is read from them (CLUSTER SHARDS, else
    /// CLUSTER SLOTS) and every master gets one multiplexed connection. database must be 0;
    /// service_name and unix_socket do not apply.
    bool cluster = false;
    /// Cluster: the slot map is read again this often even when nothing redirected a command
    /// (`clusterRefresh=`, ms); zero refreshes only on redirections and lost nodes.
    std::chrono::milliseconds cluster_refresh_interval{10000};
    /// Cluster: redirections (MOVED, ASK) and retries (TRYAGAIN, CLUSTERDOWN) one command may
    /// take before it fails with error::too_many_redirects (`clusterMaxRedirects=`).
    int cluster_max_redirects = 16;
};

/// Parses any of these forms:
/// - the comma form: `host:port[,host:port...],password=...,ssl=true,connectTimeout=5000,...`
///   (keys are case-insensitive, as in the reference documents);
/// - the semicolon form: `server=localhost:6379;password=secret;ssl=true`. Every element is
///   `key=value` (a bare `host:port` is refused) and no value may contain ';'. `server=` takes
///   `host[:port]` or a comma list of them and may be repeated, each adding to the failover
///   list; `host=` and `port=` spell a single endpoint and cannot be mixed with `server=`. The
///   other keys (case-insensitive) are the comma form's, plus `username`, `database`, `db` and
///   `clientName`. The form is recognised by its first element: one ended by ';', or one
///   starting with `server=`, `host=` or `port=`. So in the comma form a ';' may appear in any
///   value but the first element's ("password=a;b,host" is read as the semicolon form and
///   refused);
/// - a URL: `redis://[user[:password]@]host[:port][/db][?key=value...]`, `rediss://...`,
///   `unix:///path/to/socket[?db=N&password=...]`. The host part may list several endpoints
///   separated by commas (`redis://a:7000,b:7001`), and the schemes `redis+cluster://` and
///   `rediss+cluster://` set cluster (as `?cluster=true` does).
/// An unknown key or a bad value sets ec to error::bad_config and names the key and value in
/// diag.client_message().
config parse_config(std::string_view text, boost::system::error_code& ec, diagnostics& diag);

/// As above; throws error_with_diagnostics.
config parse_config(std::string_view text);

}  // namespace redcoord
