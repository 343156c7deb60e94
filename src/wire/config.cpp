// Parsing of the connection-string forms: the comma form, the semicolon form and redis:// /
// rediss:// / unix:// URLs. Every failure is reported through error::bad_config plus a message
// that names the key and the value, so the user can find the mistake in their own string.
#include <redcoord/config.hpp>
#include <redcoord/error.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <climits>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace redcoord {
namespace {

// ------------------------------------------------------------------------------------------------
// Text helpers

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

char to_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string_view trim(std::string_view s) {
    while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
    return s;
}

// ASCII only on purpose: keys and schemes are ASCII, and std::tolower depends on the locale.
bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return to_lower(x) == to_lower(y);
           });
}

std::vector<std::string_view> split(std::string_view text, char sep) {
    std::vector<std::string_view> parts;
    for (;;) {
        auto pos = text.find(sep);
        parts.push_back(text.substr(0, pos));
        if (pos == std::string_view::npos) return parts;
        text.remove_prefix(pos + 1);
    }
}

std::string quoted(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 2);
    out += '\'';
    out += s;
    out += '\'';
    return out;
}

// ------------------------------------------------------------------------------------------------
// Parse state

// The configuration being built and the first problem found; parsing stops at that problem.
struct parse_context {
    config cfg;
    std::string problem;

    bool fail(std::string message) {
        problem = std::move(message);
        return false;
    }
};

// ------------------------------------------------------------------------------------------------
// Numbers

enum class number_status { ok, malformed, too_large };

// Digits only, nothing else: the unsigned from_chars rejects signs and whitespace, which is what
// a "non-negative integer" should mean here.
number_status parse_unsigned(std::string_view text, std::uint64_t max, std::uint64_t& out) {
    std::uint64_t value = 0;
    const char* end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, value);
    if (ec == std::errc::result_out_of_range) return number_status::too_large;
    if (ec != std::errc{} || ptr != end || text.empty()) return number_status::malformed;
    if (value > max) return number_status::too_large;
    out = value;
    return number_status::ok;
}

bool parse_bool(parse_context& ctx, std::string_view key, std::string_view value, bool& out) {
    if (iequals(value, "true")) {
        out = true;
        return true;
    }
    if (iequals(value, "false")) {
        out = false;
        return true;
    }
    return ctx.fail(std::string(key) + ": " + quoted(value) + " is not a boolean (true or false)");
}

// A non-negative count of `unit_ms` milliseconds, guarded so the conversion cannot overflow.
bool parse_duration(parse_context& ctx, std::string_view key, std::string_view value,
                    std::int64_t unit_ms, std::string_view unit_name,
                    std::chrono::milliseconds& out) {
    const auto max = static_cast<std::uint64_t>(INT64_MAX / unit_ms);
    std::uint64_t count = 0;
    switch (parse_unsigned(value, max, count)) {
        case number_status::ok:
            out = std::chrono::milliseconds(static_cast<std::int64_t>(count) * unit_ms);
            return true;
        case number_status::malformed:
            return ctx.fail(std::string(key) + ": " + quoted(value) +
                            " is not a non-negative integer (" + std::string(unit_name) + ")");
        case number_status::too_large:
            break;
    }
    return ctx.fail(std::string(key) + ": " + quoted(value) + " is too large (" +
                    std::string(unit_name) + ")");
}

bool parse_int_at_least(parse_context& ctx, std::string_view key, std::string_view value, int min,
                        int& out) {
    std::uint64_t number = 0;
    auto status = parse_unsigned(value, INT_MAX, number);
    if (status == number_status::ok && number >= static_cast<std::uint64_t>(min)) {
        out = static_cast<int>(number);
        return true;
    }
    if (status == number_status::too_large) {
        return ctx.fail(std::string(key) + ": " + quoted(value) + " is too large");
    }
    const std::string expected =
        min == 0 ? "a non-negative integer" : "an integer >= " + std::to_string(min);
    return ctx.fail(std::string(key) + ": " + quoted(value) + " is not " + expected);
}

// ------------------------------------------------------------------------------------------------
// Options (keys of the comma form, of the semicolon form and of URL queries)

enum class string_form { comma, semicolon, url };

using option_setter = bool (*)(parse_context&, std::string_view key, std::string_view value);

