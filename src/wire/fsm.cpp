#include "wire/fsm.hpp"

#include <redcoord/error.hpp>

#include <boost/asio/error.hpp>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <map>

namespace redcoord::detail {

namespace {

using boost::system::error_code;

std::string describe(const resp3::node_view& n) {
    std::string s(resp3::to_string(n.data_type));
    if (!resp3::is_aggregate(n.data_type)) {
        s += " '";
        s.append(n.value.substr(0, 64));
        if (n.value.size() > 64) s += "...";
        s += "'";
    }
    return s;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// message_reader

std::span<char> message_reader::prepare() {
    if (begin_ == end_) {
        begin_ = end_ = 0;
    } else if (begin_ > 0) {
        // Keep the unconsumed tail (an incomplete header line) at the front.
        std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
    }
    constexpr std::size_t min_free = 16 * 1024;
    if (buf_.size() - end_ < min_free)
        buf_.resize(std::max<std::size_t>(buf_.size() * 2, 64 * 1024));
    return {buf_.data() + end_, buf_.size() - end_};
}

bool message_reader::next(error_code& ec) {
    if (parser_.done()) return true;
    if (begin_ == end_) return false;
    const std::size_t n =
        parser_.consume(std::string_view(buf_.data() + begin_, end_ - begin_), ec);
    begin_ += n;
    message_bytes_ += n;
    return !ec && parser_.done();
}

// ---------------------------------------------------------------------------------------------
// reader_fsm

reader_fsm::action reader_fsm::resume(error_code ec, std::size_t n) {
    using type = action::type;
    if (ec) return {type::done, ec};
    if (n > 0) {
        in_.commit(n);
        bytes_ += n;
    }
    for (;;) {
        if (!in_.next(ec)) {
            if (ec) return {type::done, ec};
            return {type::read_some, {}};
        }
        ++messages_;
        message_kind kind;
        if (in_.discarded()) {
            ++too_large_;
            kind = mux_.consume_discarded(
                in_.message_bytes(), error::reply_too_large,
                "a reply of more than config.max_reply_size (" + std::to_string(limit_) +
                    " bytes with its nodes) was read and dropped");
        } else {
            auto msg = in_.message();
            kind = mux_.consume(msg, in_.message_bytes());
            if (kind == message_kind::unexpected)
                problem_ = "the server sent " + describe(msg[first_value(msg)]) +
                           " when no request awaited a reply";
        }
        in_.take_message();
        if (kind == message_kind::unexpected) {
            if (problem_.empty()) problem_ = "a discarded reply answered no request";
            return {type::done, error::unexpected_reply};
        }
        // The operations these replies completed have queued new requests: let the writer send
        // them now, so the server works on them while the rest of the buffer is handled here.
        if ((++handled_ % flush_every == 0 || mux_.queued_bytes() >= flush_bytes) &&
            mux_.has_waiting() && in_.buffered())
            return {type::yield, {}};
    }
}

// ---------------------------------------------------------------------------------------------
// writer_fsm

writer_fsm::action writer_fsm::resume(error_code ec) {
    using type = action::type;
    if (writing_) {
        writing_ = false;
        if (ec) return {type::done, ec};
    }
    buf_.clear();
    commands_ = mux_.prepare_write(buf_);
    if (buf_.empty()) return {type::wait, {}};
    writing_ = true;
    return {type::write, {}};
}

// ---------------------------------------------------------------------------------------------
// handshake_fsm

handshake_fsm::handshake_fsm(const config& cfg, std::string client_name, std::uint64_t nonce)
    : nonce_("redcoord-handshake-" + std::to_string(nonce)), select_(cfg.database != 0) {
    std::vector<std::string> hello = {"3"};
    if (!cfg.password.empty())
        hello.insert(hello.end(), {"AUTH", cfg.username.empty() ? "default" : cfg.username,
                                   cfg.password});
    if (!client_name.empty()) hello.insert(hello.end(), {"SETNAME", std::move(client_name)});
    req_.push("HELLO", hello);
    if (select_) req_.push("SELECT", cfg.database);
    req_.push("PING", nonce_);
}

handshake_fsm::action handshake_fsm::fail(error_code ec, std::string message, bool from_server) {
    step_ = step::done;
    if (from_server)
        diag_.set_server_message(message);
    else
        diag_.set_client_message(message);
    return {action::type::done, ec};
}

handshake_fsm::action handshake_fsm::resume(std::span<const resp3::node_view> msg) {
    using type = action::type;
    switch (step_) {
        case step::start: step_ = step::sent; return {type::write, {}};
        case step::sent: step_ = step::hello; return {type::read, {}};
        case step::done: return {type::done, {}};
        default: break;
    }
    if (msg.empty()) return fail(error::handshake_failed, "the handshake got no reply", false);
    const auto& head = msg[first_value(msg)];
    // Pushes (an invalidation, a monitor line) answer nothing: not a reply of the handshake.
    if (head.data_type == resp3::type::push) return {type::read, {}};
    if (resp3::is_error(head.data_type)) {
        const bool auth = starts_with(head.value, "WRONGPASS") ||
                          starts_with(head.value, "NOAUTH") || starts_with(head.value, "NOPERM");
        return fail(auth ? error::auth_failed : error::handshake_failed, std::string(head.value),
                    true);
    }
    switch (step_) {
        case step::hello: {
            // A map of the server's properties; proto must be 3.
            if (head.data_type != resp3::type::map)
                return fail(error::handshake_failed,
                            "HELLO 3 was answered with " + describe(head) + ", not a map", false);
            std::map<std::string, resp3::tree> info;
            error_code ec;
            from_resp3(msg, info, ec);
            auto proto = info.find("proto");
            if (ec || proto == info.end() || proto->second.value != "3")
                return fail(error::handshake_failed,
                            "HELLO 3 was answered with a map without proto 3", false);
            // Our client id, needed to CLIENT UNBLOCK a side connection.
            if (auto it = info.find("id"); it != info.end())
                std::from_chars(it->second.value.data(),
                                it->second.value.data() + it->second.value.size(), client_id_);
            step_ = select_ ? step::select : step::nonce;
            return {type::read, {}};
        }
        case step::select:
            if (head.data_type != resp3::type::simple_string || head.value != "OK")
                return fail(error::handshake_failed,
                            "SELECT was answered with " + describe(head) + ", not OK", false);
            step_ = step::nonce;
            return {type::read, {}};
        case step::nonce:
            if (head.data_type == resp3::type::blob_string && head.value == nonce_) {
                step_ = step::done;
                return {type::done, {}};
            }
            // Sent by the server unprompted: dropped here, where it cannot answer a request.
            if (++dropped_ > max_dropped)
                return fail(error::handshake_failed,
                            "the server sent more than " + std::to_string(max_dropped) +
                                " replies nothing asked for during the handshake",
                            false);
            return {type::read, {}};
        default: return {type::done, {}};
    }
}

// ---------------------------------------------------------------------------------------------
// sentinel_fsm

sentinel_fsm::sentinel_fsm(const std::vector<endpoint>& sentinels, std::string service)
    : sentinels_(sentinels), service_(std::move(service)) {
    req_.push("SENTINEL", "get-master-addr-by-name", service_);
}

sentinel_fsm::action sentinel_fsm::next_sentinel() {
    using type = action::type;
    if (index_ >= sentinels_.size()) {
        step_ = step::done;
        if (message_.empty())
            message_ = "no sentinel named a master for service '" + service_ + "'";
        return {type::done, nullptr, error::sentinel_unavailable};
    }
    step_ = step::connect;
    return {type::connect, &sentinels_[index_++], {}};
}

sentinel_fsm::action sentinel_fsm::resume(error_code ec, std::span<const resp3::node_view> msg) {
    using type = action::type;
    switch (step_) {
        case step::start: return next_sentinel();
        case step::connect:
            if (ec) return next_sentinel();
            step_ = step::write;
            return {type::write, nullptr, {}};
        case step::write:
            if (ec) return next_sentinel();
            step_ = step::read;
            return {type::read, nullptr, {}};
        case step::read: {
            if (ec || msg.empty()) return next_sentinel();
            std::optional<std::pair<std::string, std::string>> addr;
            error_code conv;
            from_resp3(msg, addr, conv);
            if (conv || !addr) {
                message_ = "no sentinel named a master for service '" + service_ + "'";
                return next_sentinel();
            }
            std::uint16_t port = 0;
            const auto& p = addr->second;
            auto [ptr, e] = std::from_chars(p.data(), p.data() + p.size(), port);
            if (e != std::errc{} || ptr != p.data() + p.size() || addr->first.empty()) {
                message_ = "a sentinel named '" + addr->first + ":" + p +
                           "' as master, which is not an address";
                return next_sentinel();
            }
            master_ = {addr->first, port};
            step_ = step::done;
            return {type::done, nullptr, {}};
        }
        case step::done: break;
    }
    return {type::done, nullptr, error::sentinel_unavailable};
}

// ---------------------------------------------------------------------------------------------
// health_fsm

void health_fsm::reset(clock::time_point now, progress p) {
    last_progress_ = now;
    ping_at_ = now;
    mark_ = p;
    ping_outstanding_ = false;
}

health_fsm::action health_fsm::on_tick(clock::time_point now, clock::time_point due, progress p,
                                       bool blocked) {
    if (!enabled()) return action::none;
    const bool progressed =
        p.messages != mark_.messages || p.bytes - mark_.bytes >= stream_bytes;
    mark_ = p;
    // Woken far too late: this process was stalled, not the server, and replies may be
    // waiting unread in the socket. Judge the server again from now on. A blocked command
    // (BLPOP on a side connection, WAIT on any) silences the server legitimately.
    if (progressed || now - due > interval_ / 2 || blocked) {
        last_progress_ = now;
        if (ping_outstanding_) ping_at_ = now;
        return action::none;
    }
    const auto idle = now - last_progress_;
    // Dead only when a PING has had a whole interval to be answered: timer jitter must not
    // fail a connection that was never asked.
    if (ping_outstanding_ && now - ping_at_ >= interval_ && idle >= interval_)
        return action::fail;
    if (!ping_outstanding_ && idle >= interval_) {
        ping_outstanding_ = true;
        ping_at_ = now;
        return action::ping;
    }
    return action::none;
}

// ---------------------------------------------------------------------------------------------
// reconnect_fsm

reconnect_fsm::action reconnect_fsm::on_connect_failed(error_code ec) {
    if (!ever_connected_ && abort_connect_ && ++first_failures_ >= connect_retry_)
        return {action::type::stop, {}, ec};
    return {action::type::wait, backoff(attempt_++), {}};
}

bool reconnect_fsm::on_connected() {
    attempt_ = 0;
    const bool again = ever_connected_;
    ever_connected_ = true;
    return again;
}

reconnect_fsm::action reconnect_fsm::on_lost() { return {action::type::wait, backoff(attempt_++), {}}; }

clock::duration reconnect_fsm::backoff(int attempt) {
    const auto cap = std::chrono::duration_cast<clock::duration>(max_);
    auto wait = std::chrono::duration_cast<clock::duration>(min_);
    for (int i = 0; i < attempt && wait < cap; ++i) wait *= 2;
    wait = std::min(wait, cap);
    std::uniform_int_distribution<clock::rep> half(wait.count() / 2, wait.count());
    return clock::duration(half(rng_));
}

}  // namespace redcoord::detail
