// The dashboard's server, in three parts: connections and the live stream (dashboard.cpp),
// what it keeps and pushes (live.cpp: events, chart samples, snapshots), and the requests it
// answers (api.cpp: the page, the JSON API, the actions).
#pragma once

#include <redcoord/events.hpp>
#include <redcoord/membership.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "dashboard.hpp"
#include "http_util.hpp"
#include "views.hpp"

namespace redcoord::tools::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using boost::system::error_code;
using tcp = asio::ip::tcp;
using request = http::request<http::string_body>;
using response = http::response<http::string_body>;

inline constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

inline std::int64_t now_ms() { return unix_ms(std::chrono::system_clock::now()); }

// A browser on /api/stream: what it has yet to be sent, and the timer its writer sleeps on.
struct sse_client {
    explicit sse_client(const asio::any_io_executor& ex) : wake(ex) {}
    std::deque<std::string> queue;
    asio::steady_timer wake;
    bool closed = false;
};

class dashboard_impl : public std::enable_shared_from_this<dashboard_impl> {
  public:
    dashboard_impl(session& s, dashboard_options o, tcp::endpoint at);

    const dashboard_options& options() const noexcept { return opts_; }
    tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }
    asio::any_io_executor executor() { return acceptor_.get_executor(); }

    asio::awaitable<error_code> run();
    void stop();

  private:
    // dashboard.cpp: connections and the live stream.
    static asio::awaitable<void> serve(std::shared_ptr<dashboard_impl> self,
                                       std::list<beast::tcp_stream>::iterator it);
    bool is_stream(const request& req) const;
    bool host_allowed(const request& req) const;
    asio::awaitable<void> stream_to(beast::tcp_stream& stream, const request& req);
    static std::string message(std::string_view event, const json::value& data);
    void broadcast(const std::string& text);
    void start_pushing();
    static asio::awaitable<void> push_loop(std::shared_ptr<dashboard_impl> self);

    // live.cpp: events, samples, snapshots.
    void remember(json::object event);
    void listen_to_events();
    static asio::awaitable<void> sample_loop(std::shared_ptr<dashboard_impl> self);
    json::object info() const;
    json::array charts() const { return json::array(samples_.begin(), samples_.end()); }
    void observe_leaders(const json::array& leaders);
    json::object leader_history() const;
    asio::awaitable<json::value> health();
    asio::awaitable<json::object> snapshot();

    // api.cpp: requests.
    asio::awaitable<response> answer(const request& req);
    asio::awaitable<response> api(const request& req, std::string_view path,
                                  std::string_view query);
    asio::awaitable<response> job_list(std::map<std::string, std::string> q);
    std::optional<response> refuse_action(const request& req) const;
    asio::awaitable<response> act(std::string_view action, std::string name);

    dashboard_options opts_;
    views views_;
    tcp::acceptor acceptor_;
    asio::steady_timer tick_;
    asio::steady_timer sample_timer_;
    std::list<beast::tcp_stream> streams_;
    std::list<std::shared_ptr<sse_client>> clients_;
    bool stopped_ = false;
    bool pushing_ = false;
    std::string last_snapshot_;
    std::deque<json::value> events_;
    std::deque<json::value> samples_;
    std::map<std::string, json::array> leader_history_;
    json::value health_;
    std::chrono::steady_clock::time_point health_at_{};
    std::uint64_t jobs_succeeded_ = 0;
    membership::watch member_watch_;
    subscription job_events_;
};

}  // namespace redcoord::tools::detail
