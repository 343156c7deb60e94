#include "wire/cluster_router.hpp"

#include "wire/connection_impl.hpp"
#include "wire/multiplexer.hpp"

#include <redcoord/error.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <limits>
#include <charconv>
#include <tuple>
#include <optional>

namespace redcoord::detail {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t none = static_cast<std::size_t>(-1);

bool iequals(std::string_view a, std::string_view b) noexcept {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::toupper(static_cast<unsigned char>(x)) ==
                      std::toupper(static_cast<unsigned char>(y));
           });
}

std::vector<resp3::node_view> views_of(const generic_response& r) {
    std::vector<resp3::node_view> v;
    v.reserve(r.size());
    for (const auto& n : r) v.push_back(n.view());
    return v;
}

std::string to_string(const endpoint& ep) { return ep.host + ":" + std::to_string(ep.port); }

// Boost 1.81's any_completion_handler move assignment recurses (see connection.cpp).
template <class Signature>
void assign(asio::any_completion_handler<Signature>& to,
            asio::any_completion_handler<Signature>&& from) noexcept {
    asio::any_completion_handler<Signature>(std::move(from)).swap(to);
}
}  // namespace

// ---------------------------------------------------------------------------------------------
// The pieces: a node (one master's connection), a request in flight (op) and its parts per
// node (sub).

struct cluster_router::node {
    endpoint ep;
    std::string id;
    std::shared_ptr<connection_impl> conn;
    bool master = true;
};

struct cluster_router::op {
    enum class cmd_state : std::uint8_t { pending, sent, done };
    // A SCAN (its arguments, views into the request): it waits for the map, then walks the
    // masters.
    std::vector<std::string_view> scan_args;
    bool is_scan = false;
    struct cmd {
        std::string_view raw;
        command_route route;
        std::size_t reply = none;   // index of its reply among the request's; none: no reply
        std::size_t group = none;   // the MULTI that opens its transaction
        bool classic_pubsub = false;
        bool broadcast = false;     // SCRIPT LOAD: to every node the request touches
        cmd_state st = cmd_state::pending;
        redirection redirect;       // the last one, while pending again
    };

    const request* req = nullptr;
    any_adapter adapter;
    diagnostics* diag = nullptr;
    exec_handler handler;
    asio::any_io_executor ex;
    bool inline_ok = false;
    bool direct = false;  // one reply: stored into the caller's response as it comes
    bool finished = false;
    bool counted = false;
    std::uint64_t seq = 0;
    std::vector<cmd> cmds;
    std::vector<generic_response> buffered;
    std::vector<std::uint16_t> slots;  // the slots it counts in inflight_
    std::vector<std::unique_ptr<sub>> subs;
    std::size_t subs_out = 0;
    int rounds = 0;
    error_code first_error;
    std::size_t bytes = 0;
    std::string last_redirect;
    std::weak_ptr<connection_impl> owner;
    std::unique_ptr<asio::steady_timer> timer;  // backoff, or the deadline while unsent
    asio::cancellation_slot slot;
    clock::time_point deadline = clock::time_point::max();
};

struct cluster_router::sub {
    cluster_router::op* o = nullptr;
    std::shared_ptr<node> target;
    std::optional<request> own;        // the commands for this node, when not the whole request
    const request* req = nullptr;
    std::vector<std::size_t> cmd_of_reply;  // the op's command for each reply; none: ASKING
    std::vector<std::size_t> cmds;          // the op's commands carried
    diagnostics diag;
    asio::cancellation_signal cancel;
    bool done = false;
};

// ---------------------------------------------------------------------------------------------

cluster_router::cluster_router(connection_impl& owner, config cfg)
    : owner_(owner), cfg_(std::move(cfg)), refresh_timer_(owner.get_executor()) {}

cluster_router::~cluster_router() { stop(); }

void cluster_router::start(std::shared_ptr<connection_impl> self) {
    asio::co_spawn(owner_.get_executor(), refresh_loop(std::move(self)), asio::detached);
}

void cluster_router::stop() {
    if (stopping_) return;
    stopping_ = true;
    refresh_timer_.cancel();
    for (auto& n : nodes_) n->conn->stop();
    auto waiting = std::move(waiting_for_map_);
    waiting_for_map_.clear();
    for (auto& o : waiting) fail(o, asio::error::operation_aborted, "the connection stopped");
    auto parked = std::move(parked_ops_);
    parked_ops_.clear();
    for (auto& o : parked) fail(o, asio::error::operation_aborted, "the connection stopped");
}

