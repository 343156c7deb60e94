// The connection's state machines with no server: the reader under any fragmentation and with
// hostile input, the writer, the handshake's checks, Sentinel resolution, the health check's
// judgement of progress, and the reconnect decisions.
#include "wire/fsm.hpp"

#include <redcoord/error.hpp>
#include <redcoord/resp3/parser.hpp>

#include <catch2/catch.hpp>

#include "reply_strings.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace {

using boost::system::error_code;
using redcoord::test::each_reply;
using redcoord::request;
using redcoord::detail::clock;
using redcoord::detail::handshake_fsm;
using redcoord::detail::health_fsm;
using redcoord::detail::message_reader;
using redcoord::detail::multiplexer;
using redcoord::detail::mux_elem;
using redcoord::detail::reader_fsm;
using redcoord::detail::reconnect_fsm;
using redcoord::detail::sentinel_fsm;
using redcoord::detail::writer_fsm;
using namespace std::chrono_literals;

struct result {
    std::optional<error_code> ec;
    std::vector<std::string> replies;
    redcoord::diagnostics diag;
};

class test_elem final : public mux_elem {
public:
    test_elem(std::unique_ptr<request> req, result& r)
        : mux_elem(*req, each_reply(r.replies), &r.diag),
          req_(std::move(req)),
          r_(r) {}

private:
    void done(error_code ec, bool) override { r_.ec = ec; }
    std::unique_ptr<request> req_;
    result& r_;
};

void add(multiplexer& mux, result& r, std::string_view command, std::string_view arg) {
    auto req = std::make_unique<request>();
    req->push(command, arg);
    mux.add(std::make_unique<test_elem>(std::move(req), r));
}

// Offers `data` to the reader the way read_some would: `chunk` bytes at a time.
std::vector<reader_fsm::action> drive(reader_fsm& fsm, message_reader& in, std::string_view data,
                                      std::size_t chunk) {
    std::vector<reader_fsm::action> actions;
    auto act = fsm.resume();
    actions.push_back(act);
    while (act.what != reader_fsm::action::type::done) {
        if (act.what == reader_fsm::action::type::yield) {
            act = fsm.resume();
        } else {
            if (data.empty()) break;
            auto buf = in.prepare();
            const auto n = std::min({chunk, data.size(), buf.size()});
            std::memcpy(buf.data(), data.data(), n);
            data.remove_prefix(n);
            act = fsm.resume({}, n);
        }
        actions.push_back(act);
    }
    return actions;
}

using rtype = reader_fsm::action::type;

// A RESP3 message parsed, for the machines that take messages.
struct parsed {
    redcoord::resp3::parser p;
    std::span<const redcoord::resp3::node_view> operator()(std::string_view wire) {
        p.clear();
        error_code ec;
        p.consume(wire, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(p.done());
        return p.message();
    }
};

}  // namespace

// ---- reader -----------------------------------------------------------------------------------

TEST_CASE("reader_fsm: replies under any fragmentation reach their requests in order",
          "[unit][fsm]") {
    const std::string wire = "$5\r\nhello\r\n:42\r\n*2\r\n+a\r\n+b\r\n>3\r\n$7\r\nmessage\r\n"
                             "$2\r\nch\r\n$1\r\np\r\n_\r\n";
    for (std::size_t chunk : {std::size_t(1), std::size_t(2), std::size_t(7), wire.size()}) {
        INFO("chunk " << chunk);
        multiplexer mux;
        message_reader in;
        reader_fsm fsm(mux, in, 1 << 20);
        result a, b, c, d;
        add(mux, a, "GET", "a");
        add(mux, b, "INCR", "b");
        add(mux, c, "SMEMBERS", "c");
        add(mux, d, "GET", "d");
        std::string out;
        mux.prepare_write(out);
        const auto actions = drive(fsm, in, wire, chunk);
        CHECK(actions.back().what == rtype::read_some);  // all handled, waiting for more
        CHECK(a.replies == std::vector<std::string>{"hello"});
        CHECK(b.replies == std::vector<std::string>{"42"});
        REQUIRE(c.ec);
        CHECK(*c.ec == redcoord::error::unexpected_type);  // an array into a string
        REQUIRE(d.ec);
        CHECK(*d.ec == redcoord::error::unexpected_null);
        CHECK(mux.pushes().size() == 1);
        CHECK(fsm.messages() == 5);
        CHECK(fsm.bytes() == wire.size());
    }
}