struct option {
    std::string_view name;
    option_setter set;
};

template <std::string config::*Field>
bool set_string(parse_context& ctx, std::string_view, std::string_view value) {
    ctx.cfg.*Field = value;
    return true;
}

template <bool config::*Field>
bool set_bool(parse_context& ctx, std::string_view key, std::string_view value) {
    return parse_bool(ctx, key, value, ctx.cfg.*Field);
}

template <std::chrono::milliseconds config::*Field>
bool set_millis(parse_context& ctx, std::string_view key, std::string_view value) {
    return parse_duration(ctx, key, value, 1, "milliseconds", ctx.cfg.*Field);
}

template <std::chrono::milliseconds config::*Field>
bool set_seconds(parse_context& ctx, std::string_view key, std::string_view value) {
    return parse_duration(ctx, key, value, 1000, "seconds", ctx.cfg.*Field);
}

bool set_connect_retry(parse_context& ctx, std::string_view key, std::string_view value) {
    return parse_int_at_least(ctx, key, value, 1, ctx.cfg.connect_retry);
}

bool set_database(parse_context& ctx, std::string_view key, std::string_view value) {
    return parse_int_at_least(ctx, key, value, 0, ctx.cfg.database);
}

bool set_cluster_max_redirects(parse_context& ctx, std::string_view key, std::string_view value) {
    return parse_int_at_least(ctx, key, value, 1, ctx.cfg.cluster_max_redirects);
}

// Keys accepted by every form. Matched case-insensitively.
constexpr option common_options[] = {
    {"password", set_string<&config::password>},
    {"user", set_string<&config::username>},
    {"ssl", set_bool<&config::use_tls>},
    {"sslHost", set_string<&config::tls_server_name>},
    {"sslVerify", set_bool<&config::tls_verify>},
    {"sslCaFile", set_string<&config::tls_ca_file>},
    {"connectTimeout", set_millis<&config::connect_timeout>},
    {"syncTimeout", set_millis<&config::request_timeout>},
    {"asyncTimeout", set_millis<&config::request_timeout>},
    {"connectRetry", set_connect_retry},
    {"abortConnect", set_bool<&config::abort_connect>},
    {"serviceName", set_string<&config::service_name>},
    {"defaultDatabase", set_database},
    {"name", set_string<&config::client_name>},
    {"keepAlive", set_seconds<&config::health_check_interval>},
    {"failFast", set_bool<&config::fail_fast_when_disconnected>},
    {"cluster", set_bool<&config::cluster>},
    {"clusterRefresh", set_millis<&config::cluster_refresh_interval>},
    {"clusterMaxRedirects", set_cluster_max_redirects},
};

// Keys only URL queries accept, following the redis-py URL conventions.
constexpr option url_only_options[] = {
    {"db", set_database},
};

// Other spellings of common options that semicolon-form strings use.
constexpr option semicolon_only_options[] = {
    {"username", set_string<&config::username>},
    {"database", set_database},
    {"db", set_database},
    {"clientName", set_string<&config::client_name>},
};

const option* find_in(std::span<const option> options, std::string_view key) {
    for (const auto& opt : options) {
        if (iequals(opt.name, key)) return &opt;
    }
    return nullptr;
}

const option* find_option(std::string_view key, string_form form) {
    if (const option* opt = find_in(common_options, key)) return opt;
    switch (form) {
        case string_form::comma:
            return nullptr;
        case string_form::semicolon:
            return find_in(semicolon_only_options, key);
        case string_form::url:
            return find_in(url_only_options, key);
    }
    return nullptr;
}

bool apply_option(parse_context& ctx, std::string_view key, std::string_view value,
                  string_form form) {
    const option* opt = find_option(key, form);
    if (opt == nullptr) {
        std::string where = " in connection string";
        if (form == string_form::url) where = " in URL query";
        if (form == string_form::semicolon) where = " in semicolon-separated connection string";
        return ctx.fail("unknown key " + quoted(key) + where);
    }
    return opt->set(ctx, key, value);
}

// ------------------------------------------------------------------------------------------------
// Endpoints: host, host:port, [v6], [v6]:port