bool cluster_router::connected() const noexcept {
    if (!map_ready_ || stopping_) return false;
    return std::any_of(nodes_.begin(), nodes_.end(),
                       [](const auto& n) { return n->master && n->conn->connected(); });
}

void cluster_router::add_usage(usage& u) const {
    for (const auto& n : nodes_) {
        const usage& c = n->conn->get_usage();
        u.writes += c.writes;
        u.bytes_written += c.bytes_written;
        u.bytes_read += c.bytes_read;
        u.commands_written += c.commands_written;
        u.replies_received += c.replies_received;
        u.pushes_received += c.pushes_received;
        u.pushes_dropped += c.pushes_dropped;
        u.replies_too_large += c.replies_too_large;
        u.unexpected_replies += c.unexpected_replies;
        u.connects += c.connects;
        u.connection_losses += c.connection_losses;
        u.blocking_connections += c.blocking_connections;
    }
}

std::vector<endpoint> cluster_router::masters() const {
    std::vector<endpoint> out;
    for (const auto& n : nodes_)
        if (n->master) out.push_back(n->ep);
    return out;
}

// ---------------------------------------------------------------------------------------------
// The slot map.

cluster_router::node& cluster_router::node_for(const endpoint& ep) {
    for (auto& n : nodes_)
        if (n->ep == ep) return *n;
    auto n = std::make_shared<node>();
    n->ep = ep;
    n->conn = std::make_shared<connection_impl>(owner_.get_executor());
    n->conn->cluster_owner_ = &owner_;
    config c = cfg_;
    c.cluster = false;
    c.endpoints = {ep};
    c.abort_connect = false;
    c.fail_fast_when_disconnected = false;
    // A master's pushes go on to this connection's queue at once, which alone applies the
    // limit (and counts what it drops): the master's own queue never drops.
    c.max_pending_pushes = std::numeric_limits<std::size_t>::max();
    n->conn->run(std::move(c), run_handler{});
    nodes_.push_back(n);
    return *n;
}

cluster_router::node* cluster_router::pubsub_node() {
    if (pubsub_ && pubsub_->master) return pubsub_;
    for (auto* n : slots_)
        if (n) return pubsub_ = n;
    return nullptr;
}

void cluster_router::request_refresh() {
    if (stopping_) return;
    refresh_requested_ = true;
    refresh_timer_.cancel();
}

void cluster_router::on_child_link(connection_impl&, bool up) {
    if (!up) request_refresh();
}

asio::awaitable<void> cluster_router::refresh_loop(std::shared_ptr<connection_impl> self) {
    int failures = 0;
    auto last = clock::now() - std::chrono::seconds(1);
    while (!stopping_) {
        // At most one refresh at a time, and not more often than every 100 ms.
        const auto gap = clock::now() - last;
        if (gap < std::chrono::milliseconds(100)) {
            refresh_timer_.expires_after(std::chrono::milliseconds(100) - gap);
            co_await refresh_timer_.async_wait(use_nothrow);
            if (stopping_) break;
        }
        refresh_requested_ = false;
        last = clock::now();
        const error_code ec = co_await refresh_once();
        if (stopping_) break;
        if (ec && !map_ready_) {
            ++failures;
            if (cfg_.abort_connect && failures >= cfg_.connect_retry) {
                owner_.run_diag_.set_client_message(last_refresh_error_);
                // The server's own words (a refused AUTH), as a single connection gives them.
                if (!last_server_error_.empty())
                    owner_.run_diag_.set_server_message(last_server_error_);
                auto waiting = std::move(waiting_for_map_);
                waiting_for_map_.clear();
                for (auto& o : waiting) fail(o, ec, last_refresh_error_);
                owner_.finish_cluster_run(ec);
                co_return;
            }
            const auto wait = std::min(cfg_.reconnect_wait_max,
                                       cfg_.reconnect_wait_min * (1 << std::min(failures, 10)));
            refresh_timer_.expires_after(wait);
            co_await refresh_timer_.async_wait(use_nothrow);
            continue;
        }
        if (!ec) {
            failures = 0;
            flush_waiting_for_map();
        }
        if (refresh_requested_) continue;
        refresh_timer_.expires_after(cfg_.cluster_refresh_interval.count() > 0
                                         ? clock::duration(cfg_.cluster_refresh_interval)
                                         : clock::duration::max() / 2);
        co_await refresh_timer_.async_wait(use_nothrow);
    }
    (void)self;
}

