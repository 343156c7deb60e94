// Checkpoints (the reference's saveCheckpoint / loadLatestCheckpoint): a long task saves its
// progress now and then, and resumes from the latest save after a restart, on any node.
#pragma once

#include <redcoord/detail/converting_handler.hpp>
#include <redcoord/detail/with_diagnostics_handler.hpp>
#include <redcoord/diagnostics.hpp>
#include <redcoord/error.hpp>
#include <redcoord/session.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>
#include <boost/json/value_to.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <tuple>
#include <utility>

namespace redcoord {

/// One saved state of a task. Build it as a named variable (not as a braced temporary inside a
/// co_await expression, which g++ 12 miscompiles for aggregates holding a std::string).
template <class T>
struct checkpoint {
    /// The task it belongs to. Must not be empty.
    std::string task_id;
    /// Its place in the task's history; the latest checkpoint is the one with the largest
    /// sequence. Must not be negative.
    std::int64_t sequence = 0;
    /// How far the task got, in [0, 1].
    double progress = 0.0;
    /// The task's own state, anything boost::json::value_from / value_to convert.
    T data{};
    /// When it was saved (the saving node's clock); set by async_save, ignored on input.
    std::chrono::system_clock::time_point saved_at{};
};

/// Checkpoint settings. Defaults in comments.
struct checkpoint_options {
    /// How long a checkpoint is kept after it was saved (7 days). Must be positive.
    std::chrono::milliseconds ttl{std::chrono::hours(24 * 7)};
    /// How many of a task's latest checkpoints are kept; older ones are deleted when a newer
    /// one is saved (5). Must be positive.
    std::size_t retention = 5;
    /// The largest checkpoint data accepted, as JSON text (512 MiB, the largest string Redis
    /// stores); the stored checkpoint adds its other fields to it. Must be in [1, 512 MiB].
    std::size_t max_value_bytes = std::size_t(512) * 1024 * 1024;
};

namespace detail {
/// A checkpoint with its data as JSON: what the library stores and reads.
struct checkpoint_record {
    std::string task_id;
    std::int64_t sequence = 0;
    double progress = 0.0;
    boost::json::value data;
    std::chrono::system_clock::time_point saved_at{};
};
}  // namespace detail

/// Checkpoints on one session. A checkpoint is stored as JSON (task_id, sequence, progress,
/// data, saved_at in ms since the epoch) under `<prefix>checkpoint:{<task>}:<sequence>` with a
/// TTL; the task's index, the sorted set `<prefix>checkpoint:{<task>}:index` scored by
/// sequence, finds the latest without SCAN and names the ones to prune beyond `retention`.
///
/// The handle is light; several may share a session. Thread safety: none; use it from the
/// session's executor. Every operation completes through the handler's associated executor.
/// Cancellation: terminal, between the commands of an operation (one already written may have
/// run). diag must outlive the operation.
class checkpoint_store {
public:
    /// Throws error_with_diagnostics (error::bad_config) naming a bad option.
    explicit checkpoint_store(session& s, checkpoint_options opts = {});

    session& get_session() const noexcept { return *session_; }
    const checkpoint_options& options() const noexcept { return opts_; }

    /// Saves cp (its data converted by this call), stamps it with the current time, and prunes
    /// the task's checkpoints beyond retention. Saving a sequence again replaces it.
    /// Completion signature: void(error_code). error::invalid_argument for an empty task_id, a
    /// negative sequence, a progress outside [0, 1], or data whose JSON is longer than
    /// max_value_bytes (diag names the field; nothing is written).
    template <class T, class Token = boost::asio::deferred_t>
    auto async_save(const checkpoint<T>& cp, diagnostics& diag, Token&& token = {}) {
        return initiate_save(to_record(cp), &diag, std::forward<Token>(token));
    }
    template <class T, class Token = boost::asio::deferred_t>
    auto async_save(const checkpoint<T>& cp, Token&& token = {}) {
        return initiate_save(to_record(cp), nullptr, std::forward<Token>(token));
    }

