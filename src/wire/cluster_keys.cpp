#include "wire/cluster_keys.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>

namespace redcoord::detail {
namespace {

// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, as the cluster specification says.
constexpr std::array<std::uint16_t, 256> make_crc_table() {
    std::array<std::uint16_t, 256> table{};
    for (unsigned i = 0; i < 256; ++i) {
        std::uint16_t crc = static_cast<std::uint16_t>(i << 8);
        for (int bit = 0; bit < 8; ++bit)
            crc = static_cast<std::uint16_t>((crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1);
        table[i] = crc;
    }
    return table;
}
constexpr auto crc_table = make_crc_table();

std::uint16_t crc16(std::string_view s) noexcept {
    std::uint16_t crc = 0;
    for (unsigned char c : s)
        crc = static_cast<std::uint16_t>((crc << 8) ^ crc_table[((crc >> 8) ^ c) & 0xff]);
    return crc;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::toupper(static_cast<unsigned char>(x)) ==
                      std::toupper(static_cast<unsigned char>(y));
           });
}

bool is_one_of(std::string_view name, std::initializer_list<std::string_view> names) noexcept {
    return std::any_of(names.begin(), names.end(),
                       [&](std::string_view n) { return iequals(name, n); });
}

std::optional<std::size_t> to_count(std::string_view s) {
    std::size_t n = 0;
    auto [p, e] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (e != std::errc{} || p != s.data() + s.size()) return std::nullopt;
    return n;
}

// The keys of a command, by where Redis's command table puts them.
std::vector<std::string_view> keys_of(const std::vector<std::string_view>& a) {
    std::vector<std::string_view> keys;
    const std::string_view name = a.front();
    const std::size_t n = a.size();
    auto range = [&](std::size_t first, std::size_t last, std::size_t step = 1) {
        for (std::size_t i = first; i < std::min(last, n); i += step) keys.push_back(a[i]);
    };
    // numkeys at `at`, the keys right after it.
    auto counted = [&](std::size_t at) {
        if (at >= n) return;
        if (auto k = to_count(a[at])) range(at + 1, at + 1 + *k);
    };
    if (is_one_of(name, {"PING", "ECHO", "HELLO", "AUTH", "SELECT", "CLIENT", "CLUSTER", "INFO",
                         "TIME", "SCRIPT", "FUNCTION", "CONFIG", "DBSIZE", "SCAN", "KEYS",
                         "FLUSHALL", "FLUSHDB", "PUBLISH", "SUBSCRIBE", "PSUBSCRIBE",
                         "UNSUBSCRIBE", "PUNSUBSCRIBE", "MULTI", "EXEC", "DISCARD", "UNWATCH",
                         "WAIT", "WAITAOF", "READONLY", "READWRITE", "ASKING", "RANDOMKEY",
                         "DEBUG", "COMMAND", "LATENCY", "SLOWLOG", "ACL", "SAVE", "BGSAVE",
                         "BGREWRITEAOF", "LASTSAVE", "ROLE", "PUBSUB", "QUIT", "RESET",
                         "MODULE", "MONITOR", "SWAPDB", "LOLWUT"}))
        return keys;
    if (is_one_of(name, {"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})) {
        counted(2);
    } else if (is_one_of(name, {"DEL", "UNLINK", "EXISTS", "MGET", "TOUCH", "WATCH", "SINTER",
                                "SUNION", "SDIFF", "SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE",
                                "PFCOUNT", "PFMERGE", "SSUBSCRIBE", "SUNSUBSCRIBE"})) {
        range(1, n);
    } else if (is_one_of(name, {"MSET", "MSETNX"})) {
        range(1, n, 2);
    } else if (is_one_of(name, {"BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX"})) {
        range(1, n - 1);
    } else if (is_one_of(name, {"RENAME", "RENAMENX", "RPOPLPUSH", "LMOVE", "SMOVE", "COPY",
                                "BLMOVE", "BRPOPLPUSH", "GEOSEARCHSTORE", "ZRANGESTORE",
                                "LCS"})) {
        range(1, 3);
    } else if (is_one_of(name, {"ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE"})) {
        range(1, 2);
        counted(2);
    } else if (is_one_of(name, {"ZUNION", "ZINTER", "ZDIFF", "LMPOP", "ZMPOP", "SINTERCARD",
                                "ZINTERCARD"})) {
        counted(1);
    } else if (is_one_of(name, {"BLMPOP", "BZMPOP"})) {
        counted(2);
    } else if (is_one_of(name, {"XREAD", "XREADGROUP"})) {
        for (std::size_t i = 1; i < n; ++i)
            if (iequals(a[i], "STREAMS")) {
                const std::size_t rest = n - i - 1;
                range(i + 1, i + 1 + rest / 2);
                break;
            }
    } else if (is_one_of(name, {"OBJECT", "MEMORY", "XINFO"})) {
        range(2, 3);  // OBJECT ENCODING key, MEMORY USAGE key, XINFO STREAM key
    } else if (is_one_of(name, {"SPUBLISH"})) {
        range(1, 2);
    } else if (n > 1) {
        keys.push_back(a[1]);
    }
    return keys;
}

}  // namespace

std::uint16_t hash_slot(std::string_view key) noexcept {
    if (auto open = key.find('{'); open != std::string_view::npos) {
        auto close = key.find('}', open + 1);
        if (close != std::string_view::npos && close > open + 1)
            key = key.substr(open + 1, close - open - 1);
    }
    return static_cast<std::uint16_t>(crc16(key) & (cluster_slots - 1));
}

std::vector<std::string_view> command_args(std::string_view s) {
    std::vector<std::string_view> args;
    std::size_t pos = s.find("\r\n");
    if (pos == std::string_view::npos) return args;
    pos += 2;
    while (pos < s.size()) {
        const std::size_t eol = s.find("\r\n", pos);
        if (eol == std::string_view::npos) break;
        std::size_t len = 0;
        std::from_chars(s.data() + pos + 1, s.data() + eol, len);
        args.push_back(s.substr(eol + 2, len));
        pos = eol + 2 + len + 2;
    }
    return args;
}

std::vector<std::string_view> split_commands(std::string_view payload) {
    std::vector<std::string_view> out;
    std::size_t pos = 0;
    while (pos < payload.size()) {
        const std::size_t start = pos;
        std::size_t eol = payload.find("\r\n", pos);
        std::size_t count = 0;
        std::from_chars(payload.data() + pos + 1, payload.data() + eol, count);
        pos = eol + 2;
        for (std::size_t i = 0; i < count; ++i) {
            eol = payload.find("\r\n", pos);
            std::size_t len = 0;
            std::from_chars(payload.data() + pos + 1, payload.data() + eol, len);
            pos = eol + 2 + len + 2;
        }
        out.push_back(payload.substr(start, pos - start));
    }
    return out;
}

command_route route_of(const std::vector<std::string_view>& args) {
    command_route r;
    if (args.empty()) return r;
    const auto keys = keys_of(args);
    if (keys.empty()) return r;
    r.what = command_route::kind::slot;
    r.slot = hash_slot(keys.front());
    r.first_key = keys.front();
    for (auto k : keys)
        if (hash_slot(k) != r.slot) {
            r.what = command_route::kind::cross_slot;
            r.other_key = k;
            break;
        }
    return r;
}

redirection parse_redirection(std::string_view text) {
    redirection r;
    auto word_end = text.find(' ');
    const std::string_view word = text.substr(0, word_end);
    if (word == "TRYAGAIN") {
        r.what = redirection::kind::try_again;
        return r;
    }
    if (word == "CLUSTERDOWN") {
        r.what = redirection::kind::cluster_down;
        return r;
    }
    if (word != "MOVED" && word != "ASK") return r;
    if (word_end == std::string_view::npos) return r;
    auto rest = text.substr(word_end + 1);
    auto space = rest.find(' ');
    if (space == std::string_view::npos) return r;
    auto slot = to_count(rest.substr(0, space));
    auto where = rest.substr(space + 1);
    auto colon = where.rfind(':');
    if (!slot || *slot >= cluster_slots || colon == std::string_view::npos) return r;
    auto port = to_count(where.substr(colon + 1));
    if (!port || *port == 0 || *port > 65535) return r;
    r.what = word == "MOVED" ? redirection::kind::moved : redirection::kind::ask;
    r.slot = static_cast<std::uint16_t>(*slot);
    r.host = std::string(where.substr(0, colon));
    if (r.host.size() > 1 && r.host.front() == '[' && r.host.back() == ']')
        r.host = r.host.substr(1, r.host.size() - 2);
    r.port = static_cast<std::uint16_t>(*port);
    return r;
}

}  // namespace redcoord::detail
