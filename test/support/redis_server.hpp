// A throwaway redis-server per test: its own temp dir, its own free port, stopped by PID.
//
// Independent of the redcoord library on purpose, so a bug in the library can never make the
// fixture lie about the server's state.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

namespace redcoord::test {

struct redis_options {
    /// requirepass for the default user; empty means no password.
    std::string password{};

    struct acl_user {
        std::string name, password;
    };
    /// An extra ACL user with all permissions: "user NAME on >PASS ~* &* +@all".
    std::optional<acl_user> acl{};

    /// Also listen with TLS on tls_port(), with a self-signed certificate (CN=localhost,
    /// subjectAltName IP:127.0.0.1 and DNS:localhost) made at start; client certs not required.
    bool tls = false;

    /// Also listen on the Unix-domain socket unix_path() (permissions 700).
    bool unix_socket = false;

    /// enable-debug-command yes (DEBUG SLEEP, DEBUG PROTOCOL, ...).
    bool enable_debug = false;

    /// Extra redis.conf lines, appended after the generated ones (so they win).
    std::vector<std::string> extra_config{};

    /// One redis-server whatever the test topology (see test_topology_is_cluster): set by
    /// redis_cluster for its own nodes.
    bool single_server = false;
};

/// True when REDCOORD_TEST_TOPOLOGY=cluster: a redis_server made by a test (options without
/// single_server) is then a three-master Redis Cluster (no replicas) instead of one
/// redis-server, so that the same tests run on both. Unset or "single": one redis-server.
/// Any other value throws std::runtime_error.
bool test_topology_is_cluster();

class redis_cluster;

/// Sends "PING\r\n" over a fresh TCP connection to 127.0.0.1:port and returns the first reply
/// line without its "\r\n" ("+PONG", "-NOAUTH ..."), or nullopt when nothing arrived in time
/// (refused, paused, hung). Plain POSIX sockets: usable to probe a server behind the library's
/// back.
std::optional<std::string> raw_ping(std::uint16_t port, std::chrono::milliseconds timeout);

/// Owns one redis-server child process. Not thread-safe; create and destroy it on the test's
/// main thread (the child is tied to the creating thread's lifetime, see redis_server.cpp).
///
/// On the cluster topology (test_topology_is_cluster(), unless options.single_server) it owns
/// a redis_cluster of three masters instead: port() and dir() are master 0's, cli() follows
/// redirections (redis-cli -c), password, acl and extra_config (and enable_debug) apply to
/// every node, and what needs one process (stop, start, restart, kill, pause, resume, pid, tls,
/// unix_socket) throws std::runtime_error asking for the tag [single_server], which keeps a
/// test off that topology.
class redis_server {
  public:
    /// Starts the server and waits until it answers; throws std::runtime_error with the tail
    /// of the server's log on failure.
    explicit redis_server(redis_options opts = {});

    /// Stops the server (SIGCONT if paused, SIGTERM, SIGKILL after 5 s) and removes dir().
    ~redis_server();

    redis_server(const redis_server&) = delete;
    redis_server& operator=(const redis_server&) = delete;

    /// Graceful stop by PID; keeps the port(s) and dir() for start().
    void stop();
    /// Starts again on the same port(s). Data does not survive: persistence is off.
    /// Does nothing when already running.
    void start();
    /// stop() then start().
    void restart();
    /// SIGKILL, no graceful shutdown (a crash, as seen by clients), then reaps the child.
    void kill();
    /// SIGSTOP: the server keeps its sockets but answers nothing (a hung server).
    void pause();
    /// SIGCONT after pause().
    void resume();

    bool running() const;
    /// The child's PID, or -1 when not running.
    pid_t pid() const;

    /// Plain TCP port on 127.0.0.1 (always enabled).
    std::uint16_t port() const;
    /// TLS port on 127.0.0.1; 0 unless options.tls.
    std::uint16_t tls_port() const;
    /// Unix-domain socket path; empty unless options.unix_socket.
    const std::string& unix_path() const;
    /// The server's temp dir (redis.conf, redis.log, certificates).
    const std::string& dir() const;
    /// The certificate PEM when options.tls (self-signed, so it is also the CA); else empty.
    std::string ca_file() const;
    const redis_options& options() const;

    /// The cluster standing in for the server on the cluster topology; nullptr on one server.
    const redis_cluster* cluster() const;
    redis_cluster* cluster();
    /// Throws std::runtime_error, naming `what`, when this is a cluster: for what only one
    /// redis-server can do (a proxy in front of its port, a replica of it, ...).
    void require_single_server(std::string_view what) const;

    /// Runs redis-cli against the plain port (authenticated as the default user when a
    /// password is set; on a cluster with -c, against master 0, so keyless commands such as
    /// INFO or KEYS see that node only) and returns its stdout without the trailing newline. Throws when
    /// redis-cli exits non-zero. Note that redis-cli exits 0 on error replies: they come back
    /// as text such as "ERR unknown command ...".
    std::string cli(const std::vector<std::string>& args) const;
    /// As cli(), over TLS on tls_port(), trusting ca_file().
    std::string cli_tls(const std::vector<std::string>& args) const;
    /// As cli(), over the Unix-domain socket unix_path().
    std::string cli_unix(const std::vector<std::string>& args) const;

  private:
    void first_start();
    bool try_start();
    void write_config() const;
    void make_certificate() const;
    void spawn();
    bool wait_ready();
    bool exited() const;
    void reap();
    std::string failure_report(const std::string& what) const;
    std::string run_cli(std::vector<std::string> connection,
                        const std::vector<std::string>& args) const;

    redis_options opts_;
    std::unique_ptr<redis_cluster> cluster_;
    std::string dir_;
    std::string unix_path_;
    std::uint16_t port_ = 0;
    std::uint16_t tls_port_ = 0;
    pid_t pid_ = -1;
    bool paused_ = false;
};

/// A Redis Sentinel child process (`redis-server sentinel.conf --sentinel`) on its own free
/// port and temp dir, monitoring one master on 127.0.0.1 with quorum 1. It names the master
/// (SENTINEL get-master-addr-by-name) as soon as it answers PING. Same rules as redis_server:
/// create and destroy it on the test's main thread; stopped by PID.
class sentinel_server {
  public:
    /// Starts the sentinel and waits until it answers; throws std::runtime_error with the tail
    /// of its log on failure.
    sentinel_server(std::string service_name, std::uint16_t master_port);
    /// Stops the sentinel (SIGTERM, SIGKILL after 5 s) and removes dir().
    ~sentinel_server();

    sentinel_server(const sentinel_server&) = delete;
    sentinel_server& operator=(const sentinel_server&) = delete;

    /// The sentinel's TCP port on 127.0.0.1.
    std::uint16_t port() const;
    /// The child's PID, or -1 when not running.
    pid_t pid() const;
    /// The sentinel's temp dir (sentinel.conf, which the sentinel rewrites, and sentinel.log).
    const std::string& dir() const;

  private:
    bool try_start();
    void stop();

    std::string service_name_;
    std::uint16_t master_port_;
    std::string dir_;
    std::uint16_t port_ = 0;
    pid_t pid_ = -1;
};

}  // namespace redcoord::test
