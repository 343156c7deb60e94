// The multiplexer with no server: which request each reply answers, subscriptions confirmed
// or refused, cancellation before and after the write, timeouts, connection loss, replies too
// large to keep, pushes through the bounded queue.
#include "wire/multiplexer.hpp"
#include "wire/push_queue.hpp"

#include <redcoord/error.hpp>
#include <redcoord/resp3/parser.hpp>

#include <catch2/catch.hpp>

#include "reply_strings.hpp"

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace {

using boost::system::error_code;
using redcoord::test::each_reply;
using redcoord::request;
using redcoord::detail::clock;
using redcoord::detail::message_kind;
using redcoord::detail::multiplexer;
using redcoord::detail::mux_elem;
namespace error = redcoord;

// What became of one request.
struct outcome {
    std::optional<error_code> ec;
    int completions = 0;
    bool from_reader = false;
    redcoord::diagnostics diag;
};

// A request that records its completion, and stores its replies as strings.
class test_elem final : public mux_elem {
public:
    test_elem(std::unique_ptr<request> req, std::vector<std::string>& replies, outcome& out)
        : mux_elem(*req, each_reply(replies), &out.diag),
          req_(std::move(req)),
          out_(out) {}

private:
    void done(error_code ec, bool from_reader) override {
        out_.ec = ec;
        ++out_.completions;
        out_.from_reader = from_reader;
    }
    std::unique_ptr<request> req_;
    outcome& out_;
};

// One request queued in the multiplexer, with what it got.
struct call {
    std::vector<std::string> replies;
    outcome out;
    mux_elem* elem = nullptr;
};

template <class... Commands>
std::unique_ptr<request> make_request(Commands... commands) {
    auto req = std::make_unique<request>();
    (req->push_range(commands.front(), std::vector<std::string>(commands.begin() + 1,
                                                                commands.end())),
     ...);
    return req;
}

using cmd = std::vector<std::string>;

void add(multiplexer& mux, call& c, std::unique_ptr<request> req) {
    auto e = std::make_unique<test_elem>(std::move(req), c.replies, c.out);
    c.elem = e.get();
    mux.add(std::move(e));
}

// Parses RESP3 wire text into messages and feeds each to the multiplexer.
std::vector<message_kind> feed(multiplexer& mux, std::string_view wire) {
    redcoord::resp3::parser p;
    std::vector<message_kind> kinds;
    while (!wire.empty()) {
        error_code ec;
        const auto n = p.consume(wire, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(p.done());
        kinds.push_back(mux.consume(p.message(), n));
        p.clear();
        wire.remove_prefix(n);
    }
    return kinds;
}

std::string write(multiplexer& mux) {
    std::string buf;
    mux.prepare_write(buf);
    return buf;
}

}  // namespace

TEST_CASE("multiplexer: pipelined replies answer requests in the order written",
          "[unit][multiplexer]") {
    multiplexer mux;
    call a, b, c;
    add(mux, a, make_request(cmd{"GET", "a"}));
    add(mux, b, make_request(cmd{"GET", "b"}, cmd{"GET", "c"}));
    add(mux, c, make_request(cmd{"GET", "d"}));
    const auto buf = write(mux);
    CHECK(buf == "*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n"
                 "*2\r\n$3\r\nGET\r\n$1\r\nc\r\n*2\r\n$3\r\nGET\r\n$1\r\nd\r\n");
    CHECK(mux.written_count() == 3);
    CHECK_FALSE(mux.has_waiting());

    CHECK(feed(mux, "$2\r\nva\r\n$2\r\nvb\r\n") ==
          std::vector{message_kind::reply, message_kind::reply});
    CHECK(a.out.completions == 1);
    CHECK(a.out.from_reader);
    CHECK(a.replies == std::vector<std::string>{"va"});
    CHECK(b.out.completions == 0);  // one of its two replies so far
    feed(mux, "$2\r\nvc\r\n$2\r\nvd\r\n");
    CHECK(b.replies == std::vector<std::string>{"vb", "vc"});
    CHECK(c.replies == std::vector<std::string>{"vd"});
    CHECK(*b.out.ec == error_code{});
    CHECK(mux.idle());
    CHECK(mux.replies() == 4);
}

TEST_CASE("multiplexer: a reply nothing awaits is unexpected and completes nothing",
          "[unit][multiplexer]") {
    multiplexer mux;
    CHECK(feed(mux, "+OK\r\n") == std::vector{message_kind::unexpected});
    CHECK(mux.unexpected_replies() == 1);
    // Queued but not written: still nothing awaits a reply.
    call a;
    add(mux, a, make_request(cmd{"PING"}));
    CHECK(feed(mux, "+PONG\r\n") == std::vector{message_kind::unexpected});
    CHECK(a.out.completions == 0);
}

TEST_CASE("multiplexer: a server error fails its request with the server's text and no other",
          "[unit][multiplexer]") {
    multiplexer mux;
    call a, b;
    add(mux, a, make_request(cmd{"SET", "k", "v"}, cmd{"INCR", "k"}, cmd{"GET", "k"}));
    add(mux, b, make_request(cmd{"GET", "k"}));
    write(mux);
    feed(mux, "+OK\r\n-ERR value is not an integer or out of range\r\n$1\r\nv\r\n$1\r\nv\r\n");
    CHECK(*a.out.ec == redcoord::error::server_error);
    CHECK(a.out.diag.message().find("not an integer") != std::string::npos);
    CHECK(*b.out.ec == error_code{});
    CHECK(b.replies == std::vector<std::string>{"v"});
}

TEST_CASE("multiplexer: a refused SSUBSCRIBE gets its error and nothing else shifts",
          "[unit][multiplexer]") {
    // Pipelined SSUBSCRIBE x, ECHO b, ECHO c: the refusal is the subscription's.
    multiplexer mux;
    call sub, b, c;
    add(mux, sub, make_request(cmd{"SSUBSCRIBE", "x"}));
    add(mux, b, make_request(cmd{"ECHO", "b"}));
    add(mux, c, make_request(cmd{"ECHO", "c"}));
    write(mux);
    CHECK(mux.shard_channels().count("x") == 1);
    CHECK(feed(mux, "-MOVED 16287 127.0.0.1:7002\r\n$1\r\nb\r\n$1\r\nc\r\n") ==
          std::vector{message_kind::reply, message_kind::reply, message_kind::reply});
    CHECK(*sub.out.ec == redcoord::error::server_error);
    CHECK(sub.out.diag.message().find("MOVED") != std::string::npos);
    CHECK(b.replies == std::vector<std::string>{"b"});
    CHECK(c.replies == std::vector<std::string>{"c"});
    CHECK(*b.out.ec == error_code{});
    CHECK(mux.unexpected_replies() == 0);
    // Refused: not restored after a reconnect (which would be refused again, forever).
    CHECK(mux.shard_channels().empty());
    CHECK(mux.restore_request() == nullptr);
}

TEST_CASE("multiplexer: an unrequested sunsubscribe drops the channel and a requested one is a confirmation",
          "[unit][multiplexer]") {
    multiplexer mux;
    call sub;
    add(mux, sub, make_request(cmd{"SSUBSCRIBE", "{a}x"}));
    write(mux);
    CHECK(feed(mux, ">3\r\n$10\r\nssubscribe\r\n$4\r\n{a}x\r\n:1\r\n") ==
          std::vector{message_kind::confirmation});
    call sub2;
    add(mux, sub2, make_request(cmd{"SSUBSCRIBE", "{b}y"}));
    write(mux);
    feed(mux, ">3\r\n$10\r\nssubscribe\r\n$4\r\n{b}y\r\n:1\r\n");
    CHECK(mux.take_moved_shard_channels() == 0);
    // One SSUBSCRIBE per channel: a cluster refuses one whose channels span slots.
    REQUIRE(mux.restore_request());
    CHECK(mux.restore_request()->payload() ==
          "*2\r\n$10\r\nSSUBSCRIBE\r\n$4\r\n{a}x\r\n*2\r\n$10\r\nSSUBSCRIBE\r\n$4\r\n{b}y\r\n");
    // The slot of {a} moved: the server drops the channel unasked. The push still reaches the
    // receiver; the channel is not restored any more.
    CHECK(feed(mux, ">3\r\n$12\r\nsunsubscribe\r\n$4\r\n{a}x\r\n:0\r\n") ==
          std::vector{message_kind::push});
    CHECK(mux.take_moved_shard_channels() == 1);
    CHECK(mux.take_moved_shard_channels() == 0);
    CHECK(mux.shard_channels() == std::set<std::string>{"{b}y"});
    CHECK(mux.restore_request(false) == nullptr);  // classic ones only: none
    // A requested SUNSUBSCRIBE is confirmed, not counted.
    call unsub;
    add(mux, unsub, make_request(cmd{"SUNSUBSCRIBE", "{b}y"}));
    write(mux);
    CHECK(feed(mux, ">3\r\n$12\r\nsunsubscribe\r\n$4\r\n{b}y\r\n:0\r\n") ==
          std::vector{message_kind::confirmation});
    CHECK(*unsub.out.ec == error_code{});
    CHECK(mux.take_moved_shard_channels() == 0);
    CHECK(mux.shard_channels().empty());
}

TEST_CASE("multiplexer: a NOPERM SUBSCRIBE of two channels is one error", "[unit][multiplexer]") {
    multiplexer mux;
    call sub, next;
    add(mux, sub, make_request(cmd{"SUBSCRIBE", "a", "b"}));
    add(mux, next, make_request(cmd{"PING"}));
    write(mux);
    feed(mux, "-NOPERM User u has no permissions to access the 'a' channel\r\n+PONG\r\n");
    CHECK(*sub.out.ec == redcoord::error::server_error);
    CHECK(next.replies == std::vector<std::string>{"PONG"});
    CHECK(mux.channels().empty());
}

TEST_CASE("multiplexer: a subscription completes when each of its channels is confirmed",
          "[unit][multiplexer]") {
    multiplexer mux;
    call sub, get;
    add(mux, sub, make_request(cmd{"SUBSCRIBE", "a", "b"}));
    add(mux, get, make_request(cmd{"GET", "k"}));
    write(mux);
    // A message on another channel confirms nothing; it is a push like any other.
    CHECK(feed(mux, ">3\r\n$7\r\nmessage\r\n$5\r\nother\r\n$1\r\nx\r\n") ==
          std::vector{message_kind::push});
    CHECK(feed(mux, ">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n") ==
          std::vector{message_kind::confirmation});
    CHECK(sub.out.completions == 0);
    CHECK(feed(mux, ">3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n") ==
          std::vector{message_kind::confirmation});
    CHECK(*sub.out.ec == error_code{});
    CHECK(sub.out.from_reader);
    feed(mux, "$1\r\nv\r\n");
    CHECK(get.replies == std::vector<std::string>{"v"});
    // The confirmations still reach the receiver, after the message, in order.
    auto& q = mux.pushes();
    REQUIRE(q.size() == 3);
    redcoord::push_message m;
    q.take(m);
    CHECK(m.kind == "message");
    q.take(m);
    CHECK((m.kind == "subscribe" && m.channel == "a" && m.payload == "1"));
    CHECK(mux.pushes_received() == 3);
    auto restore = mux.restore_request();
    REQUIRE(restore);
    CHECK(restore->payload() == "*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$1\r\nb\r\n");
}

TEST_CASE("multiplexer: replies and confirmations of one request keep their places",
          "[unit][multiplexer]") {
    multiplexer mux;
    call mixed;
    add(mux, mixed, make_request(cmd{"GET", "k"}, cmd{"PSUBSCRIBE", "p*"}, cmd{"GET", "j"}));
    write(mux);
    // An ordinary reply where the confirmation belongs is a protocol violation.
    feed(mux, "$2\r\nv1\r\n");
    CHECK(feed(mux, ">3\r\n$10\r\npsubscribe\r\n$2\r\np*\r\n:1\r\n") ==
          std::vector{message_kind::confirmation});
    feed(mux, "$2\r\nv2\r\n");
    CHECK(*mixed.out.ec == error_code{});
    CHECK(mixed.replies == std::vector<std::string>{"v1", "v2"});

    call broken;
    add(mux, broken, make_request(cmd{"SUBSCRIBE", "c"}));
    write(mux);
    CHECK(feed(mux, "+OK\r\n") == std::vector{message_kind::unexpected});
}

TEST_CASE("multiplexer: UNSUBSCRIBE from all expects one confirmation per channel it had",
          "[unit][multiplexer]") {
    multiplexer mux;
    call sub, unsub, after;
    add(mux, sub, make_request(cmd{"SUBSCRIBE", "a", "b"}));
    add(mux, unsub, make_request(cmd{"UNSUBSCRIBE"}));
    add(mux, after, make_request(cmd{"PING"}));
    write(mux);
    CHECK(mux.channels().empty());
    feed(mux, ">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n>3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n");
    feed(mux, ">3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n");
    CHECK(unsub.out.completions == 0);
    feed(mux, ">3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:0\r\n+PONG\r\n");
    CHECK(*unsub.out.ec == error_code{});
    CHECK(after.replies == std::vector<std::string>{"PONG"});
}

TEST_CASE("multiplexer: cancelled before the write, a request is never written",
          "[unit][multiplexer]") {
    multiplexer mux;
    call a, b;
    add(mux, a, make_request(cmd{"GET", "a"}));
    add(mux, b, make_request(cmd{"GET", "b"}));
    a.elem->complete(boost::asio::error::operation_aborted);
    CHECK(*a.out.ec == boost::asio::error::operation_aborted);
    CHECK_FALSE(a.out.from_reader);
    CHECK(write(mux) == "*2\r\n$3\r\nGET\r\n$1\r\nb\r\n");
    CHECK(mux.written_count() == 1);
    feed(mux, "$1\r\nb\r\n");
    CHECK(b.replies == std::vector<std::string>{"b"});
    CHECK(a.out.completions == 1);
}

// A request cancelled before the write stays queued as a tombstone until the writer drops it;
// its caller may free the request as soon as it is told. Failing the queue (a connection
// attempt failed) or handing it over (to a cluster router) drops it without reading it.
TEST_CASE("multiplexer: a request cancelled before the write is dropped unread when the queue fails",
          "[unit][multiplexer]") {
    multiplexer mux;
    call a, b, c;
    add(mux, a, make_request(cmd{"GET", "a"}));
    add(mux, b, make_request(cmd{"GET", "b"}));
    add(mux, c, make_request(cmd{"GET", "c"}));
    a.elem->complete(boost::asio::error::operation_aborted);
    std::vector<const mux_elem*> asked;
    mux.fail_waiting_if(redcoord::error::not_connected, [&](const mux_elem& e) {
        asked.push_back(&e);
        return &e == b.elem;
    });
    CHECK(asked == std::vector<const mux_elem*>{b.elem, c.elem});
    CHECK(a.out.completions == 1);
    CHECK(*a.out.ec == boost::asio::error::operation_aborted);
    CHECK(b.out.completions == 1);
    CHECK(*b.out.ec == redcoord::error::not_connected);
    CHECK(mux.waiting_count() == 1);

    c.elem->complete(boost::asio::error::operation_aborted);
    call d;
    add(mux, d, make_request(cmd{"GET", "d"}));
    const auto taken = mux.take_waiting();
    REQUIRE(taken.size() == 1);
    CHECK(taken[0].get() == d.elem);
    CHECK(mux.waiting_count() == 0);
    CHECK(mux.queued_bytes() == 0);
}

TEST_CASE("multiplexer: cancelled after the write, its reply is read and dropped",
          "[unit][multiplexer]") {
    multiplexer mux;
    call a, b;
    add(mux, a, make_request(cmd{"GET", "a"}));
    add(mux, b, make_request(cmd{"GET", "b"}));
    write(mux);
    a.elem->complete(boost::asio::error::operation_aborted);
    feed(mux, "$1\r\na\r\n$1\r\nb\r\n");
    CHECK(a.out.completions == 1);
    CHECK(*a.out.ec == boost::asio::error::operation_aborted);
    CHECK(a.replies.empty());  // its reply went nowhere
    CHECK(b.replies == std::vector<std::string>{"b"});
    CHECK(mux.idle());
}

TEST_CASE("multiplexer: timeouts pick the requests past their deadline", "[unit][multiplexer]") {
    multiplexer mux;
    call a, b, c;
    const auto now = clock::now();
    add(mux, a, make_request(cmd{"GET", "a"}));
    add(mux, b, make_request(cmd{"GET", "b"}));
    add(mux, c, make_request(cmd{"GET", "c"}));
    a.elem->deadline = now - std::chrono::milliseconds(1);
    b.elem->deadline = now + std::chrono::seconds(5);
    write(mux);  // a and b written, then c queued with an earlier deadline
    call d;
    add(mux, d, make_request(cmd{"GET", "d"}));
    d.elem->deadline = now + std::chrono::seconds(1);
    std::vector<mux_elem*> expired;
    CHECK(mux.expired(now, expired) == now + std::chrono::seconds(1));
    REQUIRE(expired.size() == 1);
    CHECK(expired[0] == a.elem);
    expired.clear();
    CHECK(mux.expired(now + std::chrono::seconds(2), expired) == now + std::chrono::seconds(5));
    REQUIRE(expired.size() == 2);
}

TEST_CASE("multiplexer: a lost connection fails what was written, retries what may be",
          "[unit][multiplexer]") {
    multiplexer mux;
    call plain, retried, sub, partial, queued;
    add(mux, plain, make_request(cmd{"INCR", "n"}));
    add(mux, retried, make_request(cmd{"GET", "k"}));
    add(mux, sub, make_request(cmd{"SUBSCRIBE", "ch"}));
    add(mux, partial, make_request(cmd{"GET", "a"}, cmd{"GET", "b"}));
    retried.elem->retry = true;
    partial.elem->retry = true;
    write(mux);
    // plain is answered before the connection drops.
    feed(mux, ":1\r\n");
    add(mux, queued, make_request(cmd{"GET", "q"}));
    mux.on_connection_lost(redcoord::error::connection_lost);
    CHECK(*plain.out.ec == error_code{});
    CHECK(retried.out.completions == 0);  // written again, first
    CHECK(*sub.out.ec == error_code{});   // restored after the reconnect instead
    CHECK(partial.out.completions == 0);  // no reply yet: retried too
    CHECK(queued.out.completions == 0);
    CHECK(write(mux) ==
          "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n"
          "*2\r\n$3\r\nGET\r\n$1\r\nq\r\n");
    REQUIRE(mux.restore_request());
    CHECK(mux.restore_request()->payload() == "*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n");

    // A second loss with a reply half received: that one cannot be retried.
    feed(mux, "$1\r\nk\r\n$1\r\na\r\n");
    mux.on_connection_lost(redcoord::error::connection_lost);
    CHECK(*retried.out.ec == error_code{});
    CHECK(*partial.out.ec == redcoord::error::connection_lost);
    CHECK(*queued.out.ec == redcoord::error::connection_lost);
}

TEST_CASE("multiplexer: a reply too large to keep fails its request only",
          "[unit][multiplexer]") {
    multiplexer mux;
    call big, next;
    add(mux, big, make_request(cmd{"LRANGE", "l", "0", "-1"}));
    add(mux, next, make_request(cmd{"GET", "k"}));
    write(mux);
    CHECK(mux.consume_discarded(1 << 20, redcoord::error::reply_too_large, "too large: 1 MiB") ==
          message_kind::reply);
    CHECK(*big.out.ec == redcoord::error::reply_too_large);
    CHECK(big.out.diag.message() == "too large: 1 MiB");
    feed(mux, "$1\r\nv\r\n");
    CHECK(next.replies == std::vector<std::string>{"v"});
    // With nothing awaiting it, a discarded reply is unexpected too.
    CHECK(mux.consume_discarded(10, redcoord::error::reply_too_large, "") ==
          message_kind::unexpected);
}

TEST_CASE("push_queue: bounded, and an overflow event comes before what is left",
          "[unit][multiplexer]") {
    redcoord::detail::push_queue q(2);
    for (const char* payload : {"1", "2", "3"}) {
        redcoord::push_message m;
        m.kind = "message";
        m.payload = payload;
        q.push(std::move(m));
    }
    CHECK(q.size() == 2);
    CHECK(q.dropped() == 1);
    std::vector<redcoord::push_message> all;
    CHECK(q.take_all(all) == 3);
    REQUIRE(all.size() == 3);
    CHECK(all[0].event == redcoord::push_event::overflow);
    CHECK(all[0].is_gap());
    CHECK(all[1].payload == "2");
    CHECK(all[2].payload == "3");
    CHECK_FALSE(q.ready());
}

TEST_CASE("multiplexer: a WAIT in flight marks the server silent until it may answer",
          "[unit][multiplexer]") {
    multiplexer mux;
    call wait, get;
    auto req = make_request(cmd{"WAIT", "1", "1500"});
    REQUIRE(req->has_wait_command());
    REQUIRE_FALSE(req->has_blocking_command());  // stays on this connection
    add(mux, wait, std::move(req));
    wait.elem->blocking = true;
    add(mux, get, make_request(cmd{"GET", "k"}));
    const auto before = clock::now();
    write(mux);
    CHECK(mux.blocking_in_flight() == 1);
    CHECK(mux.blocked_until() >= before + std::chrono::milliseconds(1500));
    CHECK(mux.blocked_until() <= clock::now() + std::chrono::milliseconds(1500));
    // Its reply comes first, then the GET's: pipelined behind it, in order.
    feed(mux, ":0\r\n$1\r\nv\r\n");
    CHECK(wait.replies == std::vector<std::string>{"0"});
    CHECK(get.replies == std::vector<std::string>{"v"});
    CHECK(mux.blocking_in_flight() == 0);
    CHECK(mux.blocked_until() == clock::time_point::min());
}