bool parse_port(parse_context& ctx, std::string_view text, std::string_view port,
                std::uint16_t& out) {
    if (port.empty()) return ctx.fail("endpoint " + quoted(text) + " has an empty port");
    std::uint64_t number = 0;
    switch (parse_unsigned(port, 65535, number)) {
        case number_status::ok:
            if (number == 0) break;
            out = static_cast<std::uint16_t>(number);
            return true;
        case number_status::malformed:
            return ctx.fail("port " + quoted(port) + " of " + quoted(text) + " is not a number");
        case number_status::too_large:
            break;
    }
    return ctx.fail("port " + quoted(port) + " of " + quoted(text) + " is out of range 1..65535");
}

// Characters that cannot be part of a host name and usually mean a malformed string (for
// instance a comma-separated host list inside a URL).
bool check_host_chars(parse_context& ctx, std::string_view text, std::string_view host) {
    for (char c : host) {
        if (is_space(c) || std::string_view(",/?#@[]").find(c) != std::string_view::npos) {
            return ctx.fail("host " + quoted(host) + " of " + quoted(text) +
                            " contains the invalid character " + quoted(std::string_view(&c, 1)));
        }
    }
    return true;
}

// Splits a bracketed IPv6 literal: "[::1]:6379" -> host "::1", port text "6379".
bool split_bracketed(parse_context& ctx, std::string_view text, std::string_view& host,
                     std::string_view& port, bool& has_port) {
    auto close = text.find(']');
    if (close == std::string_view::npos) {
        return ctx.fail("endpoint " + quoted(text) + " has no closing ']'");
    }
    host = text.substr(1, close - 1);
    auto after = text.substr(close + 1);
    has_port = !after.empty();
    if (has_port && after.front() != ':') {
        return ctx.fail("endpoint " + quoted(text) + " has " + quoted(after) +
                        " after ']', expected ':port'");
    }
    if (has_port) port = after.substr(1);
    return true;
}

// Splits "host", "host:port", "[v6]" or "[v6]:port" and checks the host; the port is left as text.
bool split_endpoint(parse_context& ctx, std::string_view text, std::string_view& host,
                    std::string_view& port, bool& has_port) {
    host = text;
    has_port = false;
    if (!text.empty() && text.front() == '[') {
        if (!split_bracketed(ctx, text, host, port, has_port)) return false;
    } else {
        auto colon = text.find(':');
        if (colon != text.rfind(':')) {
            return ctx.fail("endpoint " + quoted(text) +
                            " has several ':'; write IPv6 addresses in brackets, "
                            "e.g. '[::1]:6379'");
        }
        has_port = colon != std::string_view::npos;
        host = text.substr(0, colon);
        if (has_port) port = text.substr(colon + 1);
        if (!check_host_chars(ctx, text, host)) return false;
    }
    if (host.empty()) return ctx.fail("endpoint " + quoted(text) + " has an empty host");
    return true;
}

bool parse_endpoint(parse_context& ctx, std::string_view text, endpoint& out) {
    std::string_view host;
    std::string_view port;
    bool has_port = false;
    if (!split_endpoint(ctx, text, host, port, has_port)) return false;

    endpoint ep;
    ep.host = host;
    if (has_port && !parse_port(ctx, text, port, ep.port)) return false;
    out = std::move(ep);
    return true;
}

// ------------------------------------------------------------------------------------------------
// The comma form

bool parse_comma_form(parse_context& ctx, std::string_view text) {
    bool seen_entry = false;
    bool seen_endpoint = false;
    for (auto entry : split(text, ',')) {
        entry = trim(entry);
        if (entry.empty()) continue;  // e.g. a trailing comma
        seen_entry = true;

        auto eq = entry.find('=');
        if (eq == std::string_view::npos) {
            endpoint ep;
            if (!parse_endpoint(ctx, entry, ep)) return false;
            // The first endpoint replaces the default one; later ones extend the list.
            if (!seen_endpoint) ctx.cfg.endpoints.clear();
            seen_endpoint = true;
            ctx.cfg.endpoints.push_back(std::move(ep));
            continue;
        }
        // Split at the first '=' only, so that values (passwords) may contain '='.
        auto key = trim(entry.substr(0, eq));
        auto value = trim(entry.substr(eq + 1));
        if (key.empty()) return ctx.fail("empty key in entry " + quoted(entry));
        if (!apply_option(ctx, key, value, string_form::comma)) return false;
    }
    if (!seen_entry) return ctx.fail("connection string has no entries");
    return true;
}