// Asks one node for the map: CLUSTER SHARDS, else CLUSTER SLOTS.
asio::awaitable<error_code> cluster_router::read_map(connection_impl& conn,
                                                      const std::string& host,
                                                      cluster_map& out) {
    request shards(request::config{cfg_.connect_timeout, false, false});
    shards.push("CLUSTER", "SHARDS");
    generic_response resp;
    diagnostics diag;
    auto [ec, n] = co_await asio::async_initiate<decltype(use_nothrow),
                                                 void(error_code, std::size_t)>(
        [&](auto h) {
            conn.exec(shards, make_adapter(resp), &diag, false, std::move(h));
        },
        use_nothrow);
    std::string why;
    if (!ec && parse_cluster_shards(views_of(resp), cfg_.use_tls, host, out, why)) co_return error_code{};
    if (ec && ec != error::server_error) {
        last_refresh_error_ = "CLUSTER SHARDS on " + host + ": " + ec.message() +
                              (diag.message().empty() ? "" : " (" + std::string(diag.message()) + ")");
        co_return ec;
    }
    // Older servers: CLUSTER SLOTS.
    request slots(request::config{cfg_.connect_timeout, false, false});
    slots.push("CLUSTER", "SLOTS");
    resp.clear();
    auto [ec2, n2] = co_await asio::async_initiate<decltype(use_nothrow),
                                                   void(error_code, std::size_t)>(
        [&](auto h) { conn.exec(slots, make_adapter(resp), &diag, false, std::move(h)); },
        use_nothrow);
    (void)n;
    (void)n2;
    if (!ec2 && parse_cluster_slots(views_of(resp), host, out, why)) co_return error_code{};
    last_refresh_error_ = "no slot map from " + host + ": " +
                          (ec2 && diag.message().size() ? std::string(diag.message())
                                                        : why.empty() ? ec2.message() : why);
    co_return error::cluster_unavailable;
}

asio::awaitable<error_code> cluster_router::refresh_once() {
    // Known masters first (their connections are up), then the seeds.
    std::vector<endpoint> candidates;
    for (const auto& n : nodes_)
        if (n->master && n->conn->connected()) candidates.push_back(n->ep);
    for (const auto& ep : cfg_.endpoints)
        if (std::find(candidates.begin(), candidates.end(), ep) == candidates.end())
            candidates.push_back(ep);
    for (const auto& n : nodes_)
        if (std::find(candidates.begin(), candidates.end(), n->ep) == candidates.end())
            candidates.push_back(n->ep);

    std::optional<cluster_map> best;
    error_code last_ec = error::cluster_unavailable;
    if (candidates.empty()) last_refresh_error_ = "no seed endpoint";
    for (const auto& ep : candidates) {
        if (stopping_) co_return asio::error::operation_aborted;
        cluster_map map;
        error_code ec;
        auto it = std::find_if(nodes_.begin(), nodes_.end(),
                               [&](const auto& n) { return n->ep == ep; });
        if (it != nodes_.end() && (*it)->conn->connected()) {
            auto keep = *it;
            ec = co_await read_map(*keep->conn, ep.host, map);
        } else {
            // A connection of its own, for this question only.
            auto probe = std::make_shared<connection_impl>(owner_.get_executor());
            config c = cfg_;
            c.cluster = false;
            c.endpoints = {ep};
            c.connect_retry = 1;
            c.abort_connect = true;
            c.fail_fast_when_disconnected = false;
            c.health_check_interval = std::chrono::milliseconds(0);
            probe->run(std::move(c), run_handler{});
            ec = co_await read_map(*probe, ep.host, map);
            if (ec && !probe->run_diagnostics().message().empty()) {
                last_refresh_error_ = "seed " + to_string(ep) + ": " +
                                      std::string(probe->run_diagnostics().message());
                last_server_error_ = probe->run_diagnostics().server_message();
            }
            probe->stop();
        }
        if (ec) {
            last_ec = ec;
            continue;
        }
        if (!best || map.uncovered() < best->uncovered()) best = std::move(map);
        if (best->uncovered() == 0) break;
    }
    if (stopping_) co_return asio::error::operation_aborted;
    if (!best || best->masters.empty()) {
        if (best) last_refresh_error_ = "the cluster has no online master with slots";
        co_return last_ec ? last_ec : error_code(error::cluster_unavailable);
    }
    apply_map(*best);
    co_return error_code{};
}

