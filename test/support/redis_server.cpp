#include "redis_server.hpp"
#include "redis_cluster.hpp"
#include "text_files.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <utility>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace redcoord::test {

namespace {

using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto ready_deadline = 10s;
constexpr auto stop_grace = 5s;
constexpr int start_attempts = 5;
constexpr std::size_t log_tail_lines = 40;

/// Closes a file descriptor on scope exit.
class fd_guard {
  public:
    explicit fd_guard(int fd = -1) : fd_(fd) {}
    ~fd_guard() { reset(); }
    fd_guard(const fd_guard&) = delete;
    fd_guard& operator=(const fd_guard&) = delete;

    int get() const { return fd_; }
    void reset() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

  private:
    int fd_;
};

[[noreturn]] void throw_errno(const std::string& what) {
    throw std::runtime_error(what + ": " + std::strerror(errno));
}

sockaddr_in loopback(std::uint16_t port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
}

/// Asks the kernel for `count` distinct free ports on 127.0.0.1. All sockets stay bound until
/// every port is known, so the ports differ; another process may still grab one before
/// redis-server binds it, which the caller handles by retrying.
std::vector<std::uint16_t> pick_free_ports(std::size_t count) {
    std::vector<std::unique_ptr<fd_guard>> sockets;
    std::vector<std::uint16_t> ports;
    for (std::size_t i = 0; i < count; ++i) {
        auto sock = std::make_unique<fd_guard>(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (sock->get() < 0) throw_errno("socket");
        sockaddr_in addr = loopback(0);
        if (::bind(sock->get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
            throw_errno("bind 127.0.0.1:0");
        }
        socklen_t len = sizeof addr;
        if (::getsockname(sock->get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
            throw_errno("getsockname");
        }
        ports.push_back(ntohs(addr.sin_port));
        sockets.push_back(std::move(sock));
    }
    return ports;
}

/// Waits until `fd` is ready for `events` or `deadline` passes.
bool wait_for(int fd, short events, steady::time_point deadline) {
    for (;;) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - steady::now());
        pollfd p{fd, events, 0};
        const int n = ::poll(&p, 1, static_cast<int>(std::max<long>(left.count(), 0)));
        if (n > 0) return true;
        if (n == 0) return false;
        if (errno != EINTR) return false;
    }
}

using text::last_lines;
using text::quote;
using text::read_text_file;

std::string strip_trailing_newline(std::string text) {
    if (!text.empty() && text.back() == '\n') text.pop_back();
    return text;
}

/// Resolves a program in PATH before fork(), so the child needs no allocation before exec and
/// a missing program gets a clear message instead of an exit code.
std::string find_program(const std::string& name) {
    const char* path = std::getenv("PATH");
    std::istringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
    for (std::string dir; std::getline(dirs, dir, ':');) {
        const std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
        if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    throw std::runtime_error(name + " not found in PATH");
}

/// argv as exec wants it; `storage` owns the strings.
std::vector<char*> make_argv(std::vector<std::string>& storage) {
    std::vector<char*> argv;
    for (auto& arg : storage) argv.push_back(arg.data());
    argv.push_back(nullptr);
    return argv;
}

/// Code for a freshly forked child: only async-signal-safe calls until exec.
void prepare_child(pid_t parent) {
    // Tie the child's life to ours: a test process that crashes must not leave a server
    // behind. The signal fires when the thread that forked exits.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // the parent died before prctl took effect
    // Blocked signals survive exec; the server must see SIGTERM.
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
}

[[noreturn]] void exec_or_die(const std::vector<char*>& argv) {
    ::execv(argv[0], argv.data());
    constexpr char msg[] = "exec failed\n";
    [[maybe_unused]] auto ignored = ::write(STDERR_FILENO, msg, sizeof msg - 1);
    ::_exit(127);
}

struct process_result {
    int exit_code = 0;
    std::string out;
    std::string err;
};

/// Drains both pipes until the child closes them. Reading both at once avoids a deadlock
/// when the child fills one pipe while we block on the other.
void drain_pipes(int out_fd, int err_fd, process_result& result) {
    pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
    std::string* sinks[2] = {&result.out, &result.err};
    int open_count = 2;
    while (open_count > 0) {
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            throw_errno("poll");
        }
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || fds[i].revents == 0) continue;
            char buf[4096];
            const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
            if (n > 0) {
                sinks[i]->append(buf, static_cast<std::size_t>(n));
            } else if (n == 0 || errno != EINTR) {
                fds[i].fd = -1;  // poll ignores negative descriptors
                --open_count;
            }
        }
    }
}

