// The connection's state machines, with no I/O: each is told what happened (resume(input))
// and answers with what to do next (an action). `connection_impl` performs the actions with
// thin async operations; the unit tests feed the machines inputs directly.
#pragma once

#include "wire/multiplexer.hpp"

#include <redcoord/config.hpp>
#include <redcoord/diagnostics.hpp>
#include <redcoord/resp3/parser.hpp>

#include <boost/asio/error.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace redcoord::detail {

// ---------------------------------------------------------------------------------------------
// Reading: bytes in, complete RESP3 messages out.

/// The read buffer and the parser: what read_some fills, and the messages parsed from it.
class message_reader {
public:
    explicit message_reader(resp3::parser_limits limits = {}) : parser_(limits) {}

    /// Free space at the end of the buffer for the next read (at least 16 KiB).
    std::span<char> prepare();
    /// n bytes were read into what prepare() gave.
    void commit(std::size_t n) noexcept { end_ += n; }

    /// Parses what the buffer holds; true when a complete message is ready (message(),
    /// discarded(), message_bytes()), until take_message(). Malformed input sets ec.
    bool next(boost::system::error_code& ec);
    std::span<const resp3::node_view> message() { return parser_.message(); }
    bool discarded() const noexcept { return parser_.discarded(); }
    std::size_t message_bytes() const noexcept { return message_bytes_; }
    void take_message() noexcept {
        parser_.clear();
        message_bytes_ = 0;
    }
    bool buffered() const noexcept { return begin_ != end_; }

    /// A new connection: nothing buffered, no message half parsed.
    void reset(resp3::parser_limits limits) {
        parser_ = resp3::parser(limits);
        begin_ = end_ = 0;
        message_bytes_ = 0;
    }

private:
    resp3::parser parser_;
    std::vector<char> buf_;
    std::size_t begin_ = 0, end_ = 0;
    std::size_t message_bytes_ = 0;
};

/// Reads replies and pushes into the multiplexer. Handles every complete message in the
/// buffer before the next read, yielding now and then so that the requests the completed
/// operations queue are written while the rest is handled.
class reader_fsm {
public:
    struct action {
        enum class type : std::uint8_t { read_some, yield, done } what;
        boost::system::error_code ec;  // done: why
    };

    reader_fsm(multiplexer& mux, message_reader& in, std::size_t max_reply_size)
        : mux_(mux), in_(in), limit_(max_reply_size) {}

    /// The first call, and each after an action was performed: `ec` and `n` are the outcome
    /// of read_some (into in.prepare()); zero after a yield.
    action resume(boost::system::error_code ec = {}, std::size_t n = 0);

    std::uint64_t messages() const noexcept { return messages_; }
    std::uint64_t bytes() const noexcept { return bytes_; }
    std::uint64_t too_large() const noexcept { return too_large_; }
    /// Set with unexpected_reply: what arrived.
    const std::string& what_went_wrong() const noexcept { return problem_; }

    // The reader lets the writer send what the completed operations queued once per this many
    // messages, or sooner once that much is queued.
    static constexpr std::size_t flush_every = 32;
    static constexpr std::size_t flush_bytes = 2048;

private:
    multiplexer& mux_;
    message_reader& in_;
    std::size_t limit_;
    std::size_t handled_ = 0;
    std::uint64_t messages_ = 0, bytes_ = 0, too_large_ = 0;
    std::string problem_;
};

/// Sends what the multiplexer has queued, one coalesced write at a time.
class writer_fsm {
public:
    struct action {
        enum class type : std::uint8_t { write, wait, done } what;
        boost::system::error_code ec;
    };

    explicit writer_fsm(multiplexer& mux) : mux_(mux) {}

    /// The first call, after each write (its outcome) and after each wait (woken).
    action resume(boost::system::error_code ec = {});
    /// What to write for action::write; valid until the next resume().
    const std::string& buffer() const noexcept { return buf_; }
    std::size_t last_commands() const noexcept { return commands_; }

private:
    multiplexer& mux_;
    std::string buf_;
    std::size_t commands_ = 0;
    bool writing_ = false;
};

// ---------------------------------------------------------------------------------------------
// Connecting.

/// HELLO 3 (with AUTH and SETNAME), SELECT, then a PING carrying a nonce, pipelined in one
/// write. Each reply is checked for what it must be; anything that arrives before the nonce's
/// echo and answers nothing is dropped there, so it can never complete a request.
class handshake_fsm {
public:
    struct action {
        enum class type : std::uint8_t { write, read, done } what;
        boost::system::error_code ec;  // done: the outcome
    };

    handshake_fsm(const config& cfg, std::string client_name, std::uint64_t nonce);

    /// First call: no message (write the payload). After the write: no message (read).
    /// Then one call per message read.
    action resume(std::span<const resp3::node_view> msg = {});

