#include "core/glob.hpp"

#include <redcoord/error.hpp>
#include <redcoord/keyspace.hpp>

namespace redcoord {
namespace {

// True when Redis Cluster would hash only part of the key: a '{' followed later by a '}' with
// at least one byte between them.
bool has_hash_tag(std::string_view key) noexcept {
    const auto open = key.find('{');
    if (open == std::string_view::npos) return false;
    const auto close = key.find('}', open + 1);
    return close != std::string_view::npos && close > open + 1;
}

}  // namespace

std::string keyspace::join(std::string_view kind, std::string_view name) const {
    std::string out;
    out.reserve(prefix_.size() + kind.size() + name.size() + 2);
    out.append(prefix_).append(kind).append(1, '{').append(name).append(1, '}');
    return out;
}

std::string keyspace::heartbeat(std::string_view node) const {
    std::string out = join("hb:", "registry");
    out.append(1, ':').append(node);
    return out;
}

std::string keyspace::channel(std::string_view name) const {
    std::string out;
    out.reserve(prefix_.size() + 7 + name.size());
    out.append(prefix_).append("events:").append(name);
    return out;
}

std::string keyspace::checkpoint(std::string_view task, std::int64_t sequence) const {
    return join("checkpoint:", task) + ":" + std::to_string(sequence);
}

std::string keyspace::companion(std::string_view main_key, std::string_view suffix) {
    std::string out;
    out.reserve(main_key.size() + suffix.size() + 3);
    if (has_hash_tag(main_key)) {
        out.append(main_key);
    } else {
        out.push_back('{');
        out.append(main_key);
        out.push_back('}');
    }
    out.push_back(':');
    out.append(suffix);
    return out;
}

std::string_view keyspace::name_of(std::string_view key, std::string_view kind) const noexcept {
    if (!key.starts_with(prefix_)) return {};
    key.remove_prefix(prefix_.size());
    if (!key.starts_with(kind)) return {};
    key.remove_prefix(kind.size());
    // "{name}": a companion ends with its suffix, never with '}'.
    if (key.size() < 3 || key.front() != '{' || key.back() != '}') return {};
    return key.substr(1, key.size() - 2);
}

std::string_view keyspace::channel_name(std::string_view channel) const noexcept {
    if (!channel.starts_with(prefix_)) return {};
    channel.remove_prefix(prefix_.size());
    if (!channel.starts_with("events:")) return {};
    return channel.substr(7);
}

std::string keyspace::main_key_pattern(std::string_view kind, std::string_view name_glob) const {
    std::string out = detail::glob_escape(prefix_);
    out.append(detail::glob_escape(kind)).append(1, '{').append(name_glob).append(1, '}');
    return out;
}

namespace detail {

boost::system::error_code check_name(std::string_view field, std::string_view value,
                                     diagnostics& diag) {
    if (!value.empty()) return {};
    diag.set_client_message(std::string(field) + ": must not be empty");
    return error::invalid_argument;
}

std::string glob_escape(std::string_view text) {
    std::string out;
    out.reserve(text.size() + 8);
    for (char c : text) {
        if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out.push_back('\\');
        out.push_back(c);
    }
    return out;
}

}  // namespace detail
}  // namespace redcoord