void cluster_router::apply_map(const cluster_map& map) {
    std::vector<node*> by_index;
    for (const auto& m : map.masters) {
        node& n = node_for(m.ep);
        n.id = m.id;
        by_index.push_back(&n);
    }
    bool changed = !map_ready_;
    for (std::size_t s = 0; s < cluster_slots; ++s) {
        node* now = map.owner[s] < 0 ? nullptr : by_index[static_cast<std::size_t>(map.owner[s])];
        if (slots_[s] && slots_[s] != now) changed = true;
        slots_[s] = now;
    }
    // Nodes that serve no slot any more: what they have not written yet goes elsewhere.
    node* old_pubsub = pubsub_;
    std::vector<std::shared_ptr<node>> keep;
    std::vector<std::shared_ptr<node>> retired;
    for (auto& n : nodes_) {
        const bool serves = std::find(by_index.begin(), by_index.end(), n.get()) != by_index.end();
        n->master = serves;
        (serves ? keep : retired).push_back(n);
    }
    nodes_ = std::move(keep);
    if (old_pubsub && !old_pubsub->master) pubsub_ = nullptr;
    for (auto& n : retired) {
        changed = true;
        if (n.get() == old_pubsub) {
            // Its subscriptions move to another master; messages meanwhile are a gap.
            if (auto* to = pubsub_node()) to->conn->adopt_subscriptions(*n->conn);
        }
        n->conn->retire();
    }
    map_ready_ = true;
    // Leases held in slots that moved are checked as after a reconnect (a gap).
    if (changed && !retired.empty()) owner_.deliver_event(push_event::reconnected);
}

// ---------------------------------------------------------------------------------------------
// Requests.

void cluster_router::exec(const request& req, any_adapter adapter, diagnostics* diag,
                          bool inline_ok, exec_handler handler) {
    auto o = std::make_shared<op>();
    o->req = &req;
    o->adapter = adapter;
    o->diag = diag;
    o->ex = owner_.get_executor();
    o->inline_ok = inline_ok;
    o->owner = owner_.weak_from_this();
    o->seq = next_seq_++;
    assign(o->handler, std::move(handler));

    const auto raws = split_commands(req.payload());
    if (raws.size() == 1) {
        const auto args = command_args(raws.front());
        if (!args.empty() && iequals(args.front(), "SCAN"))
            return scan(o, args);
    }
    o->cmds.resize(raws.size());
    std::size_t replies = 0;
    std::size_t open_multi = none;
    for (std::size_t i = 0; i < raws.size(); ++i) {
        auto& c = o->cmds[i];
        c.raw = raws[i];
        const auto args = command_args(c.raw);
        const std::string_view name = args.empty() ? std::string_view{} : args[0];
        c.route = route_of(args);
        const bool sub_cmd = iequals(name, "SUBSCRIBE") || iequals(name, "PSUBSCRIBE") ||
                             iequals(name, "UNSUBSCRIBE") || iequals(name, "PUNSUBSCRIBE") ||
                             iequals(name, "SSUBSCRIBE") || iequals(name, "SUNSUBSCRIBE");
        c.classic_pubsub = sub_cmd && !iequals(name, "SSUBSCRIBE") && !iequals(name, "SUNSUBSCRIBE");
        if (!sub_cmd) c.reply = replies++;
        c.broadcast = iequals(name, "SCRIPT") && args.size() > 1 && iequals(args[1], "LOAD");
        if (iequals(name, "MULTI")) open_multi = i;
        c.group = open_multi;
        if (iequals(name, "EXEC") || iequals(name, "DISCARD")) open_multi = none;
        if (c.route.what == command_route::kind::cross_slot) {
            std::string m = "cluster: " + std::string(name) + " has keys in different slots (\"" +
                            c.route.first_key + "\" in slot " +
                            std::to_string(hash_slot(c.route.first_key)) + ", \"" +
                            c.route.other_key + "\" in slot " +
                            std::to_string(hash_slot(c.route.other_key)) +
                            "); give them one hash tag, e.g. {tag}";
            return fail(o, error::cross_slot, std::move(m));
        }
    }
    // A transaction runs on one node: its keys must share one slot.
    for (std::size_t i = 0; i < o->cmds.size(); ++i) {
        const auto& a = o->cmds[i];
        if (a.group == none || a.route.what != command_route::kind::slot) continue;
        for (std::size_t j = i + 1; j < o->cmds.size() && o->cmds[j].group == a.group; ++j) {
            const auto& b = o->cmds[j];
            if (b.route.what == command_route::kind::slot && b.route.slot != a.route.slot)
                return fail(o, error::cross_slot,
                            "cluster: a MULTI/EXEC transaction has keys in different slots (\"" +
                                a.route.first_key + "\" and \"" + b.route.first_key +
                                "\"); give them one hash tag, e.g. {tag}");
        }
    }
    o->direct = o->cmds.size() == 1 && replies == 1;
    if (!o->direct) o->buffered.resize(replies);

    const auto timeout = req.get_config().timeout.value_or(cfg_.request_timeout);
    if (timeout.count() > 0 && !req.has_blocking_command() && !req.has_wait_command())
        o->deadline = clock::now() + timeout;
    o->slot = asio::get_associated_cancellation_slot(o->handler);
    if (o->slot.is_connected()) {
        std::weak_ptr<op> weak = o;
        o->slot.assign([this, weak](asio::cancellation_type) {
            auto op = weak.lock();
            if (!op || op->finished) return;
            for (auto& s : op->subs)
                if (!s->done) s->cancel.emit(asio::cancellation_type::terminal);
            fail(op, asio::error::operation_aborted, "");
        });
    }
    dispatch(o);
}

