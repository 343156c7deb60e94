// A worker child process (test/support/cluster_worker.cpp, lock_worker.cpp) for the tests
// across processes: started with fork/exec, tied to the test process (PR_SET_PDEATHSIG), its
// stdout read line by line through a non-blocking pipe, and signalled, waited for and ended by
// its PID only.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace redcoord::test {

class worker_process {
public:
    using milliseconds = std::chrono::milliseconds;

    /// Starts `executable args...`.
    worker_process(std::string executable, std::vector<std::string> args) {
        args.insert(args.begin(), std::move(executable));
        for (const auto& a : args) command_line_ += (command_line_.empty() ? "" : " ") + a;
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);

        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0)
            throw std::system_error(errno, std::generic_category(), "pipe2");
        const pid_t parent = ::getpid();
        pid_ = ::fork();
        if (pid_ < 0) {
            const int e = errno;
            ::close(fds[0]);
            ::close(fds[1]);
            throw std::system_error(e, std::generic_category(), "fork");
        }
        if (pid_ == 0) {
            // Only async-signal-safe calls until exec. Die with the test process.
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) ::_exit(127);
            sigset_t none;
            ::sigemptyset(&none);
            ::sigprocmask(SIG_SETMASK, &none, nullptr);
            ::dup2(fds[1], STDOUT_FILENO);  // the copy is not close-on-exec
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        ::close(fds[1]);
        fd_ = fds[0];
        ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
    }

    /// Kills (SIGKILL, which also ends a stopped process) and reaps it unless reaped already.
    ~worker_process() {
        if (pid_ > 0 && !reaped_) {
            ::kill(pid_, SIGKILL);
            int status = 0;
            while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
            }
        }
        if (fd_ >= 0) ::close(fd_);
    }
    worker_process(const worker_process&) = delete;
    worker_process& operator=(const worker_process&) = delete;

    pid_t pid() const { return pid_; }

    /// Sends sig to this process (by its PID); false when it was reaped already or kill failed.
    bool signal(int sig) { return !reaped_ && ::kill(pid_, sig) == 0; }

    /// The command line and every line printed so far, for failure messages.
    std::string transcript() {
        drain();
        std::string out = "worker " + std::to_string(pid_) + ": " + command_line_;
        for (const auto& l : lines_) out += "\n  | " + l;
        if (!partial_.empty()) out += "\n  | " + partial_ + " (no newline)";
        return out;
    }

    /// The next line not returned before; nullopt at EOF or when `timeout` passes.
    boost::asio::awaitable<std::optional<std::string>> next_line(milliseconds timeout) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            drain();
            if (next_ < lines_.size()) co_return lines_[next_++];
            if (eof_ || std::chrono::steady_clock::now() >= deadline) co_return std::nullopt;
            co_await pause();
        }
    }

    /// The next line starting with `prefix`, skipping others; nullopt at EOF or on timeout.
    boost::asio::awaitable<std::optional<std::string>> line_starting_with(std::string prefix,
                                                                          milliseconds timeout) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            const auto left = std::chrono::duration_cast<milliseconds>(
                deadline - std::chrono::steady_clock::now());
            auto line = co_await next_line(std::max(left, milliseconds(0)));
            if (!line) co_return std::nullopt;
            if (line->starts_with(prefix)) co_return line;
        }
    }

    /// Waits until the process has stopped (SIGSTOP); false when it exited or on timeout.
    boost::asio::awaitable<bool> wait_stopped(milliseconds timeout) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            int status = 0;
            const pid_t r = ::waitpid(pid_, &status, WNOHANG | WUNTRACED);
            if (r == pid_) {
                if (WIFSTOPPED(status)) co_return true;
                if (WIFEXITED(status) || WIFSIGNALED(status)) {
                    record_exit(status);
                    co_return false;
                }
            }
            if (std::chrono::steady_clock::now() >= deadline) co_return false;
            co_await pause();
        }
    }

    /// Waits for the process to end and reaps it: its exit code, 128 + signal when killed, or
    /// nullopt on timeout.
    boost::asio::awaitable<std::optional<int>> wait_exit(milliseconds timeout) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (!reaped_) {
            drain();
            int status = 0;
            const pid_t r = ::waitpid(pid_, &status, WNOHANG);
            if (r == pid_ && (WIFEXITED(status) || WIFSIGNALED(status))) {
                record_exit(status);
                break;
            }
            if (std::chrono::steady_clock::now() >= deadline) co_return std::nullopt;
            co_await pause();
        }
        drain();
        co_return exit_code_;
    }

private:
    static boost::asio::awaitable<void> pause() {
        boost::asio::steady_timer t(co_await boost::asio::this_coro::executor);
        t.expires_after(milliseconds(5));
        co_await t.async_wait(boost::asio::use_awaitable);
    }

    void record_exit(int status) {
        reaped_ = true;
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }

    void drain() {
        if (fd_ < 0) return;
        char buf[4096];
        for (;;) {
            const ssize_t n = ::read(fd_, buf, sizeof buf);
            if (n > 0) {
                partial_.append(buf, static_cast<std::size_t>(n));
                continue;
            }
            if (n == 0) eof_ = true;
            if (n < 0 && errno == EINTR) continue;
            break;  // EOF, or nothing more for now (EAGAIN)
        }
        for (auto nl = partial_.find('\n'); nl != std::string::npos; nl = partial_.find('\n')) {
            lines_.push_back(partial_.substr(0, nl));
            partial_.erase(0, nl + 1);
        }
    }

    std::string command_line_;
    pid_t pid_ = -1;
    int fd_ = -1;
    bool reaped_ = false;
    int exit_code_ = -1;
    bool eof_ = false;
    std::string partial_;
    std::vector<std::string> lines_;
    std::size_t next_ = 0;
};

/// The next line of p starting with `prefix` (as line_starting_with); fails the test, showing
/// p's transcript, when none comes within `timeout`.
inline boost::asio::awaitable<std::string> require_line(worker_process& p, std::string prefix,
                                                        std::chrono::milliseconds timeout) {
    auto line = co_await p.line_starting_with(std::move(prefix), timeout);
    INFO(p.transcript());
    REQUIRE(line);
    co_return *line;
}

}  // namespace redcoord::test
