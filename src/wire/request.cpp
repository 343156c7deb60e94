#include <redcoord/request.hpp>

#include <algorithm>
#include <cctype>

namespace redcoord {
namespace {

// Reads back the bulk strings of the command serialized at payload[start..]; we wrote it, so it
// is well formed.
std::vector<std::string_view> split_command(std::string_view payload, std::size_t start) {
    std::vector<std::string_view> args;
    std::size_t pos = payload.find("\r\n", start) + 2;  // skip "*N"
    while (pos < payload.size()) {
        const std::size_t eol = payload.find("\r\n", pos);
        std::size_t len = 0;
        std::from_chars(payload.data() + pos + 1, payload.data() + eol, len);
        args.push_back(payload.substr(eol + 2, len));
        pos = eol + 2 + len + 2;
    }
    return args;
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::toupper(static_cast<unsigned char>(x)) ==
                      std::toupper(static_cast<unsigned char>(y));
           });
}

std::optional<subscription_change::kind> subscription_kind(std::string_view cmd) {
    using k = subscription_change::kind;
    if (iequals(cmd, "SUBSCRIBE")) return k::subscribe;
    if (iequals(cmd, "UNSUBSCRIBE")) return k::unsubscribe;
    if (iequals(cmd, "PSUBSCRIBE")) return k::psubscribe;
    if (iequals(cmd, "PUNSUBSCRIBE")) return k::punsubscribe;
    if (iequals(cmd, "SSUBSCRIBE")) return k::ssubscribe;
    if (iequals(cmd, "SUNSUBSCRIBE")) return k::sunsubscribe;
    return std::nullopt;
}

// Where a blocking command keeps its timeout, and in which unit. Only WAIT and WAITAOF keep it
// last in milliseconds.
enum class timeout_arg { none, last_seconds, first_seconds, last_millis, after_block_millis };

timeout_arg blocking_kind(std::string_view cmd) {
    for (auto name : {"BLPOP", "BRPOP", "BLMOVE", "BRPOPLPUSH", "BZPOPMIN", "BZPOPMAX"})
        if (iequals(cmd, name)) return timeout_arg::last_seconds;
    if (iequals(cmd, "BLMPOP") || iequals(cmd, "BZMPOP")) return timeout_arg::first_seconds;
    if (iequals(cmd, "WAIT") || iequals(cmd, "WAITAOF")) return timeout_arg::last_millis;
    if (iequals(cmd, "XREAD") || iequals(cmd, "XREADGROUP")) return timeout_arg::after_block_millis;
    return timeout_arg::none;
}

// The block time of a blocking command: nullopt for "forever" (0), a duration otherwise.
// Unparsable values are left to the server to reject; they count as forever here.
std::optional<std::chrono::milliseconds> parse_block_time(std::string_view v, bool seconds) {
    double d = 0;
    auto [p, e] = std::from_chars(v.data(), v.data() + v.size(), d);
    if (e != std::errc{} || d <= 0) return std::nullopt;
    const double ms = seconds ? d * 1000.0 : d;
    return std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(ms)));
}

}  // namespace

void request::begin_array(std::size_t count) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, count);
    payload_.push_back('*');
    payload_.append(buf, r.ptr);
    payload_.append("\r\n", 2);
}

void request::on_command_added(std::size_t start) {
    ++commands_;
    // Cheap check on the command name first; only the rare commands need their arguments.
    const std::size_t name_len_at = payload_.find("\r\n", start) + 3;
    const std::size_t name_eol = payload_.find("\r\n", name_len_at);
    std::size_t name_len = 0;
    std::from_chars(payload_.data() + name_len_at, payload_.data() + name_eol, name_len);
    const std::string_view name = std::string_view(payload_).substr(name_eol + 2, name_len);

    if (auto kind = subscription_kind(name)) {
        // In RESP3 these have no reply of their own: their confirmations are pushes.
        auto args = split_command(payload_, start);
        subscriptions_.push_back({*kind, {args.begin() + 1, args.end()}, expected_responses_});
        return;
    }
    ++expected_responses_;

    const timeout_arg where = blocking_kind(name);
    if (where == timeout_arg::none) return;
    auto args = split_command(payload_, start);
    std::optional<std::string_view> value;
    switch (where) {
        case timeout_arg::last_seconds:
        case timeout_arg::last_millis:
            if (args.size() > 1) value = args.back();
            break;
        case timeout_arg::first_seconds:
            if (args.size() > 1) value = args[1];
            break;
        case timeout_arg::after_block_millis:
            // Options come before STREAMS; after it are keys and ids, and a key may well be
            // named "block".
            for (std::size_t i = 1; i + 1 < args.size() && !iequals(args[i], "STREAMS"); ++i)
                if (iequals(args[i], "BLOCK")) value = args[i + 1];
            if (!value) return;  // XREAD without BLOCK does not block
            break;
        case timeout_arg::none: break;
    }
    // WAIT confirms the writes of its own connection: it must not move to a side connection.
    (where == timeout_arg::last_millis ? waits_ : blocking_) = true;
    if (!value) return;
    auto t = parse_block_time(*value, where == timeout_arg::last_seconds ||
                                          where == timeout_arg::first_seconds);
    // WAIT 0 timeout also means forever.
    if (!t || !block_time_)
        block_time_.reset();
    else
        block_time_ = *block_time_ + *t;  // commands of a request run one after another
}

namespace detail {
void append_serialized(request& req, std::string_view command) {
    const std::size_t start = req.payload_.size();
    req.payload_.append(command);
    req.on_command_added(start);
}
}  // namespace detail

void request::clear() noexcept {
    payload_.clear();
    commands_ = 0;
    expected_responses_ = 0;
    blocking_ = false;
    waits_ = false;
    block_time_ = std::chrono::milliseconds(0);
    subscriptions_.clear();
}

}  // namespace redcoord
