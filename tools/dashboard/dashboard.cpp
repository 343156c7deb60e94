#include "dashboard.hpp"

#include <redcoord/diagnostics.hpp>
#include <redcoord/error.hpp>
#include <redcoord/events.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <charconv>
#include <deque>
#include <list>
#include <map>

#include "assets.hpp"
#include "http_util.hpp"
#include "views.hpp"

namespace redcoord::tools {
namespace detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using boost::system::error_code;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
using request = http::request<http::string_body>;
using response = http::response<http::string_body>;

// How many events the tail keeps, how many chart samples (one per sample_every), and how many
// messages a browser may be behind before it is dropped.
constexpr std::size_t tail_size = 200;
constexpr std::size_t chart_size = 120;
constexpr auto sample_every = 5s;
constexpr auto push_every = 1s;
constexpr auto push_at_most_every = 250ms;
constexpr auto health_every = 10s;
constexpr std::size_t client_backlog = 64;

response json_reply(http::status status, const json::value& body) {
    response res;
    res.result(status);
    res.set(http::field::content_type, "application/json");
    res.body() = json::serialize(body);
    return res;
}

response error_reply(http::status status, std::string_view message) {
    response res;
    res.result(status);
    res.set(http::field::content_type, "application/json");
    res.body() = json_error(message);
    return res;
}

std::int64_t now_ms() { return unix_ms(std::chrono::system_clock::now()); }

// "12" as a number in [low, high]; nullopt otherwise.
std::optional<std::uint64_t> number_in(std::string_view text, std::uint64_t low,
                                       std::uint64_t high) {
    std::uint64_t n = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size() || n < low ||
        n > high)
        return std::nullopt;
    return n;
}

// The token of an action: the Authorization header's bearer token, else a "token" field of
// the body (a form or a JSON object).
std::string token_of(const request& req) {
    const std::string_view auth = req[http::field::authorization];
    if (auth.starts_with("Bearer ")) return std::string(auth.substr(7));
    const std::string_view type = req[http::field::content_type];
    if (type.starts_with("application/x-www-form-urlencoded")) {
        auto form = parse_query(req.body());
        return form["token"];
    }
    if (type.starts_with("application/json")) {
        error_code ec;
        const auto v = json::parse(req.body(), ec);
        if (!ec && v.is_object())
            if (const auto* t = v.as_object().if_contains("token"); t && t->is_string())
                return std::string(t->as_string());
    }
    return {};
}

std::string job_states_text() {
    return "waiting, scheduled, queued, running, retrying, succeeded, failed, cancelled";
}

}  // namespace

// A browser on /api/stream: what it has yet to be sent, and the timer its writer sleeps on.
struct sse_client {
    explicit sse_client(const asio::any_io_executor& ex) : wake(ex) {}
    std::deque<std::string> queue;
    asio::steady_timer wake;
    bool closed = false;
};

class dashboard_impl : public std::enable_shared_from_this<dashboard_impl> {
  public:
    dashboard_impl(session& s, dashboard_options o, tcp::endpoint at)
        : opts_(std::move(o)),
          views_(s, opts_.scheduler),
          acceptor_(s.get_executor()),
          tick_(s.get_executor()),
          sample_timer_(s.get_executor()) {
        opts_.url_shown = without_secrets(opts_.url_shown);
        acceptor_.open(at.protocol());
        acceptor_.set_option(tcp::acceptor::reuse_address(true));
        acceptor_.bind(at);
        acceptor_.listen();
    }