// ------------------------------------------------------------------------------------------------
// The semicolon form: server=host:port;password=...;ssl=true

// The keys that name the endpoint. The comma form has none of them, so a string that starts with
// one of them is the semicolon form.
bool is_endpoint_key(std::string_view key) {
    return iequals(key, "server") || iequals(key, "host") || iequals(key, "port");
}

// The first element decides: one followed by ';', or a leading server=, host= or port=. A ';' in
// a value of the comma form ("localhost,password=a;b") is thus left alone unless that value
// belongs to the very first element.
bool is_semicolon_form(std::string_view text) {
    auto end = text.find_first_of(",;");
    if (end != std::string_view::npos && text[end] == ';') return true;
    auto first = text.substr(0, end);
    auto eq = first.find('=');
    return eq != std::string_view::npos && is_endpoint_key(trim(first.substr(0, eq)));
}

// "server=localhost:6379,password=x" mixes the comma form in: say so instead of reporting an
// odd host name.
bool check_not_an_option(parse_context& ctx, std::string_view key, std::string_view value) {
    if (value.find('=') == std::string_view::npos) return true;
    return ctx.fail(std::string(key) + ": " + quoted(value) +
                    " is not an endpoint; separate options with ';'");
}

// server=a:1 or server=a:1,b:2; every server= entry extends the list.
bool parse_server_value(parse_context& ctx, std::string_view key, std::string_view value,
                        std::vector<endpoint>& out) {
    bool seen_endpoint = false;
    for (auto item : split(value, ',')) {
        item = trim(item);
        if (item.empty()) continue;
        if (!check_not_an_option(ctx, key, item)) return false;
        endpoint ep;
        if (!parse_endpoint(ctx, item, ep)) return ctx.fail(std::string(key) + ": " + ctx.problem);
        out.push_back(std::move(ep));
        seen_endpoint = true;
    }
    if (!seen_endpoint) {
        return ctx.fail(std::string(key) + ": " + quoted(value) + " names no endpoint");
    }
    return true;
}

// host=name, host=10.0.0.1 or host=[::1]; the port goes in port=.
bool parse_host_value(parse_context& ctx, std::string_view key, std::string_view value,
                      std::optional<std::string>& out) {
    if (!check_not_an_option(ctx, key, value)) return false;
    std::string_view host;
    std::string_view port;
    bool has_port = false;
    if (!split_endpoint(ctx, value, host, port, has_port)) {
        return ctx.fail(std::string(key) + ": " + ctx.problem);
    }
    if (has_port) {
        return ctx.fail(std::string(key) + ": " + quoted(value) +
                        " includes a port; write it in port= or use server=host:port");
    }
    out = std::string(host);
    return true;
}

bool parse_port_value(parse_context& ctx, std::string_view key, std::string_view value,
                      std::optional<std::uint16_t>& out) {
    std::uint64_t number = 0;
    if (parse_unsigned(value, 65535, number) != number_status::ok || number == 0) {
        return ctx.fail(std::string(key) + ": " + quoted(value) +
                        " is not a port number (1..65535)");
    }
    out = static_cast<std::uint16_t>(number);
    return true;
}

bool parse_semicolon_form(parse_context& ctx, std::string_view text) {
    bool seen_entry = false;
    std::vector<endpoint> servers;
    std::optional<std::string> host;
    std::optional<std::uint16_t> port;
    for (auto entry : split(text, ';')) {
        entry = trim(entry);
        if (entry.empty()) continue;  // e.g. a trailing ';'
        seen_entry = true;

        auto eq = entry.find('=');
        if (eq == std::string_view::npos) {
            return ctx.fail("entry " + quoted(entry) +
                            " of a semicolon-separated connection string is not key=value "
                            "(an endpoint is written server=host:port)");
        }
        auto key = trim(entry.substr(0, eq));
        auto value = trim(entry.substr(eq + 1));
        if (key.empty()) return ctx.fail("empty key in entry " + quoted(entry));

        bool ok = false;
        if (iequals(key, "server")) {
            ok = parse_server_value(ctx, key, value, servers);
        } else if (iequals(key, "host")) {
            ok = parse_host_value(ctx, key, value, host);
        } else if (iequals(key, "port")) {
            ok = parse_port_value(ctx, key, value, port);
        } else {
            ok = apply_option(ctx, key, value, string_form::semicolon);
        }
        if (!ok) return false;
    }
    if (!seen_entry) return ctx.fail("connection string has no entries");

    if (!servers.empty() && (host || port)) {
        return ctx.fail("server= cannot be combined with host= or port=; write server=host:port");
    }
    if (!servers.empty()) {
        ctx.cfg.endpoints = std::move(servers);
    } else if (host || port) {
        endpoint ep;
        if (host) ep.host = std::move(*host);
        if (port) ep.port = *port;
        ctx.cfg.endpoints = {std::move(ep)};
    }
    return true;
}