TEST_CASE("reader_fsm: a reply nothing asked for ends the connection, naming it",
          "[unit][fsm]") {
    multiplexer mux;
    message_reader in;
    reader_fsm fsm(mux, in, 1 << 20);
    result a;
    add(mux, a, "PING", "x");
    std::string out;
    mux.prepare_write(out);
    // The server answers PING and then something unprompted.
    const auto actions = drive(fsm, in, "$1\r\nx\r\n+OK\r\n", 64);
    CHECK(a.replies == std::vector<std::string>{"x"});
    CHECK(actions.back().what == rtype::done);
    CHECK(actions.back().ec == redcoord::error::unexpected_reply);
    CHECK(fsm.what_went_wrong().find("simple_string 'OK'") != std::string::npos);
}

TEST_CASE("reader_fsm: malformed input ends the connection", "[unit][fsm]") {
    multiplexer mux;
    message_reader in;
    reader_fsm fsm(mux, in, 1 << 20);
    const auto actions = drive(fsm, in, "?what\r\n", 64);
    CHECK(actions.back().what == rtype::done);
    CHECK(actions.back().ec == redcoord::error::protocol_error);
}

TEST_CASE("reader_fsm: a reply past max_reply_size is dropped, its request fails, the next "
          "goes on", "[unit][fsm]") {
    multiplexer mux;
    redcoord::resp3::parser_limits limits;
    limits.max_message_size = 64 * 1024;
    message_reader in(limits);
    reader_fsm fsm(mux, in, limits.max_message_size);
    result big, streamed, next;
    add(mux, big, "LRANGE", "big");
    add(mux, streamed, "LRANGE", "streamed");
    add(mux, next, "GET", "k");
    std::string out;
    mux.prepare_write(out);
    // 100,000 elements: about 6 MB as nodes. Then an unterminated-looking streamed aggregate
    // that does end, then a small reply.
    std::string wire = "*100000\r\n";
    for (int i = 0; i < 100000; ++i) wire += ":1\r\n";
    wire += "*?\r\n";
    for (int i = 0; i < 50000; ++i) wire += "+x\r\n";
    wire += ".\r\n$2\r\nok\r\n";
    const auto actions = drive(fsm, in, wire, 4096);
    CHECK(actions.back().what == rtype::read_some);
    REQUIRE(big.ec);
    CHECK(*big.ec == redcoord::error::reply_too_large);
    CHECK(big.diag.message().find("max_reply_size") != std::string::npos);
    REQUIRE(streamed.ec);
    CHECK(*streamed.ec == redcoord::error::reply_too_large);
    CHECK(next.replies == std::vector<std::string>{"ok"});
    CHECK(fsm.too_large() == 2);
}

TEST_CASE("reader_fsm: yields so the writer can send what completions queued", "[unit][fsm]") {
    multiplexer mux;
    message_reader in;
    reader_fsm fsm(mux, in, 1 << 20);
    std::vector<result> rs(reader_fsm::flush_every + 2);
    for (auto& r : rs) add(mux, r, "GET", "k");
    std::string out;
    mux.prepare_write(out);
    result later;
    add(mux, later, "GET", "queued");  // as a completion would
    std::string wire;
    for (std::size_t i = 0; i < rs.size(); ++i) wire += "+v\r\n";
    const auto actions = drive(fsm, in, wire, wire.size());
    CHECK(std::count_if(actions.begin(), actions.end(), [](const auto& a) {
              return a.what == rtype::yield;
          }) == 1);
    CHECK(rs.back().replies == std::vector<std::string>{"v"});
}

// ---- writer -----------------------------------------------------------------------------------

TEST_CASE("writer_fsm: waits when idle, coalesces what is queued, stops on a write error",
          "[unit][fsm]") {
    using wtype = writer_fsm::action::type;
    multiplexer mux;
    writer_fsm fsm(mux);
    CHECK(fsm.resume().what == wtype::wait);
    result a, b;
    add(mux, a, "GET", "a");
    add(mux, b, "GET", "b");
    auto act = fsm.resume();
    CHECK(act.what == wtype::write);
    CHECK(fsm.buffer() == "*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n");
    CHECK(fsm.last_commands() == 2);
    CHECK(fsm.resume().what == wtype::wait);
    result c;
    add(mux, c, "GET", "c");
    CHECK(fsm.resume().what == wtype::write);
    act = fsm.resume(boost::asio::error::broken_pipe);
    CHECK(act.what == wtype::done);
    CHECK(act.ec == boost::asio::error::broken_pipe);
}

