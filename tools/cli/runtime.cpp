// Connecting and running one command: the URL (never echoed with its password), the bounded
// connect, the exit codes, and the graceful close.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli.hpp"

namespace redcoord::cli {

namespace {

using boost::system::error_code;
using std::chrono::milliseconds;

bool iequals_prefix(std::string_view text, std::size_t at, std::string_view word) {
    if (text.size() - at < word.size()) return false;
    for (std::size_t i = 0; i < word.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(text[at + i])) != word[i]) return false;
    return true;
}

// The password of a URL's user info ("redis://user:secret@host"), as the parser splits it:
// the query and the path first, then the last '@' of the authority.
std::optional<std::pair<std::size_t, std::size_t>> url_password(std::string_view text) {
    const auto scheme_end = text.find("://");
    if (scheme_end == std::string_view::npos) return std::nullopt;
    const std::size_t start = scheme_end + 3;
    std::string_view rest = text.substr(start);
    rest = rest.substr(0, rest.find('?'));
    rest = rest.substr(0, rest.find('/'));
    const auto at = rest.rfind('@');
    if (at == std::string_view::npos) return std::nullopt;
    const auto colon = rest.substr(0, at).find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    return std::pair{start + colon + 1, at - colon - 1};
}

// Every "password=<value>" of the comma, semicolon or query forms (key case-insensitive; the
// value ends at ',', ';' or '&').
std::vector<std::pair<std::size_t, std::size_t>> keyed_passwords(std::string_view text) {
    std::vector<std::pair<std::size_t, std::size_t>> out;
    const std::string_view key = "password=";
    for (std::size_t i = 0; i + key.size() <= text.size(); ++i) {
        if (!iequals_prefix(text, i, key)) continue;
        const bool starts = i == 0 || text[i - 1] == ',' || text[i - 1] == ';' ||
                            text[i - 1] == '?' || text[i - 1] == '&';
        if (!starts) continue;
        const std::size_t from = i + key.size();
        std::size_t to = text.find_first_of(",;&", from);
        if (to == std::string_view::npos) to = text.size();
        out.emplace_back(from, to - from);
        i = to;
    }
    return out;
}

// The secrets written in a connection string: its passwords.
std::vector<std::string> secrets_of(std::string_view text) {
    std::vector<std::string> out;
    if (auto p = url_password(text)) out.emplace_back(text.substr(p->first, p->second));
    for (auto [at, n] : keyed_passwords(text)) out.emplace_back(text.substr(at, n));
    return out;
}

// The connection string as it may be shown: its passwords as "***".
std::string masked(std::string_view text) {
    std::vector<std::pair<std::size_t, std::size_t>> spans = keyed_passwords(text);
    if (auto p = url_password(text)) spans.push_back(*p);
    std::sort(spans.begin(), spans.end());
    std::string out;
    std::size_t from = 0;
    for (auto [at, n] : spans) {
        if (at < from) continue;
        out.append(text.substr(from, at - from)).append("***");
        from = at + n;
    }
    out.append(text.substr(from));
    return out;
}

// text with every secret replaced by "***".
std::string redact(std::string text, const std::vector<std::string>& secrets) {
    for (const auto& s : secrets) {
        if (s.empty()) continue;
        for (auto at = text.find(s); at != std::string::npos; at = text.find(s, at + 3))
            text.replace(at, s.size(), "***");
    }
    return text;
}

// "5s", "500ms", "2m", or a bare number of milliseconds; positive, at most a day.
std::optional<milliseconds> parse_duration(std::string_view text) {
    double value = 0;
    const char* end = text.data() + text.size();
    auto [p, ec] = std::from_chars(text.data(), end, value);
    if (ec != std::errc() || p == text.data()) return std::nullopt;
    const std::string_view unit(p, static_cast<std::size_t>(end - p));
    double scale = 0;
    if (unit.empty() || unit == "ms")
        scale = 1;
    else if (unit == "s")
        scale = 1000;
    else if (unit == "m")
        scale = 60'000;
    else
        return std::nullopt;
    const double ms = value * scale;
    if (!(ms >= 1) || ms > 86'400'000) return std::nullopt;
    return milliseconds(static_cast<std::int64_t>(ms));
}

// What the command's coroutine hands back to run(): its exit code and the message to print.
struct outcome {
    int code = 0;
    std::string message;
};

asio::awaitable<outcome> run_command(context& c, const selection& sel, bool& connected,
                                     asio::steady_timer& connect_deadline) {
    outcome out;
    try {
        // The first reply says the connection is up (the handshake is done before it).
        request ping;
        ping.push("PING");
        diagnostics diag;
        ignore_t reply;
        auto [ec, n] = co_await c.conn.async_exec(ping, reply, diag, nothrow);
        check(ec, "cannot reach Redis", &diag);
        connected = true;
        connect_deadline.cancel();
        out.code = co_await sel.run(c);
    } catch (const usage_error& e) {
        out = {2, e.what()};
    } catch (const std::exception& e) {
        out = {1, e.what()};
    }
    // Best effort and bounded by the request timeout: the inspector holds nothing.
    co_await c.session.async_close(nothrow);
    c.conn.cancel();
    co_return out;
}

}  // namespace