    const dashboard_options& options() const noexcept { return opts_; }
    tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }
    asio::any_io_executor executor() { return acceptor_.get_executor(); }

    asio::awaitable<error_code> run() {
        auto self = shared_from_this();
        listen_to_events();
        asio::co_spawn(executor(), sample_loop(self), asio::detached);
        for (;;) {
            auto [ec, sock] = co_await acceptor_.async_accept(nothrow);
            if (stopped_ || ec == asio::error::operation_aborted) {
                stop();
                co_return error_code(asio::error::operation_aborted);
            }
            if (ec) continue;  // a connection that failed before it was accepted
            auto it = streams_.emplace(streams_.end(), std::move(sock));
            asio::co_spawn(executor(), serve(self, it), asio::detached);
        }
    }

    void stop() {
        stopped_ = true;
        error_code ignored;
        acceptor_.close(ignored);
        tick_.cancel();
        sample_timer_.cancel();
        member_watch_ = membership::watch();
        job_events_.unsubscribe();
        for (auto& c : clients_) {
            c->closed = true;
            c->wake.cancel();
        }
        for (auto& st : streams_) st.close();
    }

  private:
    // ---- connections ---------------------------------------------------------------------

    static asio::awaitable<void> serve(std::shared_ptr<dashboard_impl> self,
                                       std::list<beast::tcp_stream>::iterator it) {
        auto& stream = *it;
        beast::flat_buffer buffer;
        for (;;) {
            request req;
            stream.expires_after(30s);
            http::request_parser<http::string_body> parser;
            parser.body_limit(64 * 1024);
            auto [ec, n] = co_await http::async_read(stream, buffer, parser, nothrow);
            if (ec) break;
            req = parser.release();
            if (self->is_stream(req)) {
                co_await self->stream_to(stream, req);
                break;
            }
            response res = co_await self->answer(req);
            res.set(http::field::server, "redcoord-dashboard");
            res.set(http::field::cache_control, "no-store");
            res.set("X-Content-Type-Options", "nosniff");
            res.version(req.version());
            res.keep_alive(req.keep_alive());
            if (req.method() == http::verb::head) {
                const auto size = res.body().size();
                res.body().clear();
                res.content_length(size);
            } else {
                res.prepare_payload();
            }
            auto [wec, wn] = co_await http::async_write(stream, res, nothrow);
            if (wec || !res.keep_alive() || self->stopped_) break;
        }
        error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
        stream.close();
        self->streams_.erase(it);
    }

    bool is_stream(const request& req) const {
        const std::string_view target = req.target();
        return req.method() == http::verb::get &&
               target.substr(0, target.find('?')) == "/api/stream" && host_allowed(req);
    }

    bool host_allowed(const request& req) const {
        return opts_.allow_remote || is_loopback_host(req[http::field::host]);
    }

    // ---- live updates (server-sent events) -------------------------------------------------

    asio::awaitable<void> stream_to(beast::tcp_stream& stream, const request& req) {
        http::response<http::empty_body> head(http::status::ok, req.version());
        head.set(http::field::content_type, "text/event-stream");
        head.set(http::field::cache_control, "no-store");
        head.set(http::field::server, "redcoord-dashboard");
        head.keep_alive(false);
        http::response_serializer<http::empty_body> sr(head);
        auto [hec, hn] = co_await http::async_write_header(stream, sr, nothrow);
        if (hec) co_return;
        stream.expires_never();

        auto client = std::make_shared<sse_client>(executor());
        client->queue.push_back("retry: 2000\n\n");
        client->queue.push_back(message("info", info()));
        json::array tail(events_.begin(), events_.end());
        client->queue.push_back(message("events", tail));
        if (!last_snapshot_.empty() && pushing_) client->queue.push_back(last_snapshot_);
        auto it = clients_.insert(clients_.end(), client);
        start_pushing();

        while (!client->closed && !stopped_) {
            if (client->queue.empty()) {
                client->wake.expires_after(15s);
                auto [ec] = co_await client->wake.async_wait(nothrow);
                if (!ec) client->queue.push_back(": keep-alive\n\n");
                continue;
            }
            const std::string text = std::move(client->queue.front());
            client->queue.pop_front();
            stream.expires_after(30s);
            auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(text), nothrow);
            if (wec) break;
        }
        clients_.erase(it);
    }

    static std::string message(std::string_view event, const json::value& data) {
        std::string out = "event: ";
        out.append(event);
        out.append("\ndata: ");
        out.append(json::serialize(data));
        out.append("\n\n");
        return out;
    }

    void broadcast(const std::string& text) {
        for (auto& c : clients_) {
            if (c->queue.size() >= client_backlog) {
                c->closed = true;  // too slow: it reconnects and starts afresh
            } else {
                c->queue.push_back(text);
            }
            c->wake.cancel();
        }
    }

    void start_pushing() {
        if (pushing_ || stopped_) {
            tick_.cancel();
            return;
        }
        pushing_ = true;
        asio::co_spawn(executor(), push_loop(shared_from_this()), asio::detached);
    }

    // A snapshot about once a second (sooner after an event), while a browser listens.
    static asio::awaitable<void> push_loop(std::shared_ptr<dashboard_impl> self) {
        while (!self->stopped_ && !self->clients_.empty()) {
            const auto started = std::chrono::steady_clock::now();
            const json::object snap = co_await self->snapshot();
            self->last_snapshot_ = message("snapshot", snap);
            self->broadcast(self->last_snapshot_);
            self->tick_.expires_at(started + push_every);
            co_await self->tick_.async_wait(nothrow);
            // Events wake it early, but never more often than this, however many come.
            while (!self->stopped_ &&
                   std::chrono::steady_clock::now() < started + push_at_most_every) {
                self->tick_.expires_at(started + push_at_most_every);
                co_await self->tick_.async_wait(nothrow);
            }
        }
        self->pushing_ = false;
    }

    // ---- events and samples ------------------------------------------------------------------

    void remember(json::object event) {
        events_.push_back(event);
        if (events_.size() > tail_size) events_.pop_front();
        json::array one;
        one.push_back(std::move(event));
        broadcast(message("events", one));
        if (pushing_) tick_.cancel();
    }

    void listen_to_events() {
        member_watch_ = views_.members().subscribe([this](const member_event& e) {
            json::object o;
            o["type"] = "member";
            o["at"] = now_ms();
            o["node"] = e.node;
            o["event"] = e.what == member_event::kind::joined ? "joined"
                         : e.what == member_event::kind::left ? "left"
                                                              : "dead";
            remember(std::move(o));
        });
        event_bus bus(views_.get_session());
        job_events_ = bus.subscribe<json::value>(
            views_.jobs().events_channel(), [this](error_code ec, const event<json::value>& ev) {
                if (ec || !ev.value.is_array()) return;
                for (const auto& step : ev.value.as_array()) {
                    if (!step.is_object()) continue;
                    json::object o = step.as_object();
                    if (const auto* s = o.if_contains("state"); s && *s == "succeeded")
                        ++jobs_succeeded_;
                    o["type"] = "job";
                    if (!o.contains("at")) o["at"] = now_ms();
                    remember(std::move(o));
                }
            });
    }

    // Cluster lock statistics every sample_every, as rates between two samples.
    static asio::awaitable<void> sample_loop(std::shared_ptr<dashboard_impl> self) {
        std::optional<lock_statistics> last;
        std::uint64_t last_jobs = 0;
        auto last_at = std::chrono::steady_clock::now();
        while (!self->stopped_) {
            auto [ec, stats] = co_await self->views_.monitor().async_cluster_statistics(nothrow);
            const auto at = std::chrono::steady_clock::now();
            if (!ec) {
                if (last) {
                    const double secs = std::chrono::duration<double>(at - last_at).count();
                    auto rate = [secs](std::uint64_t now, std::uint64_t before) {
                        return now >= before && secs > 0 ? double(now - before) / secs : 0.0;
                    };
                    json::object s;
                    s["at"] = now_ms();
                    s["acquisitions_per_s"] = rate(stats.acquisitions, last->acquisitions);
                    s["contended_per_s"] =
                        rate(stats.contended_acquisitions, last->contended_acquisitions);
                    s["jobs_succeeded_per_s"] = rate(self->jobs_succeeded_, last_jobs);
                    s["wait_mean_ms"] = double(stats.wait_mean.count()) / 1000.0;
                    s["wait_p99_ms"] = double(stats.wait_p99.count()) / 1000.0;
                    self->samples_.push_back(std::move(s));
                    if (self->samples_.size() > chart_size) self->samples_.pop_front();
                }
                last = stats;
                last_jobs = self->jobs_succeeded_;
                last_at = at;
            }
            self->sample_timer_.expires_after(sample_every);
            co_await self->sample_timer_.async_wait(nothrow);
        }
    }

    json::object info() const {
        json::object o;
        o["scheduler"] = opts_.scheduler;
        o["url"] = opts_.url_shown;
        o["prefix"] = views_.get_session().keys().prefix();
        o["node_id"] = views_.get_session().node_id();
        o["read_only"] = opts_.read_only;
        o["token_required"] = !opts_.token.empty();
        o["sample_every_ms"] = std::chrono::milliseconds(sample_every).count();
        return o;
    }

    json::array charts() const { return json::array(samples_.begin(), samples_.end()); }

    // Terms seen by this dashboard while it ran, per leadership (newest last).
    void observe_leaders(const json::array& leaders) {
        for (const auto& l : leaders) {
            const auto& o = l.as_object();
            auto& seen = leader_history_[std::string(o.at("name").as_string())];
            if (!seen.empty() && seen.back().as_object().at("term") == o.at("term")) continue;
            json::object h;
            h["term"] = o.at("term");
            h["node"] = o.at("node");
            h["since"] = o.at("since");
            h["seen_at"] = now_ms();
            seen.push_back(std::move(h));
            if (seen.size() > 50) seen.erase(seen.begin());
        }
    }

    json::object leader_history() const {
        json::object o;
        for (const auto& [name, terms] : leader_history_) o[name] = terms;
        return o;
    }

    asio::awaitable<json::value> health() {
        const auto now = std::chrono::steady_clock::now();
        if (health_.is_null() || now - health_at_ >= health_every) {
            health_ = co_await views_.health();
            health_at_ = now;
        }
        co_return health_;
    }

    // One read of a snapshot into out[name], or its error into errors[name].
    template <class Read>
    static asio::awaitable<void> read_into(json::object& out, json::object& errors,
                                           std::string_view name, const Read& read) {
        try {
            out[name] = co_await read();
        } catch (const std::exception& e) {
            errors[name] = e.what();
        }
    }

    // Everything the page shows but the job lists: what /api/stream pushes.
    asio::awaitable<json::object> snapshot() {
        json::object out, errors;
        out["at"] = now_ms();
        auto& v = views_;
        const auto nodes = [&v] { return v.nodes(); };
        const auto holders = [&v] { return v.holders(); };
        const auto contention = [&v] { return v.contention(); };
        const auto counts = [&v] { return v.job_counts(); };
        const auto recurring = [&v] { return v.recurring(); };
        const auto checked = [this] { return health(); };
        co_await read_into(out, errors, "nodes", nodes);
        co_await read_into(out, errors, "holders", holders);
        co_await read_into(out, errors, "contention", contention);
        co_await read_into(out, errors, "job_counts", counts);
        co_await read_into(out, errors, "recurring", recurring);
        co_await read_into(out, errors, "health", checked);
        const auto* held = out.if_contains("holders");
        auto leaders = held ? views::leaders_of(held->as_array()) : json::array();
        observe_leaders(leaders);
        out["leaders"] = std::move(leaders);
        out["leader_history"] = leader_history();
        out["charts"] = charts();
        out["errors"] = std::move(errors);
        co_return out;
    }

    // ---- requests ------------------------------------------------------------------------------

    asio::awaitable<response> answer(const request& req) {
        const std::string_view target = req.target();
        const auto question = target.find('?');
        const std::string_view path = target.substr(0, question);
        const std::string_view query =
            question == std::string_view::npos ? std::string_view() : target.substr(question + 1);
        if (!host_allowed(req))
            co_return error_reply(http::status::forbidden,
                                  "Host '" + std::string(req[http::field::host]) +
                                      "' is not this machine; start the dashboard with "
                                      "allow_remote to serve other hosts");
        if (path.starts_with("/api/")) {
            try {
                co_return co_await api(req, path, query);
            } catch (const std::exception& e) {
                co_return error_reply(http::status::bad_gateway, std::string("redis: ") + e.what());
            }
        }
        if (req.method() != http::verb::get && req.method() != http::verb::head)
            co_return error_reply(http::status::method_not_allowed, "only GET here");
        const std::string_view file = path == "/" ? "/index.html" : path;
        for (const auto& a : assets()) {
            if (a.path != file) continue;
            response res;
            res.result(http::status::ok);
            res.set(http::field::content_type, a.content_type);
            res.set("Content-Security-Policy",
                    "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                    "connect-src 'self'; frame-ancestors 'none'");
            res.body() = a.body;
            co_return res;
        }
        co_return error_reply(http::status::not_found, "no page " + std::string(path));
    }

    asio::awaitable<response> api(const request& req, std::string_view path,
                                  std::string_view query) {
        const bool post = req.method() == http::verb::post;
        // Actions: POST /api/locks/<name>/release, /api/jobs/<id>/cancel, /api/jobs/<id>/run-now.
        for (const std::string_view action : {"/release", "/cancel", "/run-now"}) {
            const bool locks = path.starts_with("/api/locks/") && action == "/release";
            const bool jobs = path.starts_with("/api/jobs/") && action != "/release";
            if (!path.ends_with(action) || !(locks || jobs)) continue;
            const auto prefix = std::string_view(locks ? "/api/locks/" : "/api/jobs/").size();
            if (path.size() <= prefix + action.size()) break;
            const auto name =
                url_decode(path.substr(prefix, path.size() - prefix - action.size()), false);
            if (!name || name->empty())
                co_return error_reply(http::status::bad_request,
                                      "the name in " + std::string(path) + " is not valid");
            if (!post)
                co_return error_reply(http::status::method_not_allowed,
                                      "actions take POST: " + std::string(path));
            if (auto refused = refuse_action(req)) co_return std::move(*refused);
            co_return co_await act(action, *name);
        }
        if (req.method() != http::verb::get && req.method() != http::verb::head)
            co_return error_reply(http::status::method_not_allowed,
                                  std::string(path) + " takes GET (actions take POST)");
        if (path == "/api/info") co_return json_reply(http::status::ok, info());
        if (path == "/api/snapshot") co_return json_reply(http::status::ok, co_await snapshot());
        if (path == "/api/nodes") co_return json_reply(http::status::ok, co_await views_.nodes());
        if (path == "/api/locks") {
            json::object o;
            o["holders"] = co_await views_.holders();
            o["contention"] = co_await views_.contention();
            co_return json_reply(http::status::ok, o);
        }
        if (path == "/api/leaders") {
            json::object o;
            auto leaders = views::leaders_of(co_await views_.holders());
            observe_leaders(leaders);
            o["leaders"] = std::move(leaders);
            o["history"] = leader_history();
            o["history_source"] = "observed by this dashboard while it ran";
            co_return json_reply(http::status::ok, o);
        }
        if (path == "/api/queues") {
            json::object o;
            o["queues"] = co_await views_.queues();
            co_return json_reply(http::status::ok, o);
        }
        if (path == "/api/health") co_return json_reply(http::status::ok, co_await health());
        if (path == "/api/events") {
            co_return json_reply(http::status::ok, json::array(events_.begin(), events_.end()));
        }
        if (path == "/api/charts") co_return json_reply(http::status::ok, charts());
        if (path == "/api/recurring")
            co_return json_reply(http::status::ok, co_await views_.recurring());
        if (path == "/api/job-counts")
            co_return json_reply(http::status::ok, co_await views_.job_counts());
        if (path == "/api/jobs") co_return co_await job_list(parse_query(query));
        if (path.starts_with("/api/jobs/")) {
            const auto id = url_decode(path.substr(10), false);
            if (!id || id->empty())
                co_return error_reply(http::status::bad_request,
                                      "the job id in " + std::string(path) + " is not valid");
            auto job = co_await views_.job(*id);
            if (!job) co_return error_reply(http::status::not_found, "no job " + *id);
            co_return json_reply(http::status::ok, *job);
        }
        co_return error_reply(http::status::not_found, "no API " + std::string(path));
    }

    asio::awaitable<response> job_list(std::map<std::string, std::string> q) {
        const auto state = parse_job_state(q["state"]);
        if (!state)
            co_return error_reply(http::status::bad_request,
                                  "state: '" + q["state"] + "' is not one of " + job_states_text());
        std::uint64_t offset = 0;
        std::uint32_t count = 50;
        if (!q["offset"].empty()) {
            const auto n = number_in(q["offset"], 0, std::uint64_t(1) << 53);
            if (!n)
                co_return error_reply(http::status::bad_request,
                                      "offset: '" + q["offset"] + "' is not a number");
            offset = *n;
        }
        if (!q["count"].empty()) {
            const auto n = number_in(q["count"], 1, 1000);
            if (!n)
                co_return error_reply(http::status::bad_request,
                                      "count: '" + q["count"] + "' is not a number from 1 to 1000");
            count = static_cast<std::uint32_t>(*n);
        }
        co_return json_reply(http::status::ok,
                             co_await views_.job_list(*state, q["function"], offset, count));
    }

    // Why an action is refused (read-only, another site's page, no token), or nothing.
    std::optional<response> refuse_action(const request& req) const {
        if (opts_.read_only)
            return error_reply(http::status::forbidden,
                               "this dashboard is read-only: actions are disabled");
        const std::string_view origin = req[http::field::origin];
        if (!origin.empty() && origin != "http://" + std::string(req[http::field::host]))
            return error_reply(http::status::forbidden,
                               "cross-origin request refused (Origin " + std::string(origin) + ")");
        if (!opts_.token.empty() && !same_secret(token_of(req), opts_.token)) {
            auto res = error_reply(http::status::unauthorized,
                                   "this action needs the dashboard's token: send "
                                   "'Authorization: Bearer <token>' or a 'token' field");
            res.set(http::field::www_authenticate, "Bearer");
            return res;
        }
        return std::nullopt;
    }

    asio::awaitable<response> act(std::string_view action, std::string name) {
        json::object o;
        http::status status = http::status::ok;
        if (action == "/release") {
            o["name"] = name;
            auto [ec, released] = co_await views_.monitor().async_force_release(name, nothrow);
            if (ec) co_return error_reply(http::status::bad_gateway, "redis: " + ec.message());
            o["released"] = released;
            if (!released) {
                status = http::status::not_found;
                o["error"] = "lock '" + name + "' is not held";
            }
        } else if (action == "/cancel") {
            o["id"] = name;
            auto [ec, was] = co_await views_.jobs().async_cancel(name, nothrow);
            if (ec) co_return error_reply(http::status::bad_gateway, "redis: " + ec.message());
            if (!was) co_return error_reply(http::status::not_found, "no job " + name);
            o["previous_state"] = to_string(*was);
            o["cancelled"] = !is_terminal(*was);
            if (is_terminal(*was)) {
                status = http::status::conflict;
                o["error"] =
                    "job " + name + " has already ended (" + std::string(to_string(*was)) + ")";
            }
        } else {
            o["id"] = name;
            auto [gec, record] = co_await views_.jobs().async_get(name, nothrow);
            if (gec) co_return error_reply(http::status::bad_gateway, "redis: " + gec.message());
            if (!record) co_return error_reply(http::status::not_found, "no job " + name);
            auto [ec, queued] = co_await views_.jobs().async_run_now(name, nothrow);
            if (ec) co_return error_reply(http::status::bad_gateway, "redis: " + ec.message());
            o["queued"] = queued;
            if (!queued) {
                status = http::status::conflict;
                o["error"] = "job " + name + " is " + std::string(to_string(record->state)) +
                             ": only failed, cancelled, scheduled, retrying or waiting jobs "
                             "can run now";
            }
        }
        json::object note;
        note["type"] = "action";
        note["at"] = now_ms();
        note["action"] = action.substr(1);
        note["target"] = name;
        note["status"] = static_cast<int>(status);
        remember(std::move(note));
        co_return json_reply(status, o);
    }

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

}  // namespace detail