// ---- handshake --------------------------------------------------------------------------------

namespace {
using htype = handshake_fsm::action::type;

const char* hello_reply = "%3\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:17\r\n";

handshake_fsm started(const redcoord::config& cfg) {
    handshake_fsm fsm(cfg, "app", 99);
    CHECK(fsm.resume().what == htype::write);
    CHECK(fsm.resume().what == htype::read);
    return fsm;
}
}  // namespace

TEST_CASE("handshake_fsm: HELLO with AUTH and SETNAME, SELECT, then the nonce", "[unit][fsm]") {
    redcoord::config cfg;
    cfg.password = "secret";
    cfg.database = 2;
    handshake_fsm fsm(cfg, "app", 99);
    CHECK(fsm.resume().what == htype::write);
    const std::string payload(fsm.payload());
    CHECK(payload.find("HELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$6\r\nsecret\r\n"
                       "$7\r\nSETNAME\r\n$3\r\napp\r\n") != std::string::npos);
    CHECK(payload.find("SELECT\r\n$1\r\n2\r\n") != std::string::npos);
    CHECK(payload.find("PING\r\n$21\r\nredcoord-handshake-99\r\n") != std::string::npos);
    CHECK(fsm.resume().what == htype::read);
    parsed msg;
    CHECK(fsm.resume(msg(hello_reply)).what == htype::read);
    CHECK(fsm.client_id() == 17);
    CHECK(fsm.resume(msg("+OK\r\n")).what == htype::read);
    const auto done = fsm.resume(msg("$21\r\nredcoord-handshake-99\r\n"));
    CHECK(done.what == htype::done);
    CHECK_FALSE(done.ec);
}

TEST_CASE("handshake_fsm: what the server sends unprompted is dropped before the nonce",
          "[unit][fsm]") {
    auto fsm = started({});
    parsed msg;
    CHECK(fsm.resume(msg(hello_reply)).what == htype::read);
    // Replies nobody asked for: they must not reach the first request.
    CHECK(fsm.resume(msg("+OK\r\n")).what == htype::read);
    CHECK(fsm.resume(msg(":1\r\n")).what == htype::read);
    CHECK(fsm.resume(msg(">2\r\n$10\r\ninvalidate\r\n_\r\n")).what == htype::read);
    const auto done = fsm.resume(msg("$21\r\nredcoord-handshake-99\r\n"));
    CHECK(done.what == htype::done);
    CHECK_FALSE(done.ec);
    CHECK(fsm.dropped() == 2);
}

TEST_CASE("handshake_fsm: a server that never echoes the nonce fails the handshake",
          "[unit][fsm]") {
    auto fsm = started({});
    parsed msg;
    fsm.resume(msg(hello_reply));
    handshake_fsm::action act{};
    for (std::size_t i = 0; i <= handshake_fsm::max_dropped; ++i) act = fsm.resume(msg("+OK\r\n"));
    CHECK(act.what == htype::done);
    CHECK(act.ec == redcoord::error::handshake_failed);
    CHECK(fsm.diag().message().find("nothing asked for") != std::string::npos);
}

TEST_CASE("handshake_fsm: each reply is checked for what it must be", "[unit][fsm]") {
    parsed msg;
    SECTION("HELLO answered with an integer") {
        auto fsm = started({});
        const auto act = fsm.resume(msg(":1\r\n"));
        CHECK(act.what == htype::done);
        CHECK(act.ec == redcoord::error::handshake_failed);
        CHECK(fsm.diag().message().find("HELLO 3 was answered with number") != std::string::npos);
    }
    SECTION("HELLO answered with a map without proto 3") {
        auto fsm = started({});
        const auto act = fsm.resume(msg("%1\r\n$5\r\nproto\r\n:2\r\n"));
        CHECK(act.ec == redcoord::error::handshake_failed);
        CHECK(fsm.diag().message().find("proto 3") != std::string::npos);
    }
    SECTION("a wrong password") {
        auto fsm = started({});
        const auto act = fsm.resume(msg("-WRONGPASS invalid username-password pair\r\n"));
        CHECK(act.ec == redcoord::error::auth_failed);
        CHECK(fsm.diag().server_message().find("WRONGPASS") != std::string::npos);
    }
    SECTION("SELECT answered with something else than OK") {
        redcoord::config cfg;
        cfg.database = 3;
        auto fsm = started(cfg);
        fsm.resume(msg(hello_reply));
        const auto act = fsm.resume(msg(":0\r\n"));
        CHECK(act.ec == redcoord::error::handshake_failed);
        CHECK(fsm.diag().message().find("SELECT") != std::string::npos);
    }
    SECTION("SELECT refused") {
        redcoord::config cfg;
        cfg.database = 99;
        auto fsm = started(cfg);
        fsm.resume(msg(hello_reply));
        const auto act = fsm.resume(msg("-ERR DB index is out of range\r\n"));
        CHECK(act.ec == redcoord::error::handshake_failed);
    }
}