void cluster_router::exec_on(const endpoint& ep, const request& req, any_adapter adapter,
                             diagnostics* diag, exec_handler handler) {
    node_for(ep).conn->exec(req, adapter, diag, false, std::move(handler));
}

// SCAN walks every master in turn, under one cursor: "<master>:<cursor>" (the masters in
// endpoint order), "0" only once the last master is done. A map change during a walk may
// repeat or skip keys of the masters that changed, as a server's SCAN may repeat keys.
void cluster_router::scan(const std::shared_ptr<op>& o, const std::vector<std::string_view>& args) {
    if (!map_ready_) {
        // Sent once the map is known (dispatch).
        o->is_scan = true;
        o->scan_args = args;
        waiting_for_map_.push_back(o);
        return;
    }
    std::vector<node*> masters;
    for (auto& n : nodes_)
        if (n->master) masters.push_back(n.get());
    std::sort(masters.begin(), masters.end(), [](const node* a, const node* b) {
        return std::tie(a->ep.host, a->ep.port) < std::tie(b->ep.host, b->ep.port);
    });
    std::size_t index = 0;
    std::string_view cursor = args.size() > 1 ? args[1] : std::string_view("0");
    if (auto colon = cursor.find(':'); colon != std::string_view::npos) {
        const auto part = cursor.substr(0, colon);
        std::from_chars(part.data(), part.data() + part.size(), index);
        cursor.remove_prefix(colon + 1);
    }
    if (index >= masters.size())
        return fail(o, error::invalid_argument,
                    "cluster: SCAN cursor \"" + std::string(args.size() > 1 ? args[1] : "") +
                        "\" names no master");
    struct scan_state {
        request req;
        generic_response reply;
        diagnostics diag;
    };
    auto st = std::make_shared<scan_state>();
    st->req = request(o->req->get_config());
    {
        std::vector<std::string_view> rest(args.begin() + std::min<std::size_t>(2, args.size()),
                                           args.end());
        st->req.push("SCAN", cursor, rest);
    }
    o->cmds.resize(1);
    o->direct = true;
    const std::size_t last = masters.size() - 1;
    masters[index]->conn->exec(
        st->req, make_adapter(st->reply), &st->diag, true,
        [this, o, st, index, last](error_code ec, std::size_t bytes) {
            auto owner = o->owner.lock();
            if (!owner || o->finished) return;
            o->bytes = bytes;
            if (ec) {
                if (o->diag) o->diag->set_client_message(std::string(st->diag.message()));
                return fail(o, ec, "", true);
            }
            // [cursor, keys]: the cursor becomes the walk's.
            if (st->reply.size() >= 2 && resp3::is_aggregate(st->reply[0].data_type)) {
                auto& c = st->reply[1].value;
                if (c != "0")
                    c = std::to_string(index) + ":" + c;
                else if (index < last)
                    c = std::to_string(index + 1) + ":0";
            }
            std::vector<resp3::node_view> views;
            for (const auto& n : st->reply) views.push_back(n.view());
            store_reply(o->adapter, 0, views, o->diag, o->first_error);
            finish(o, true);
        });
}

bool cluster_router::parked_for(const op& o) const {
    for (const auto& c : o.cmds)
        if (c.route.what == command_route::kind::slot && parked_[c.route.slot]) return true;
    return false;
}

void cluster_router::dispatch(const std::shared_ptr<op>& o) {
    if (o->finished) return;
    if (stopping_) return fail(o, asio::error::operation_aborted, "the connection stopped");
    if (!map_ready_) {
        waiting_for_map_.push_back(o);
        if (o->deadline != clock::time_point::max()) wait_then_dispatch(o, {});
        return;
    }
    if (o->is_scan) return scan(o, o->scan_args);
    if (!o->counted) {
        // New requests for a slot that saw a redirection wait behind the older ones.
        if (parked_for(*o)) {
            parked_ops_.push_back(o);
            return;
        }
        o->counted = true;
        for (const auto& c : o->cmds)
            if (c.route.what == command_route::kind::slot) {
                o->slots.push_back(c.route.slot);
                ++inflight_[c.route.slot];
            }
    }
    send_round(o);
}

