// Context for an error: the server's own message, or which input was wrong.
#pragma once

#include <boost/system/system_error.hpp>

#include <string>
#include <string_view>

namespace redcoord {

/// Server text and client context for the last error of an operation. An error_code says
/// what kind of failure it was; diagnostics say which one, in words.
class diagnostics {
public:
    /// The server's error text (e.g. "WRONGPASS invalid username-password pair ...").
    const std::string& server_message() const noexcept { return server_; }

    /// A message produced by redcoord itself (e.g. "connectTimeout: '-3' is not a duration").
    const std::string& client_message() const noexcept { return client_; }

    /// The most useful one: the server's text when there is one, else the client's.
    const std::string& message() const noexcept { return server_.empty() ? client_ : server_; }

    void set_server_message(std::string_view m) { server_.assign(m); }
    void set_client_message(std::string_view m) { client_.assign(m); }
    void clear() noexcept {
        server_.clear();
        client_.clear();
    }
    bool empty() const noexcept { return server_.empty() && client_.empty(); }

private:
    std::string server_;
    std::string client_;
};

/// The exception the throwing paths of redcoord use: the error code plus the diagnostics,
/// whose text is part of what().
class error_with_diagnostics : public boost::system::system_error {
public:
    error_with_diagnostics(const boost::system::error_code& ec, const diagnostics& diag)
        : boost::system::system_error(ec, diag.message()), diag_(diag) {}
    const diagnostics& get_diagnostics() const noexcept { return diag_; }

private:
    diagnostics diag_;
};

/// Throws error_with_diagnostics when ec holds an error.
inline void throw_on_error(const boost::system::error_code& ec, const diagnostics& diag = {}) {
    if (ec) throw error_with_diagnostics(ec, diag);
}

}  // namespace redcoord