    std::string_view payload() const noexcept { return req_.payload(); }
    std::int64_t client_id() const noexcept { return client_id_; }
    /// The server's text on failure (WRONGPASS ...) or what was wrong with its reply.
    const diagnostics& diag() const noexcept { return diag_; }
    std::size_t dropped() const noexcept { return dropped_; }

    // Unprompted messages tolerated before the nonce's echo.
    static constexpr std::size_t max_dropped = 64;

private:
    action fail(boost::system::error_code ec, std::string message, bool from_server);

    request req_;
    std::string nonce_;
    bool select_ = false;
    enum class step : std::uint8_t { start, sent, hello, select, nonce, done } step_ = step::start;
    std::int64_t client_id_ = -1;
    std::size_t dropped_ = 0;
    diagnostics diag_;
};

/// Asks each sentinel in turn which node is the master of the service.
class sentinel_fsm {
public:
    struct action {
        enum class type : std::uint8_t { connect, write, read, done } what;
        const endpoint* target = nullptr;  // connect: the sentinel
        boost::system::error_code ec;      // done: the outcome (master() on success)
    };

    sentinel_fsm(const std::vector<endpoint>& sentinels, std::string service);

    /// First call: nothing. Then the outcome of each action: ec for connect/write/read, and
    /// for read the message.
    action resume(boost::system::error_code ec = {},
                  std::span<const resp3::node_view> msg = {});

    std::string_view payload() const noexcept { return req_.payload(); }
    const endpoint& master() const noexcept { return master_; }
    const std::string& message() const noexcept { return message_; }

private:
    action next_sentinel();

    const std::vector<endpoint>& sentinels_;
    std::string service_;
    request req_;
    std::size_t index_ = 0;
    enum class step : std::uint8_t { start, connect, write, read, done } step_ = step::start;
    endpoint master_;
    std::string message_;
};

// ---------------------------------------------------------------------------------------------
// Staying up.

/// Judges the server by the progress it makes, not by bytes arriving: a PING is sent after an
/// interval without a complete reply, and the connection is dead when that PING has had an
/// interval to be answered while no reply completed and fewer than `stream_bytes` arrived
/// per interval (a big reply streaming in counts as progress, a trickle does not).
class health_fsm {
public:
    enum class action : std::uint8_t { none, ping, fail };
    struct progress {
        std::uint64_t messages = 0;
        std::uint64_t bytes = 0;
    };

    explicit health_fsm(std::chrono::milliseconds interval) : interval_(interval) {}

    /// A new connection: counting starts afresh.
    void reset(clock::time_point now, progress p);
    /// The timer due at `due` fired at `now`. blocked: a blocking command or WAIT may keep the
    /// server silent now.
    action on_tick(clock::time_point now, clock::time_point due, progress p, bool blocked);
    /// The PING was answered.
    void on_pong() noexcept { ping_outstanding_ = false; }

    bool enabled() const noexcept { return interval_.count() > 0; }
    std::chrono::milliseconds interval() const noexcept { return interval_; }
    bool ping_outstanding() const noexcept { return ping_outstanding_; }

    static constexpr std::uint64_t stream_bytes = 4096;

private:
    std::chrono::milliseconds interval_;
    clock::time_point last_progress_{};
    clock::time_point ping_at_{};
    progress mark_;  // at the last tick
    bool ping_outstanding_ = false;
};

/// What the run loop does next: connect, wait before connecting again, or stop.
class reconnect_fsm {
public:
    struct action {
        enum class type : std::uint8_t { connect, wait, stop } what;
        clock::duration wait{};        // wait: how long
        boost::system::error_code ec;  // stop: the final outcome
    };

    reconnect_fsm(const config& cfg, std::uint32_t seed)
        : min_(cfg.reconnect_wait_min),
          max_(cfg.reconnect_wait_max),
          abort_connect_(cfg.abort_connect),
          connect_retry_(cfg.connect_retry),
          rng_(seed) {}

    action start() { return {action::type::connect, {}, {}}; }
    /// A connection attempt failed.
    action on_connect_failed(boost::system::error_code ec);
    /// Connected and past the handshake. True when it is a reconnection (a gap for pushes).
    bool on_connected();
    /// An established connection was lost.
    action on_lost();
    /// The wait is over.
    action on_waited() { return {action::type::connect, {}, {}}; }
    /// Cancelled: stop.
    action on_stop() { return {action::type::stop, {}, boost::asio::error::operation_aborted}; }

    /// The wait before attempt number `attempt` (0-based): capped exponential, full jitter
    /// on its upper half so that many clients do not reconnect in lockstep.
    clock::duration backoff(int attempt);
    bool ever_connected() const noexcept { return ever_connected_; }

private:
    std::chrono::milliseconds min_, max_;
    bool abort_connect_;
    int connect_retry_;
    int attempt_ = 0;
    int first_failures_ = 0;
    bool ever_connected_ = false;
    std::minstd_rand rng_;
};

}  // namespace redcoord::detail