int wait_exit_code(pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) throw_errno("waitpid");
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

/// Runs a short command to completion, capturing stdout and stderr.
process_result run_process(std::vector<std::string> args) {
    args[0] = find_program(args[0]);
    const auto argv = make_argv(args);
    int out_pipe[2], err_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) != 0) throw_errno("pipe2");
    fd_guard out_read(out_pipe[0]), out_write(out_pipe[1]);
    if (::pipe2(err_pipe, O_CLOEXEC) != 0) throw_errno("pipe2");
    fd_guard err_read(err_pipe[0]), err_write(err_pipe[1]);

    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) throw_errno("fork");
    if (pid == 0) {
        prepare_child(parent);
        ::dup2(out_write.get(), STDOUT_FILENO);
        ::dup2(err_write.get(), STDERR_FILENO);
        exec_or_die(argv);
    }
    out_write.reset();
    err_write.reset();
    process_result result;
    drain_pipes(out_read.get(), err_read.get(), result);
    result.exit_code = wait_exit_code(pid);
    return result;
}

std::string make_temp_dir() {
    std::string path = "/tmp/redcoord-test-XXXXXX";
    if (::mkdtemp(path.data()) == nullptr) throw_errno("mkdtemp");
    return path;
}

/// Reaps `pid` if it exits within `timeout`.
bool wait_exit_for(pid_t pid, std::chrono::milliseconds timeout) {
    const auto deadline = steady::now() + timeout;
    for (;;) {
        int status = 0;
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD)) return true;
        if (steady::now() >= deadline) return false;
        std::this_thread::sleep_for(10ms);
    }
}

/// Starts `args` as a child with stdout and stderr going to `output_path` (errors before a
/// log file is open, such as a bad config line, are kept there).
pid_t spawn_child(std::vector<std::string> args, const std::string& output_path) {
    args[0] = find_program(args[0]);
    const auto argv = make_argv(args);
    fd_guard output(::open(output_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (output.get() < 0) throw_errno("open " + output_path);

    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) throw_errno("fork");
    if (pid == 0) {
        prepare_child(parent);
        ::dup2(output.get(), STDOUT_FILENO);
        ::dup2(output.get(), STDERR_FILENO);
        exec_or_die(argv);
    }
    return pid;
}

/// Whether the child has terminated, without reaping it.
bool child_exited(pid_t pid) {
    if (pid <= 0) return true;
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
        return true;  // ECHILD: not our child any more
    }
    return info.si_pid != 0;
}

void reap_child(pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
}

/// SIGTERM, then SIGKILL if the child has not exited within stop_grace; reaps it.
void terminate_child(pid_t pid) {
    ::kill(pid, SIGTERM);
    if (!wait_exit_for(pid, stop_grace)) {
        ::kill(pid, SIGKILL);
        reap_child(pid);
    }
}

}  // namespace