// ---- Sentinel ---------------------------------------------------------------------------------

TEST_CASE("sentinel_fsm: asks each sentinel in turn until one names the master", "[unit][fsm]") {
    using stype = sentinel_fsm::action::type;
    const std::vector<redcoord::endpoint> sentinels = {{"s1", 1}, {"s2", 2}, {"s3", 3}};
    sentinel_fsm fsm(sentinels, "mymaster");
    parsed msg;
    auto act = fsm.resume();
    REQUIRE(act.what == stype::connect);
    CHECK(act.target->host == "s1");
    act = fsm.resume(boost::asio::error::connection_refused);  // s1 is down
    REQUIRE(act.what == stype::connect);
    CHECK(act.target->host == "s2");
    CHECK(fsm.resume().what == stype::write);
    CHECK(std::string(fsm.payload()).find("get-master-addr-by-name") != std::string::npos);
    CHECK(fsm.resume().what == stype::read);
    act = fsm.resume({}, msg("_\r\n"));  // s2 does not know the service
    REQUIRE(act.what == stype::connect);
    CHECK(act.target->host == "s3");
    fsm.resume();
    fsm.resume();
    act = fsm.resume({}, msg("*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n"));
    CHECK(act.what == stype::done);
    CHECK_FALSE(act.ec);
    CHECK(fsm.master().host == "127.0.0.1");
    CHECK(fsm.master().port == 6380);
}

TEST_CASE("sentinel_fsm: no sentinel names a master", "[unit][fsm]") {
    using stype = sentinel_fsm::action::type;
    const std::vector<redcoord::endpoint> sentinels = {{"s1", 1}};
    sentinel_fsm fsm(sentinels, "svc");
    parsed msg;
    fsm.resume();
    fsm.resume();
    fsm.resume();
    const auto act = fsm.resume({}, msg("*2\r\n$1\r\nh\r\n$5\r\nnoway\r\n"));
    CHECK(act.what == stype::done);
    CHECK(act.ec == redcoord::error::sentinel_unavailable);
    CHECK(fsm.message().find("not an address") != std::string::npos);
}

// ---- health -----------------------------------------------------------------------------------

TEST_CASE("health_fsm: a silent server gets a PING, then is declared dead", "[unit][fsm]") {
    using a = health_fsm::action;
    health_fsm h(100ms);
    const auto t0 = clock::now();
    h.reset(t0, {});
    CHECK(h.on_tick(t0 + 100ms, t0 + 100ms, {}, false) == a::ping);
    CHECK(h.ping_outstanding());
    CHECK(h.on_tick(t0 + 150ms, t0 + 150ms, {}, false) == a::none);  // not a whole interval
    CHECK(h.on_tick(t0 + 200ms, t0 + 200ms, {}, false) == a::fail);
}

TEST_CASE("health_fsm: bytes trickling in are not progress, a reply streaming in is",
          "[unit][fsm]") {
    using a = health_fsm::action;
    const auto t0 = clock::now();
    SECTION("a byte now and then") {
        health_fsm h(100ms);
        h.reset(t0, {});
        CHECK(h.on_tick(t0 + 100ms, t0 + 100ms, {0, 3}, false) == a::ping);
        CHECK(h.on_tick(t0 + 200ms, t0 + 200ms, {0, 6}, false) == a::fail);
    }
    SECTION("a big reply arriving") {
        health_fsm h(100ms);
        h.reset(t0, {});
        std::uint64_t bytes = 0;
        for (int i = 1; i <= 10; ++i) {
            bytes += 64 * 1024;
            CHECK(h.on_tick(t0 + i * 100ms, t0 + i * 100ms, {0, bytes}, false) == a::none);
        }
    }
    SECTION("replies completing") {
        health_fsm h(100ms);
        h.reset(t0, {});
        for (std::uint64_t i = 1; i <= 10; ++i)
            CHECK(h.on_tick(t0 + i * 100ms, t0 + i * 100ms, {i, i * 10}, false) == a::none);
    }
}

