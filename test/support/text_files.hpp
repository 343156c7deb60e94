// Small text helpers the server fixtures share: redis.conf quoting and log tails.
#pragma once

#include <cstddef>
#include <fstream>
#include <sstream>
#include <string>

namespace redcoord::test::text {

/// Quotes a value for redis.conf (parsed like redis-cli arguments: "..." with \ escapes).
inline std::string quote(const std::string& value) {
    std::string out = "\"";
    for (char c : value) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out + "\"";
}

/// The whole file, or "" when it cannot be read.
inline std::string read_text_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

/// The last `count` lines of text.
inline std::string last_lines(const std::string& text, std::size_t count) {
    std::size_t pos = text.size();
    if (pos > 0 && text[pos - 1] == '\n') --pos;
    for (std::size_t seen = 0; pos > 0; --pos) {
        if (text[pos - 1] == '\n' && ++seen == count) break;
    }
    return text.substr(pos);
}

}  // namespace redcoord::test::text