std::optional<std::string> raw_ping(std::uint16_t port, std::chrono::milliseconds timeout) {
    const auto deadline = steady::now() + timeout;
    fd_guard sock(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (sock.get() < 0) return std::nullopt;

    // Non-blocking connect: a server whose backlog is full (paused for long) must not hang us.
    sockaddr_in addr = loopback(port);
    if (::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 &&
        errno != EINPROGRESS) {
        return std::nullopt;
    }
    if (!wait_for(sock.get(), POLLOUT, deadline)) return std::nullopt;
    int error = 0;
    socklen_t len = sizeof error;
    if (::getsockopt(sock.get(), SOL_SOCKET, SO_ERROR, &error, &len) != 0 || error != 0) {
        return std::nullopt;
    }

    constexpr std::string_view ping = "PING\r\n";
    if (::send(sock.get(), ping.data(), ping.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(ping.size())) {
        return std::nullopt;
    }

    std::string reply;
    while (reply.find("\r\n") == std::string::npos) {
        if (!wait_for(sock.get(), POLLIN, deadline)) return std::nullopt;
        char buf[256];
        const ssize_t n = ::recv(sock.get(), buf, sizeof buf, 0);
        if (n > 0) {
            reply.append(buf, static_cast<std::size_t>(n));
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            return std::nullopt;
        }
    }
    return reply.substr(0, reply.find("\r\n"));
}

namespace {

/// What a test that needs one redis-server gets on the cluster topology.
[[noreturn]] void throw_needs_single_server(std::string_view what) {
    throw std::runtime_error(
        std::string(what) +
        ": this test runs on a Redis Cluster (REDCOORD_TEST_TOPOLOGY=cluster) but needs a single "
        "redis-server; tag it [single_server] to keep it off the cluster");
}

}  // namespace

bool test_topology_is_cluster() {
    static const bool cluster = [] {
        const char* env = std::getenv("REDCOORD_TEST_TOPOLOGY");
        const std::string_view value = env != nullptr ? env : "";
        if (value.empty() || value == "single") return false;
        if (value == "cluster") return true;
        throw std::runtime_error("REDCOORD_TEST_TOPOLOGY must be \"single\" or \"cluster\", not \"" +
                                 std::string(value) + "\"");
    }();
    return cluster;
}

redis_server::redis_server(redis_options opts) : opts_(std::move(opts)) {
    if (!opts_.single_server && test_topology_is_cluster()) {
        if (opts_.tls) throw_needs_single_server("redis_options::tls");
        if (opts_.unix_socket) throw_needs_single_server("redis_options::unix_socket");
        redis_cluster_options copts;
        copts.masters = 3;
        copts.replicas_per_master = 0;
        copts.password = opts_.password;
        if (opts_.acl) {
            copts.extra_config.push_back("user " + quote(opts_.acl->name) + " on " +
                                         quote(">" + opts_.acl->password) + " ~* &* +@all");
        }
        if (opts_.enable_debug) copts.extra_config.push_back("enable-debug-command yes");
        copts.extra_config.insert(copts.extra_config.end(), opts_.extra_config.begin(),
                                  opts_.extra_config.end());
        cluster_ = std::make_unique<redis_cluster>(std::move(copts));
        return;
    }
    dir_ = make_temp_dir();
    try {
        if (opts_.unix_socket) unix_path_ = dir_ + "/redis.sock";
        if (opts_.tls) make_certificate();
        first_start();
    } catch (...) {
        // No destructor runs for a half-built object: clean up here.
        kill();
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
        throw;
    }
}

redis_server::~redis_server() {
    if (cluster_) {
        cluster_.reset();  // stops every node and removes their dirs
        return;
    }
    try {
        stop();
    } catch (...) {
        // A destructor must not throw; the child is killed with us anyway (PDEATHSIG).
    }
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
}

void redis_server::first_start() {
    // The free port may be taken between picking and redis-server binding it, e.g. by a test
    // running in parallel: then pick new ports and try again.
    for (int attempt = 0; attempt < start_attempts; ++attempt) {
        const auto ports = pick_free_ports(opts_.tls ? 2 : 1);
        port_ = ports[0];
        tls_port_ = opts_.tls ? ports[1] : 0;
        std::filesystem::remove(dir_ + "/redis.log");  // so the log speaks of this attempt only
        if (try_start()) return;
    }
    throw std::runtime_error(failure_report("found no free port after several attempts"));
}

void redis_server::start() {
    if (cluster_) throw_needs_single_server("redis_server::start");
    if (running()) return;
    reap();  // a server that died by itself is still a zombie until reaped
    if (!try_start()) throw std::runtime_error(failure_report("could not bind its port again"));
}

void redis_server::restart() {
    if (cluster_) throw_needs_single_server("redis_server::restart");
    stop();
    start();
}

/// Returns false when the server exited because a port was taken; throws on other failures.
bool redis_server::try_start() {
    write_config();
    spawn();
    if (wait_ready()) return true;
    if (!exited()) {  // alive but silent: hung, or not our server on that port
        const auto report = failure_report("did not answer PING within 10 s");
        kill();
        throw std::runtime_error(report);
    }
    reap();
    const auto log = read_text_file(dir_ + "/redis.log");
    if (log.find("Address already in use") != std::string::npos) return false;
    throw std::runtime_error(failure_report("exited during startup"));
}

void redis_server::write_config() const {
    std::ostringstream conf;
    conf << "bind 127.0.0.1\n"
         << "port " << port_ << "\n"
         << "protected-mode no\n"
         << "daemonize no\n"
         << "dir " << quote(dir_) << "\n"
         << "logfile " << quote(dir_ + "/redis.log") << "\n"
         << "save \"\"\n"
         << "appendonly no\n";
    if (!opts_.password.empty()) conf << "requirepass " << quote(opts_.password) << "\n";
    if (opts_.acl) {
        conf << "user " << quote(opts_.acl->name) << " on " << quote(">" + opts_.acl->password)
             << " ~* &* +@all\n";
    }
    if (opts_.tls) {
        conf << "tls-port " << tls_port_ << "\n"
             << "tls-cert-file " << quote(dir_ + "/cert.pem") << "\n"
             << "tls-key-file " << quote(dir_ + "/key.pem") << "\n"
             << "tls-ca-cert-file " << quote(dir_ + "/cert.pem") << "\n"
             << "tls-auth-clients no\n";
    }
    if (opts_.unix_socket) {
        conf << "unixsocket " << quote(unix_path_) << "\n"
             << "unixsocketperm 700\n";
    }
    if (opts_.enable_debug) conf << "enable-debug-command yes\n";
    for (const auto& line : opts_.extra_config) conf << line << "\n";

    std::ofstream out(dir_ + "/redis.conf", std::ios::trunc);
    out << conf.str();
    out.close();
    if (!out) throw std::runtime_error("cannot write " + dir_ + "/redis.conf");
}

void redis_server::make_certificate() const {
    // Self-signed, so the certificate is its own CA: clients trust it through ca_file().
    const auto result =
        run_process({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                     "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                     "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                     "-keyout", dir_ + "/key.pem", "-out", dir_ + "/cert.pem"});
    if (result.exit_code != 0) {
        throw std::runtime_error("openssl could not make the test certificate (exit " +
                                 std::to_string(result.exit_code) + "):\n" + result.err);
    }
}

void redis_server::spawn() {
    pid_ = spawn_child({"redis-server", dir_ + "/redis.conf"}, dir_ + "/redis.out");
    paused_ = false;
}

/// True once the server answers PING; false if it exited or stayed silent for 10 s (the caller
/// tells the two apart).
bool redis_server::wait_ready() {
    const auto deadline = steady::now() + ready_deadline;
    while (steady::now() < deadline) {
        if (exited()) return false;
        // NOAUTH is an answer too: the server is up, it just wants a password.
        const auto reply = raw_ping(port_, 500ms);
        if (reply && (reply->starts_with("+PONG") || reply->starts_with("-NOAUTH"))) {
            return true;
        }
        std::this_thread::sleep_for(20ms);
    }
    return false;
}

/// Whether the child has terminated, without reaping it (so this can stay const).
bool redis_server::exited() const { return child_exited(pid_); }

void redis_server::reap() {
    if (pid_ <= 0) return;
    reap_child(pid_);
    pid_ = -1;
    paused_ = false;
}

void redis_server::stop() {
    if (cluster_) throw_needs_single_server("redis_server::stop");
    if (pid_ <= 0) return;
    resume();  // a stopped process cannot handle SIGTERM
    terminate_child(pid_);
    pid_ = -1;
    paused_ = false;
}

void redis_server::kill() {
    if (cluster_) throw_needs_single_server("redis_server::kill");
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);  // also ends a stopped process
    reap();
}

void redis_server::pause() {
    if (cluster_) throw_needs_single_server("redis_server::pause");
    if (!running()) throw std::logic_error("redis_server::pause: not running");
    ::kill(pid_, SIGSTOP);
    // Wait until it has really stopped, so the test's next step sees a hung server.
    int status = 0;
    while (::waitpid(pid_, &status, WUNTRACED) < 0) {
        if (errno != EINTR) throw_errno("waitpid");
    }
    if (!WIFSTOPPED(status)) {  // it died instead
        pid_ = -1;
        throw std::runtime_error(failure_report("exited while being paused"));
    }
    paused_ = true;
}

void redis_server::resume() {
    if (cluster_) throw_needs_single_server("redis_server::resume");
    if (!paused_ || pid_ <= 0) return;
    ::kill(pid_, SIGCONT);
    paused_ = false;
}

bool redis_server::running() const { return cluster_ ? cluster_->node(0).running() : !exited(); }

pid_t redis_server::pid() const {
    if (cluster_) throw_needs_single_server("redis_server::pid");
    return pid_;
}

std::uint16_t redis_server::port() const { return cluster_ ? cluster_->port(0) : port_; }

std::uint16_t redis_server::tls_port() const { return tls_port_; }

const std::string& redis_server::unix_path() const { return unix_path_; }

const std::string& redis_server::dir() const { return cluster_ ? cluster_->node(0).dir() : dir_; }

std::string redis_server::ca_file() const { return opts_.tls ? dir_ + "/cert.pem" : std::string(); }

const redis_options& redis_server::options() const { return opts_; }

const redis_cluster* redis_server::cluster() const { return cluster_.get(); }

redis_cluster* redis_server::cluster() { return cluster_.get(); }

void redis_server::require_single_server(std::string_view what) const {
    if (cluster_) throw_needs_single_server(what);
}

std::string redis_server::cli(const std::vector<std::string>& args) const {
    if (cluster_) {
        std::vector<std::string> follow = {"-c"};
        follow.insert(follow.end(), args.begin(), args.end());
        return cluster_->cli(0, follow);
    }
    return run_cli({"-h", "127.0.0.1", "-p", std::to_string(port_)}, args);
}

std::string redis_server::cli_tls(const std::vector<std::string>& args) const {
    if (!opts_.tls) throw std::logic_error("redis_server::cli_tls: TLS is not enabled");
    return run_cli(
        {"-h", "127.0.0.1", "-p", std::to_string(tls_port_), "--tls", "--cacert", ca_file()}, args);
}

std::string redis_server::cli_unix(const std::vector<std::string>& args) const {
    if (!opts_.unix_socket) {
        throw std::logic_error("redis_server::cli_unix: the Unix socket is not enabled");
    }
    return run_cli({"-s", unix_path_}, args);
}

std::string redis_server::run_cli(std::vector<std::string> connection,
                                  const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {"redis-cli"};
    argv.insert(argv.end(), connection.begin(), connection.end());
    if (!opts_.password.empty()) {
        argv.insert(argv.end(), {"-a", opts_.password, "--no-auth-warning"});
    }
    argv.insert(argv.end(), args.begin(), args.end());

    auto result = run_process(argv);
    if (result.exit_code != 0) {
        std::string command;
        for (const auto& arg : args) command += " " + arg;
        throw std::runtime_error("redis-cli" + command + " failed (exit " +
                                 std::to_string(result.exit_code) + "): " + result.err +
                                 result.out);
    }
    return strip_trailing_newline(std::move(result.out));
}

std::string redis_server::failure_report(const std::string& what) const {
    std::string report = "redis-server on port " + std::to_string(port_) + " " + what;
    const auto log = last_lines(read_text_file(dir_ + "/redis.log"), log_tail_lines);
    if (!log.empty()) report += "\n--- redis.log (tail) ---\n" + log;
    const auto output = last_lines(read_text_file(dir_ + "/redis.out"), log_tail_lines);
    if (!output.empty()) report += "\n--- redis-server output ---\n" + output;
    return report;
}

// ---------------------------------------------------------------------------------------------
// sentinel_server

sentinel_server::sentinel_server(std::string service_name, std::uint16_t master_port)
    : service_name_(std::move(service_name)), master_port_(master_port), dir_(make_temp_dir()) {
    try {
        for (int attempt = 0; attempt < start_attempts; ++attempt) {
            port_ = pick_free_ports(1)[0];
            if (try_start()) return;
        }
        throw std::runtime_error("sentinel found no free port after several attempts");
    } catch (...) {
        stop();
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
        throw;
    }
}

sentinel_server::~sentinel_server() {
    stop();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
}

/// Returns false when the port was taken; throws on other failures.
bool sentinel_server::try_start() {
    const std::string conf_path = dir_ + "/sentinel.conf";
    std::ofstream(conf_path, std::ios::trunc)
        << "bind 127.0.0.1\n"
        << "port " << port_ << "\n"
        << "daemonize no\n"
        << "dir " << quote(dir_) << "\n"
        << "logfile " << quote(dir_ + "/sentinel.log") << "\n"
        << "sentinel resolve-hostnames no\n"
        << "sentinel monitor " << quote(service_name_) << " 127.0.0.1 " << master_port_ << " 1\n";
    std::filesystem::remove(dir_ + "/sentinel.log");  // so the log speaks of this attempt only
    pid_ = spawn_child({"redis-server", conf_path, "--sentinel"}, dir_ + "/sentinel.out");

    const auto deadline = steady::now() + ready_deadline;
    while (steady::now() < deadline && !child_exited(pid_)) {
        if (raw_ping(port_, 500ms) == "+PONG") return true;
        std::this_thread::sleep_for(20ms);
    }
    const bool exited = child_exited(pid_);
    stop();
    const auto log = read_text_file(dir_ + "/sentinel.log");
    if (exited && log.find("Address already in use") != std::string::npos) return false;
    const auto output = read_text_file(dir_ + "/sentinel.out");
    throw std::runtime_error("sentinel on port " + std::to_string(port_) +
                             (exited ? " exited during startup" : " did not answer PING in 10 s") +
                             "\n--- sentinel.log (tail) ---\n" + last_lines(log, log_tail_lines) +
                             "\n--- output ---\n" + last_lines(output, log_tail_lines));
}

void sentinel_server::stop() {
    if (pid_ <= 0) return;
    terminate_child(pid_);
    pid_ = -1;
}

std::uint16_t sentinel_server::port() const { return port_; }

pid_t sentinel_server::pid() const { return pid_; }

const std::string& sentinel_server::dir() const { return dir_; }

}  // namespace redcoord::test
