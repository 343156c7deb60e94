#include <charconv>

#include "assets.hpp"
#include "server.hpp"

namespace redcoord::tools::detail {

namespace {

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

asio::awaitable<response> dashboard_impl::answer(const request& req) {
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

asio::awaitable<response> dashboard_impl::api(const request& req, std::string_view path,
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

asio::awaitable<response> dashboard_impl::job_list(std::map<std::string, std::string> q) {
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
std::optional<response> dashboard_impl::refuse_action(const request& req) const {
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

asio::awaitable<response> dashboard_impl::act(std::string_view action, std::string name) {
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

}  // namespace redcoord::tools::detail
