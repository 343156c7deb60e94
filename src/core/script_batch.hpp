// Operations of one script that arrive in the same turn of the executor share one call of it,
// which runs them in the order they came and replies with one element per operation. The
// session batches lock_ops.lua so (attempts to acquire a lock or leadership, and releases; its
// arguments are locks/lock.cpp's): at 100,000 pairs a second the server's cost per script
// call, not per operation, was the limit.
#pragma once

#include "core/eval.hpp"

#include <array>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

namespace redcoord::detail {

using boost::system::error_code;

// An operation's element of the reply: an integer, or an array of at most two integers.
struct batch_reply {
    bool array = false;
    std::array<std::int64_t, 2> values{};
};

// One operation of a batch: owned by the batch from add() until complete() has returned.
class batch_entry {
public:
    virtual ~batch_entry() = default;
    // Its element of the reply (lock_ops.lua says which); ec set when the call or this
    // operation failed (diag says why).
    virtual void complete(error_code ec, const batch_reply& reply) = 0;
    diagnostics* diag = nullptr;  // where a failure's text goes; may be null
    int requeued = 0;             // times sent again (see script_batch::flush)
};

struct batch_call;

// The command scripts publish wake-ups with (their last argument): SPUBLISH on a Redis Cluster,
// where the waiters listen with SSUBSCRIBE on the resource's master, else PUBLISH.
std::string_view publish_command(const connection& conn) noexcept;

class script_batch {
public:
    // post schedules flush() on the session's executor, keeping the session alive.
    script_batch(connection& conn, const script& sc, std::function<void()> post)
        : conn_(conn), script_(sc), post_(std::move(post)) {}
    ~script_batch() { *alive_ = false; }
    script_batch(const script_batch&) = delete;
    script_batch& operator=(const script_batch&) = delete;

    // Queues e: keys and args (args start with the operation, "a" or "r") are views into
    // strings that live as long as e. The call leaves at the end of this turn, or at once when
    // the batch is full.
    void add(std::unique_ptr<batch_entry> e, std::initializer_list<std::string_view> keys,
             std::initializer_list<std::string_view> args);
    // Sends what is queued as one script call; on a Redis Cluster, one call per master (the
    // master of each entry's first key's slot), each slot's entries in the order they came.
    void flush();

    // Operations per call at most: a full batch leaves at once, so that the server works on it
    // while the client handles the rest of its replies (with more, 100 busy coroutines fit
    // one batch, and client and server take turns). It also bounds how long one script holds
    // the server.
    static constexpr std::size_t max_entries = 32;
    // How often one entry is sent again after a cluster refused one of its keys mid-script
    // (batch_call::refused_mid_migration).
    static constexpr int max_requeues = 50;

private:
    friend struct batch_call;
    // add() with the keys and arguments as spans (an entry sent again keeps its views).
    void add_views(std::unique_ptr<batch_entry> e, std::span<const std::string_view> keys,
                   std::span<const std::string_view> args);
    // Sends every queued entry as one script call that declares the first `declared` keys
    // (on a Redis Cluster, those of one slot; the others are passed as arguments).
    void send_queued(std::size_t declared);

    connection& conn_;
    const script& script_;
    std::function<void()> post_;

    std::vector<std::unique_ptr<batch_entry>> entries_;
    std::vector<std::string_view> keys_, args_;
    // Where each entry's keys and arguments start in keys_ and args_.
    std::vector<std::pair<std::size_t, std::size_t>> starts_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
    bool posted_ = false;
};

}  // namespace redcoord::detail