void cluster_router::send_round(const std::shared_ptr<op>& o) {
    auto& cmds = o->cmds;
    // The node of each pending command.
    std::vector<node*> target(cmds.size(), nullptr);
    std::vector<bool> asking(cmds.size(), false);
    bool unknown = false;
    for (std::size_t i = 0; i < cmds.size(); ++i) {
        auto& c = cmds[i];
        if (c.st != op::cmd_state::pending) continue;
        if (c.redirect.what == redirection::kind::ask) {
            target[i] = &node_for({c.redirect.host, c.redirect.port});
            asking[i] = true;
        } else if (c.classic_pubsub) {
            target[i] = pubsub_node();
        } else if (c.route.what == command_route::kind::slot) {
            target[i] = slots_[c.route.slot];
        }
        if (!target[i] && c.route.what == command_route::kind::slot) unknown = true;
    }
    // Keyless commands go with their neighbours (MULTI, EXEC, SCRIPT LOAD before EVALSHA),
    // else to any master.
    for (std::size_t i = 0; i < cmds.size(); ++i) {
        if (cmds[i].st != op::cmd_state::pending || target[i] || cmds[i].route.what ==
            command_route::kind::slot)
            continue;
        for (std::size_t j = i + 1; j < cmds.size() && !target[i]; ++j)
            if (cmds[j].route.what == command_route::kind::slot) target[i] = target[j];
        for (std::size_t j = i; j-- > 0 && !target[i];)
            if (cmds[j].route.what == command_route::kind::slot) target[i] = target[j];
        if (!target[i]) target[i] = pubsub_node();
        if (!target[i]) unknown = true;
    }
    if (unknown) request_refresh();

    // One part per node, commands in request order.
    std::vector<node*> touched;
    for (std::size_t i = 0; i < cmds.size(); ++i)
        if (target[i] && std::find(touched.begin(), touched.end(), target[i]) == touched.end())
            touched.push_back(target[i]);
    // SCRIPT LOAD with no key beside it loads the script on every master: the EVALSHA that
    // follows may go to any of them.
    const bool keyless = std::none_of(cmds.begin(), cmds.end(), [](const op::cmd& c) {
        return c.route.what == command_route::kind::slot;
    });
    const bool loads = std::any_of(cmds.begin(), cmds.end(), [](const op::cmd& c) {
        return c.broadcast && c.st == op::cmd_state::pending;
    });
    if (keyless && loads)
        for (auto& n : nodes_)
            if (n->master && std::find(touched.begin(), touched.end(), n.get()) == touched.end())
                touched.push_back(n.get());
    bool whole = touched.size() == 1;
    for (std::size_t i = 0; i < cmds.size() && whole; ++i)
        if (cmds[i].st != op::cmd_state::pending || asking[i] || !target[i]) whole = false;

    std::vector<std::unique_ptr<sub>> parts;
    for (node* n : touched) {
        auto s = std::make_unique<sub>();
        s->o = o.get();
        for (auto& p : nodes_)
            if (p.get() == n) s->target = p;
        if (whole) {
            s->req = o->req;
        } else {
            s->own.emplace(o->req->get_config());
            s->req = &*s->own;
        }
        for (std::size_t i = 0; i < cmds.size(); ++i) {
            const bool here = target[i] == n ||
                              (cmds[i].broadcast && cmds[i].st == op::cmd_state::pending &&
                               std::find(touched.begin(), touched.end(), n) != touched.end());
            if (!here || cmds[i].st != op::cmd_state::pending) continue;
            const bool first_copy = target[i] == n;
            if (!whole) {
                if (asking[i]) {
                    request tmp;
                    tmp.push("ASKING");
                    append_serialized(*s->own, tmp.payload());
                    s->cmd_of_reply.push_back(none);
                }
                append_serialized(*s->own, cmds[i].raw);
            }
            if (cmds[i].reply != none) s->cmd_of_reply.push_back(first_copy ? i : none);
            if (first_copy) s->cmds.push_back(i);
        }
        parts.push_back(std::move(s));
    }
    for (auto& s : parts)
        for (auto i : s->cmds) cmds[i].st = op::cmd_state::sent;
    for (auto& s : parts) {
        sub* raw = s.get();
        o->subs.push_back(std::move(s));
        ++o->subs_out;
        auto keep_target = raw->target;
        auto handler = asio::bind_cancellation_slot(
            raw->cancel.slot(), [this, o, raw](error_code ec, std::size_t bytes) {
                auto owner = o->owner.lock();
                if (!owner) return;
                after_sub(o, *raw, ec, bytes);
            });
        keep_target->conn->exec(*raw->req, any_adapter(raw, &on_reply, any_adapter::npos, true),
                                &raw->diag, true, std::move(handler));
    }
    if (o->subs_out == 0) after_round(o);
}

