#include "http_util.hpp"

#include <redcoord/diagnostics.hpp>
#include <redcoord/error.hpp>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <cctype>
#include <charconv>

namespace redcoord::tools::detail {

namespace {

[[noreturn]] void bad_listen(const std::string& what) {
    diagnostics diag;
    diag.set_client_message("listen: " + what);
    throw error_with_diagnostics(make_error_code(error::bad_config), diag);
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

boost::asio::ip::tcp::endpoint parse_listen(const std::string& listen, bool allow_remote) {
    const auto colon = listen.rfind(':');
    if (colon == std::string::npos) bad_listen("'" + listen + "' is not host:port");
    std::string_view host(listen.data(), colon);
    const std::string_view port(listen.data() + colon + 1, listen.size() - colon - 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    boost::system::error_code ec;
    const auto address = boost::asio::ip::make_address(host, ec);
    if (ec) bad_listen("'" + std::string(host) + "' is not an IP address");
    unsigned number = 0;
    const auto [end, perr] = std::from_chars(port.data(), port.data() + port.size(), number);
    if (port.empty() || perr != std::errc() || end != port.data() + port.size() || number > 65535)
        bad_listen("port '" + std::string(port) + "' is not a number from 0 to 65535");
    if (!address.is_loopback() && !allow_remote)
        bad_listen(std::string(host) +
                   " is not a loopback address; set allow_remote to serve beyond this host");
    return {address, static_cast<unsigned short>(number)};
}

std::optional<std::string> url_decode(std::string_view in, bool plus_is_space) {
    std::string out;
    out.reserve(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
        if (in[i] == '%') {
            if (i + 2 >= in.size()) return std::nullopt;
            const int hi = hex_digit(in[i + 1]), lo = hex_digit(in[i + 2]);
            if (hi < 0 || lo < 0) return std::nullopt;
            out.push_back(static_cast<char>(hi * 16 + lo));
            i += 2;
        } else if (in[i] == '+' && plus_is_space) {
            out.push_back(' ');
        } else {
            out.push_back(in[i]);
        }
    }
    return out;
}

std::map<std::string, std::string> parse_query(std::string_view query) {
    std::map<std::string, std::string> out;
    while (!query.empty()) {
        const auto amp = query.find('&');
        const auto pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
        const auto eq = pair.find('=');
        auto key = url_decode(pair.substr(0, eq), true);
        auto value = url_decode(eq == std::string_view::npos ? "" : pair.substr(eq + 1), true);
        if (key && value && !key->empty()) out[std::move(*key)] = std::move(*value);
    }
    return out;
}

std::string without_secrets(std::string_view url) {
    std::string out(url);
    if (const auto scheme = out.find("://"); scheme != std::string::npos) {
        const auto host_start = scheme + 3;
        const auto path = out.find_first_of("/?", host_start);
        const auto at = out.rfind('@', path == std::string::npos ? out.size() : path);
        if (at != std::string::npos && at >= host_start) out.erase(host_start, at + 1 - host_start);
    }
    // "password=..." of the comma and semicolon forms, and of a URL's query.
    for (std::size_t at = 0; (at = out.find("password=", at)) != std::string::npos;) {
        const auto end = out.find_first_of(",;&", at);
        const bool first = at == 0 || out[at - 1] == '?';
        const auto from = first ? at : at - 1;
        out.erase(from, (end == std::string::npos ? out.size() : end + (first ? 1 : 0)) - from);
        at = from;
    }
    return out;
}

bool is_loopback_host(std::string_view host) {
    if (host.starts_with('[')) {
        const auto close = host.find(']');
        return close != std::string_view::npos && host.substr(1, close - 1) == "::1";
    }
    host = host.substr(0, host.find(':'));
    if (host == "localhost") return true;
    boost::system::error_code ec;
    const auto address = boost::asio::ip::make_address(host, ec);
    return !ec && address.is_loopback();
}

bool same_secret(std::string_view a, std::string_view b) noexcept {
    unsigned char diff = a.size() == b.size() ? 0 : 1;
    for (std::size_t i = 0; i < a.size(); ++i)
        diff |= static_cast<unsigned char>(a[i] ^ (b.empty() ? 0 : b[i % b.size()]));
    return diff == 0;
}

std::string json_error(std::string_view message) {
    boost::json::object o;
    o["error"] = message;
    return boost::json::serialize(o);
}

}  // namespace redcoord::tools::detail
