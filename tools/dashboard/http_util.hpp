// What the dashboard's HTTP server needs besides Beast: the listen address, URL decoding, query
// strings and form bodies, the Host check, the token check, and JSON error bodies.
#pragma once

#include <boost/asio/ip/tcp.hpp>

#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace redcoord::tools::detail {

/// "host:port" as an endpoint; throws error_with_diagnostics (error::bad_config) naming what is
/// wrong, and for a non-loopback address unless allow_remote.
boost::asio::ip::tcp::endpoint parse_listen(const std::string& listen, bool allow_remote);

/// %XX and '+' (in a query or form) decoded; nullopt for a malformed escape.
std::optional<std::string> url_decode(std::string_view in, bool plus_is_space);

/// "a=1&b=x%20y" → {a: "1", b: "x y"}; a malformed pair is skipped.
std::map<std::string, std::string> parse_query(std::string_view query);

/// A connection string or URL without its user information ("redis://u:p@h:1" → "redis://h:1")
/// and without a "password=..." element of the comma or semicolon forms.
std::string without_secrets(std::string_view url);

/// Whether a Host header names this machine (localhost, 127.x, ::1), with or without a port.
bool is_loopback_host(std::string_view host);

/// Compares in time independent of where they differ.
bool same_secret(std::string_view a, std::string_view b) noexcept;

/// {"error": message} as JSON text.
std::string json_error(std::string_view message);

}  // namespace redcoord::tools::detail