void check(error_code ec, std::string_view what, const diagnostics* diag) {
    if (!ec) return;
    std::string text = std::string(what) + ": " + ec.message();
    if (diag && !diag->message().empty() && diag->message() != ec.message())
        text += ": " + diag->message();
    throw failure(text);
}

int run(const global_options& g, const selection& sel) {
    std::string url = g.url;
    std::string source = "--url";
    if (url.empty()) {
        const char* env = std::getenv("REDIS_URL");
        url = env && *env ? env : "redis://127.0.0.1:6379";
        source = env && *env ? "REDIS_URL" : "the default URL";
    }
    std::vector<std::string> secrets = secrets_of(url);
    auto say = [&](const std::string& message) {
        std::cerr << "redcoord: " << redact(message, secrets) << '\n';
    };

    const auto timeout = parse_duration(g.timeout);
    if (!timeout) {
        say("--timeout: '" + g.timeout + "' is not a duration in (0, 1 day] (e.g. 500ms, 5s, 1m)");
        return 2;
    }
    error_code ec;
    diagnostics diag;
    config cfg = parse_config(url, ec, diag);
    if (ec) {
        say(source + ": " + (diag.message().empty() ? ec.message() : diag.message()));
        return 2;
    }
    secrets.push_back(cfg.password);
    cfg.connect_timeout = *timeout;
    cfg.request_timeout = *timeout;
    cfg.connect_retry = 1;
    cfg.abort_connect = true;
    cfg.client_name = "redcoord-cli";

    asio::io_context ioc;
    connection conn(ioc.get_executor());
    session_options so;
    so.prefix = g.prefix;
    so.statistics_interval = milliseconds(0);  // the inspector's own locks are not the cluster's
    std::optional<session> s;
    try {
        s.emplace(conn, so);
    } catch (const error_with_diagnostics& e) {
        std::string_view why = e.get_diagnostics().message();
        if (why.starts_with("prefix: ")) why.remove_prefix(8);
        say("--prefix: " + std::string(why));
        return 2;
    }
    context c{conn, *s, g};

    // Connecting is bounded: one attempt of connect_timeout (a Sentinel or a cluster may need
    // a few round trips more), then the command's requests, each bounded by request_timeout.
    // When connecting fails the inspector holds nothing in Redis: it says so and exits at
    // once, without waiting for the pending requests to unwind.
    bool connected = false;
    auto give_up = [&](const std::string& message) {
        say(message);
        std::cerr.flush();
        std::cout.flush();
        std::_Exit(1);
    };
    const milliseconds bound = 2 * *timeout + milliseconds(1000);
    asio::steady_timer connect_deadline(ioc, bound);
    connect_deadline.async_wait([&](error_code wec) {
        if (wec || connected) return;
        give_up("cannot reach Redis at " + masked(url) + ": no connection within " +
                std::to_string(bound.count()) + " ms");
    });
    conn.async_run(cfg, [&](error_code rec) {
        if (!rec || rec == asio::error::operation_aborted || connected) return;
        std::string text = "cannot connect to " + masked(url) + ": " + rec.message();
        if (const auto& rd = conn.run_diagnostics(); !rd.message().empty())
            text += ": " + rd.message();
        give_up(text);
    });
    std::optional<outcome> result;
    asio::co_spawn(ioc, run_command(c, sel, connected, connect_deadline),
                   [&](std::exception_ptr ep, outcome o) {
                       result = ep ? outcome{1, "unexpected failure"} : std::move(o);
                   });
    ioc.run();
    if (!result) result = outcome{1, "stopped before the command completed"};
    if (!result->message.empty()) say(result->message);
    return result->code;
}

std::chrono::milliseconds duration_option(std::string_view option, const std::string& text) {
    const auto d = parse_duration(text);
    if (!d)
        throw usage_error(std::string(option) + ": '" + text +
                          "' is not a duration in (0, 1 day] (e.g. 500ms, 5s, 1m)");
    return *d;
}

}  // namespace redcoord::cli