// ------------------------------------------------------------------------------------------------
// URLs

int hex_value(char c) {
    if (is_digit(c)) return c - '0';
    c = to_lower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

// Decodes %XX escapes. '+' stays '+': these are URI components, not HTML form data, and a '+'
// in a password must survive.
bool percent_decode(parse_context& ctx, std::string_view what, std::string_view text,
                    std::string& out) {
    out.clear();
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '%') {
            out += text[i];
            continue;
        }
        int high = i + 1 < text.size() ? hex_value(text[i + 1]) : -1;
        int low = i + 2 < text.size() ? hex_value(text[i + 2]) : -1;
        if (high < 0 || low < 0) {
            // Only the broken escape is quoted: `what` may be a password.
            return ctx.fail("bad percent-encoding " + quoted(text.substr(i, 3)) + " in " +
                            std::string(what));
        }
        out += static_cast<char>(high * 16 + low);
        i += 2;
    }
    return true;
}

// "user:password", ":password" or "user", as redis-py reads them.
bool parse_userinfo(parse_context& ctx, std::string_view userinfo) {
    auto colon = userinfo.find(':');
    if (!percent_decode(ctx, "user", userinfo.substr(0, colon), ctx.cfg.username)) return false;
    if (colon == std::string_view::npos) return true;
    return percent_decode(ctx, "password", userinfo.substr(colon + 1), ctx.cfg.password);
}

// "/2" selects database 2; "" and "/" keep the default.
bool parse_url_path_database(parse_context& ctx, std::string_view path) {
    if (path.size() <= 1) return true;
    auto db = path.substr(1);
    std::uint64_t number = 0;
    if (parse_unsigned(db, INT_MAX, number) != number_status::ok) {
        return ctx.fail("database " + quoted(db) + " in URL path is not a non-negative integer");
    }
    ctx.cfg.database = static_cast<int>(number);
    return true;
}

bool parse_url_query(parse_context& ctx, std::string_view query) {
    for (auto item : split(query, '&')) {
        if (item.empty()) continue;
        auto eq = item.find('=');
        if (eq == std::string_view::npos) {
            return ctx.fail("query parameter " + quoted(item) +
                            " has no value (expected key=value)");
        }
        auto key = item.substr(0, eq);
        if (key.empty()) return ctx.fail("empty key in query parameter " + quoted(item));
        std::string value;
        if (!percent_decode(ctx, key, item.substr(eq + 1), value)) return false;
        if (!apply_option(ctx, key, value, string_form::url)) return false;
    }
    return true;
}

bool parse_unix_url(parse_context& ctx, std::string_view host, std::string_view path) {
    if (!host.empty()) {
        return ctx.fail("unix URL names the host " + quoted(host) +
                        "; write unix:///path/to/socket");
    }
    if (!percent_decode(ctx, "socket path", path, ctx.cfg.unix_socket)) return false;
    // "/" alone is a directory, never a socket: treat it like a missing path.
    if (ctx.cfg.unix_socket.empty() || ctx.cfg.unix_socket == "/") {
        return ctx.fail("unix URL has an empty socket path; write unix:///path/to/socket");
    }
    return true;
}