// Each reply of a part: a redirection keeps its command pending, anything else is its answer.
void cluster_router::on_reply(void* obj, std::size_t index, node_span msg, error_code&) {
    auto& s = *static_cast<sub*>(obj);
    op& o = *s.o;
    if (index >= s.cmd_of_reply.size() || o.finished) return;
    const std::size_t ci = s.cmd_of_reply[index];
    if (ci == none) return;  // ASKING, or a copy of a broadcast command
    auto& c = o.cmds[ci];
    const auto& head = msg[first_value(msg)];
    if (resp3::is_error(head.data_type)) {
        auto r = parse_redirection(head.value);
        if (r.what != redirection::kind::none) {
            if (r.host.empty()) r.host = s.target->ep.host;  // "MOVED 3999 :6381"
            c.redirect = std::move(r);
            c.st = op::cmd_state::pending;
            o.last_redirect = head.value;
            return;
        }
    }
    c.st = op::cmd_state::done;
    c.redirect = {};
    if (o.direct)
        store_reply(o.adapter, c.reply, msg, o.diag, o.first_error);
    else
        for (const auto& n : msg) o.buffered[c.reply].emplace_back(n);
}

void cluster_router::after_sub(const std::shared_ptr<op>& o, sub& s, error_code ec,
                               std::size_t bytes) {
    s.done = true;
    o->bytes += bytes;
    --o->subs_out;
    if (!o->finished) {
        // A subscription command has no reply of its own: a refusal (a sharded channel's
        // MOVED) is the part's error. With one such command in the part it is followed as a
        // redirection; otherwise the request fails with the server's text.
        const auto no_reply = std::count_if(s.cmds.begin(), s.cmds.end(), [&](std::size_t i) {
            return o->cmds[i].reply == none;
        });
        for (auto i : s.cmds) {
            auto& c = o->cmds[i];
            if (c.st != op::cmd_state::sent) continue;
            redirection refused;
            if (ec == error::server_error && c.reply == none && no_reply == 1)
                refused = parse_redirection(s.diag.server_message());
            if (refused.what != redirection::kind::none) {
                if (refused.host.empty()) refused.host = s.target->ep.host;
                c.redirect = std::move(refused);
                c.st = op::cmd_state::pending;
                o->last_redirect = s.diag.server_message();
            } else if (!ec || ec == error::server_error || ec == error::noscript) {
                c.st = op::cmd_state::done;
                if (ec && c.reply == none && !o->first_error) {
                    o->first_error = ec;
                    if (o->diag) o->diag->set_server_message(s.diag.server_message());
                }
            } else if (ec == error::cluster_unavailable) {
                c.st = op::cmd_state::pending;  // its node left the map before writing it
            } else {
                c.st = op::cmd_state::done;
                if (!o->first_error) {
                    o->first_error = ec;
                    if (o->diag && !s.diag.message().empty())
                        o->diag->set_client_message(std::string(s.diag.message()) + " (" +
                                                    to_string(s.target->ep) + ")");
                }
            }
        }
        // Redirections: patch the map at once; later requests for the slot wait.
        for (auto i : s.cmds) {
            auto& c = o->cmds[i];
            if (c.st != op::cmd_state::pending) continue;
            if (c.route.what == command_route::kind::slot) parked_[c.route.slot] = true;
            if (c.redirect.what == redirection::kind::moved) {
                slots_[c.redirect.slot] = &node_for({c.redirect.host, c.redirect.port});
                slots_[c.redirect.slot]->master = true;
                request_refresh();
            } else if (c.redirect.what == redirection::kind::cluster_down ||
                       c.redirect.what == redirection::kind::none) {
                request_refresh();
            }
        }
    }
    if (o->subs_out == 0) after_round(o);
}