    /// The task's checkpoint with the largest sequence still stored.
    /// Completion signature: void(error_code, std::optional<checkpoint<T>>): nullopt when the
    /// task has none. error::decode_failed when the stored data does not convert to T.
    template <class T, class Token = boost::asio::deferred_t>
    auto async_load_latest(std::string task_id, diagnostics& diag, Token&& token = {}) {
        return initiate_load<T>(std::move(task_id), &diag, std::forward<Token>(token));
    }
    template <class T, class Token = boost::asio::deferred_t>
    auto async_load_latest(std::string task_id, Token&& token = {}) {
        return initiate_load<T>(std::move(task_id), nullptr, std::forward<Token>(token));
    }

    /// Deletes every stored checkpoint of the task and its index (the task is done).
    /// Completion signature: void(error_code, std::size_t deleted).
    template <class Token = boost::asio::deferred_t>
    auto async_remove(std::string task_id, Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
            [this](auto handler, std::string task_id) {
                remove_impl(std::move(task_id), std::move(handler));
            },
            token, std::move(task_id));
    }

private:
    using void_handler = boost::asio::any_completion_handler<void(boost::system::error_code)>;
    using load_handler = boost::asio::any_completion_handler<void(
        boost::system::error_code, std::optional<detail::checkpoint_record>)>;
    using count_handler =
        boost::asio::any_completion_handler<void(boost::system::error_code, std::size_t)>;

    template <class T>
    static detail::checkpoint_record to_record(const checkpoint<T>& cp) {
        detail::checkpoint_record r;
        r.task_id = cp.task_id;
        r.sequence = cp.sequence;
        r.progress = cp.progress;
        r.data = boost::json::value_from(cp.data);
        return r;
    }

    template <class Token>
    auto initiate_save(detail::checkpoint_record rec, diagnostics* diag, Token&& token) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
            [this](auto handler, detail::checkpoint_record rec, diagnostics* diag) {
                diag = detail::diagnostics_for(handler, diag);
                save_impl(std::move(rec), diag, std::move(handler));
            },
            token, std::move(rec), diag);
    }

    template <class T, class Token>
    auto initiate_load(std::string task_id, diagnostics* diag, Token&& token) {
        return boost::asio::async_initiate<
            Token, void(boost::system::error_code, std::optional<checkpoint<T>>)>(
            [this](auto handler, std::string task_id, diagnostics* diag) {
                diag = detail::diagnostics_for(handler, diag);
                auto convert = [diag](boost::system::error_code ec,
                                      std::optional<detail::checkpoint_record> rec) {
                    std::optional<checkpoint<T>> out;
                    if (!ec && rec) {
                        auto& cp = out.emplace();
                        cp.task_id = std::move(rec->task_id);
                        cp.sequence = rec->sequence;
                        cp.progress = rec->progress;
                        cp.saved_at = rec->saved_at;
                        try {
                            cp.data = boost::json::value_to<T>(rec->data);
                        } catch (const std::exception&) {
                            ec = error::decode_failed;
                            if (diag)
                                diag->set_client_message(
                                    "checkpoint " + cp.task_id + ":" +
                                    std::to_string(cp.sequence) +
                                    ": the stored data does not convert to the requested type");
                            out.reset();
                        }
                    }
                    return std::tuple<boost::system::error_code, std::optional<checkpoint<T>>>(
                        ec, std::move(out));
                };
                load_impl(std::move(task_id), diag,
                          detail::converting_handler(std::move(handler), std::move(convert)));
            },
            token, std::move(task_id), diag);
    }

    void save_impl(detail::checkpoint_record rec, diagnostics* diag, void_handler handler);
    void load_impl(std::string task_id, diagnostics* diag, load_handler handler);
    void remove_impl(std::string task_id, count_handler handler);

    session* session_;
    checkpoint_options opts_;
};

}  // namespace redcoord