// "host[:port]" or a comma list of them (a cluster's seeds, a failover list).
bool parse_tcp_url(parse_context& ctx, std::string_view hostports, std::string_view path) {
    if (hostports.empty()) return ctx.fail("URL has no host");
    ctx.cfg.endpoints.clear();
    for (auto hostport : split(hostports, ',')) {
        if (hostport.empty()) return ctx.fail("URL has an empty host in " + quoted(hostports));
        endpoint ep;
        if (!parse_endpoint(ctx, hostport, ep)) return false;
        ctx.cfg.endpoints.push_back(std::move(ep));
    }
    return parse_url_path_database(ctx, path);
}

// `rest` is everything after "scheme://". The query is applied last, so its keys override what
// the rest of the URL says.
bool parse_url(parse_context& ctx, std::string_view scheme, std::string_view rest) {
    const bool is_unix = iequals(scheme, "unix");
    const bool is_cluster = iequals(scheme, "redis+cluster") || iequals(scheme, "rediss+cluster");
    const bool is_tls = iequals(scheme, "rediss") || iequals(scheme, "rediss+cluster");
    if (!is_unix && !is_tls && !is_cluster && !iequals(scheme, "redis")) {
        return ctx.fail("unsupported URL scheme " + quoted(scheme) +
                        " (expected redis, rediss, redis+cluster, rediss+cluster or unix)");
    }
    ctx.cfg.cluster = is_cluster;

    auto question = rest.find('?');
    std::string_view query;
    if (question != std::string_view::npos) {
        query = rest.substr(question + 1);
        rest = rest.substr(0, question);
    }
    auto slash = rest.find('/');
    auto authority = rest.substr(0, slash);
    auto path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);

    // The last '@' ends the user info, as in Python's urlsplit.
    auto at = authority.rfind('@');
    if (at != std::string_view::npos) {
        if (!parse_userinfo(ctx, authority.substr(0, at))) return false;
        authority.remove_prefix(at + 1);
    }

    ctx.cfg.use_tls = is_tls;
    bool ok = is_unix ? parse_unix_url(ctx, authority, path) : parse_tcp_url(ctx, authority, path);
    return ok && parse_url_query(ctx, query);
}

// "scheme://" with an RFC 3986 scheme name. Anything else is the comma form, whose values may
// well contain "://" themselves (a password, say).
bool split_scheme(std::string_view text, std::string_view& scheme, std::string_view& rest) {
    auto pos = text.find("://");
    if (pos == std::string_view::npos || pos == 0 || !is_alpha(text.front())) return false;
    auto name = text.substr(0, pos);
    bool valid = std::all_of(name.begin(), name.end(), [](char c) {
        return is_alpha(c) || is_digit(c) || c == '+' || c == '-' || c == '.';
    });
    if (!valid) return false;
    scheme = name;
    rest = text.substr(pos + 3);
    return true;
}

}  // namespace

config parse_config(std::string_view text, boost::system::error_code& ec, diagnostics& diag) {
    ec.clear();
    diag.clear();

    parse_context ctx;
    text = trim(text);
    bool ok = false;
    std::string_view scheme;
    std::string_view rest;
    if (text.empty()) {
        ok = ctx.fail("connection string is empty");
    } else if (split_scheme(text, scheme, rest)) {
        ok = parse_url(ctx, scheme, rest);
    } else if (is_semicolon_form(text)) {
        ok = parse_semicolon_form(ctx, text);
    } else {
        ok = parse_comma_form(ctx, text);
    }

    if (ok && ctx.cfg.cluster) {
        // What a cluster cannot do, said now rather than at async_run.
        if (ctx.cfg.database != 0)
            ok = ctx.fail("database " + std::to_string(ctx.cfg.database) +
                          ": a Redis Cluster has database 0 only");
        else if (!ctx.cfg.service_name.empty())
            ok = ctx.fail("serviceName: Sentinel and cluster=true cannot be combined");
        else if (!ctx.cfg.unix_socket.empty())
            ok = ctx.fail("a Redis Cluster is reached over TCP, not a Unix socket");
    }
    if (!ok) {
        ec = error::bad_config;
        diag.set_client_message(ctx.problem);
        return config{};
    }
    return std::move(ctx.cfg);
}

config parse_config(std::string_view text) {
    boost::system::error_code ec;
    diagnostics diag;
    config cfg = parse_config(text, ec, diag);
    throw_on_error(ec, diag);
    return cfg;
}

}  // namespace redcoord