void cluster_router::after_round(const std::shared_ptr<op>& o) {
    if (o->finished) return;
    o->subs.clear();
    // A transaction with a redirected command goes again whole.
    for (auto& c : o->cmds)
        if (c.st == op::cmd_state::pending && c.group != none)
            for (auto& d : o->cmds)
                if (d.group == c.group && d.st == op::cmd_state::done) {
                    d.st = op::cmd_state::pending;
                    if (d.reply != none && !o->direct) o->buffered[d.reply].clear();
                }
    bool pending = false, delay = false;
    for (const auto& c : o->cmds) {
        if (c.st != op::cmd_state::pending) continue;
        pending = true;
        if (c.redirect.what != redirection::kind::moved &&
            c.redirect.what != redirection::kind::ask)
            delay = true;  // TRYAGAIN, CLUSTERDOWN, a slot without a master, a lost node
    }
    if (!pending) return finish(o, true);
    const std::string last =
        o->last_redirect.empty() ? std::string() : " (last: " + o->last_redirect + ")";
    if (++o->rounds > cfg_.cluster_max_redirects)
        return fail(o, error::too_many_redirects,
                    "cluster: still redirected after " +
                        std::to_string(cfg_.cluster_max_redirects) + " tries" + last,
                    true);
    if (clock::now() >= o->deadline)
        return fail(o, error::timeout,
                    "cluster: no node served the request before its deadline" + last, true);
    if (!delay) return send_round(o);
    // Capped backoff: 10, 20, 40 ... 640 ms.
    const auto wait = std::chrono::milliseconds(10 << std::min(o->rounds - 1, 6));
    wait_then_dispatch(o, wait);
}

void cluster_router::wait_then_dispatch(const std::shared_ptr<op>& o,
                                        std::chrono::milliseconds delay) {
    if (!o->timer) o->timer = std::make_unique<asio::steady_timer>(owner_.get_executor());
    const bool for_map = delay.count() == 0;  // waiting for the first map: until the deadline
    o->timer->expires_at(for_map ? o->deadline : std::min(o->deadline, clock::now() + delay));
    o->timer->async_wait([this, o, for_map](error_code ec) {
        auto owner = o->owner.lock();
        if (!owner || o->finished || stopping_) return;
        if (for_map) {
            if (ec) return;  // the map came first
            std::erase(waiting_for_map_, o);
            return fail(o, error::timeout, "cluster: no slot map before the request's deadline (" +
                                               last_refresh_error_ + ")");
        }
        if (o->counted)
            send_round(o);
        else
            dispatch(o);
    });
}

void cluster_router::flush_waiting_for_map() {
    auto waiting = std::move(waiting_for_map_);
    waiting_for_map_.clear();
    for (auto& o : waiting) {
        if (o->timer) o->timer->cancel();
        dispatch(o);
    }
}

void cluster_router::release_slot(std::uint16_t slot) {
    if (--inflight_[slot] == 0 && parked_[slot]) {
        parked_[slot] = false;
        flush_parked();
    }
}

void cluster_router::flush_parked() {
    // In order; a request still blocked by another parked slot keeps its place.
    std::deque<std::shared_ptr<op>> still;
    auto queue = std::move(parked_ops_);
    parked_ops_.clear();
    for (auto& o : queue) {
        if (o->finished) continue;
        if (parked_for(*o)) {
            still.push_back(o);
            continue;
        }
        dispatch(o);
    }
    for (auto it = still.rbegin(); it != still.rend(); ++it) parked_ops_.push_front(*it);
}

void cluster_router::fail(const std::shared_ptr<op>& o, error_code ec, std::string message,
                          bool from_reply) {
    if (o->finished) return;
    if (o->diag && !message.empty()) o->diag->set_client_message(message);
    o->first_error = ec;
    for (auto& c : o->cmds) c.st = op::cmd_state::done;
    finish(o, from_reply);
}

// from_reply: called while a child hands over a reply (never inside the caller's own call),
// so a caller on the connection's executor may be resumed right here.
void cluster_router::finish(const std::shared_ptr<op>& o, bool from_reply) {
    if (o->finished) return;
    o->finished = true;
    if (o->timer) o->timer->cancel();
    if (o->slot.is_connected()) o->slot.clear();
    if (!o->direct) {
        // Every reply is here: hand them over in the request's order.
        std::vector<resp3::node_view> views;
        for (std::size_t i = 0; i < o->buffered.size(); ++i) {
            if (o->buffered[i].empty()) continue;
            views.clear();
            for (const auto& n : o->buffered[i]) views.push_back(n.view());
            store_reply(o->adapter, i, views, o->diag, o->first_error);
        }
    }
    auto slots = std::move(o->slots);
    o->slots.clear();
    auto h = std::move(o->handler);
    const error_code ec = o->first_error;
    const std::size_t bytes = o->bytes;
    if (h) {
        if (from_reply && o->inline_ok)
            std::move(h)(ec, bytes);
        else if (from_reply)
            asio::dispatch(o->ex, asio::append(std::move(h), ec, bytes));
        else
            asio::post(o->ex, asio::append(std::move(h), ec, bytes));
    }
    for (auto s : slots) release_slot(s);
}

}  // namespace redcoord::detail