TEST_CASE("health_fsm: an answered PING, a blocked command, a stalled process are not death",
          "[unit][fsm]") {
    using a = health_fsm::action;
    const auto t0 = clock::now();
    health_fsm h(100ms);
    h.reset(t0, {});
    CHECK(h.on_tick(t0 + 100ms, t0 + 100ms, {}, false) == a::ping);
    h.on_pong();
    // The PONG is a message: progress.
    CHECK(h.on_tick(t0 + 200ms, t0 + 200ms, {1, 7}, false) == a::none);
    CHECK(h.on_tick(t0 + 300ms, t0 + 300ms, {1, 7}, false) == a::ping);
    // A BLPOP keeps the server legitimately silent.
    CHECK(h.on_tick(t0 + 400ms, t0 + 400ms, {1, 7}, true) == a::none);
    CHECK(h.on_tick(t0 + 500ms, t0 + 500ms, {1, 7}, true) == a::none);
    // This process slept through a tick: judged afresh, the PING given a whole interval more.
    CHECK(h.on_tick(t0 + 900ms, t0 + 600ms, {1, 7}, false) == a::none);
    CHECK(h.on_tick(t0 + 950ms, t0 + 950ms, {1, 7}, false) == a::none);
    CHECK(h.on_tick(t0 + 1000ms, t0 + 1000ms, {1, 7}, false) == a::fail);

    health_fsm off(0ms);
    off.reset(t0, {});
    CHECK(off.on_tick(t0 + 10s, t0 + 10s, {}, false) == a::none);
}

// ---- reconnect --------------------------------------------------------------------------------

TEST_CASE("reconnect_fsm: backoff doubles up to its cap, with jitter, and restarts after a "
          "connection", "[unit][fsm]") {
    using rt = reconnect_fsm::action::type;
    redcoord::config cfg;
    cfg.reconnect_wait_min = 100ms;
    cfg.reconnect_wait_max = 1000ms;
    cfg.abort_connect = false;
    reconnect_fsm fsm(cfg, 1);
    CHECK(fsm.start().what == rt::connect);
    const clock::duration expected_max[] = {100ms, 200ms, 400ms, 800ms, 1000ms, 1000ms};
    for (auto cap : expected_max) {
        const auto act = fsm.on_connect_failed(redcoord::error::connect_timeout);
        REQUIRE(act.what == rt::wait);
        CHECK(act.wait <= cap);
        CHECK(act.wait >= cap / 2);
        CHECK(fsm.on_waited().what == rt::connect);
    }
    CHECK_FALSE(fsm.on_connected());  // the first connection: no gap
    auto act = fsm.on_lost();
    CHECK(act.what == rt::wait);
    CHECK(act.wait <= 100ms);
    CHECK(fsm.on_connected());  // a reconnection: pushes may have been missed
    CHECK(fsm.on_stop().what == rt::stop);
    CHECK(fsm.on_stop().ec == boost::asio::error::operation_aborted);
}

TEST_CASE("reconnect_fsm: abort_connect gives up after connect_retry first failures",
          "[unit][fsm]") {
    using rt = reconnect_fsm::action::type;
    redcoord::config cfg;
    cfg.abort_connect = true;
    cfg.connect_retry = 3;
    reconnect_fsm fsm(cfg, 7);
    CHECK(fsm.on_connect_failed(redcoord::error::auth_failed).what == rt::wait);
    CHECK(fsm.on_connect_failed(redcoord::error::auth_failed).what == rt::wait);
    const auto act = fsm.on_connect_failed(redcoord::error::auth_failed);
    CHECK(act.what == rt::stop);
    CHECK(act.ec == redcoord::error::auth_failed);

    // Once connected, failures never stop it.
    reconnect_fsm later(cfg, 7);
    later.on_connected();
    for (int i = 0; i < 10; ++i)
        CHECK(later.on_connect_failed(redcoord::error::auth_failed).what == rt::wait);
}