dashboard::dashboard(session& s, dashboard_options opts) {
    const auto at = detail::parse_listen(opts.listen, opts.allow_remote);
    impl_ = std::make_shared<detail::dashboard_impl>(s, std::move(opts), at);
}

dashboard::~dashboard() { impl_->stop(); }

boost::asio::ip::tcp::endpoint dashboard::local_endpoint() const { return impl_->local_endpoint(); }

const dashboard_options& dashboard::options() const noexcept { return impl_->options(); }

void dashboard::stop() { impl_->stop(); }

void dashboard::run_impl(boost::asio::any_completion_handler<void(boost::system::error_code)> h) {
    namespace asio = boost::asio;
    auto slot = asio::get_associated_cancellation_slot(h);
    if (slot.is_connected())
        slot.assign([w = std::weak_ptr<detail::dashboard_impl>(impl_)](asio::cancellation_type) {
            if (auto impl = w.lock()) impl->stop();
        });
    asio::co_spawn(impl_->executor(), impl_->run(),
                   [h = std::move(h)](std::exception_ptr ep, boost::system::error_code ec) mutable {
                       auto slot = asio::get_associated_cancellation_slot(h);
                       if (slot.is_connected()) slot.clear();
                       if (ep) ec = asio::error::operation_aborted;
                       asio::dispatch(asio::append(std::move(h), ec));
                   });
}

}  // namespace redcoord::tools
