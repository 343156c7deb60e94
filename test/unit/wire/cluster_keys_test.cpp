// Redis Cluster routing without a server: hash slots, the keys of commands, redirections, and
// the slot map read from CLUSTER SHARDS and CLUSTER SLOTS replies.
#include "wire/cluster_keys.hpp"
#include "wire/cluster_topology.hpp"

#include <redcoord/config.hpp>
#include <redcoord/error.hpp>
#include <redcoord/request.hpp>
#include <redcoord/resp3/parser.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using redcoord::detail::command_route;
using redcoord::detail::hash_slot;
using redcoord::detail::redirection;

namespace {

command_route route(const redcoord::request& req) {
    const auto cmds = redcoord::detail::split_commands(req.payload());
    REQUIRE(cmds.size() == 1);
    return redcoord::detail::route_of(redcoord::detail::command_args(cmds.front()));
}

// One RESP3 message as nodes that outlive the parser.
struct message {
    std::vector<redcoord::resp3::node> owned;
    std::vector<redcoord::resp3::node_view> views;
    explicit message(std::string_view wire) {
        redcoord::resp3::parser p;
        boost::system::error_code ec;
        const auto used = p.consume(wire, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(p.done());
        REQUIRE(used == wire.size());
        for (const auto& n : p.message()) owned.emplace_back(n);
        for (const auto& n : owned) views.push_back(n.view());
    }
};

}  // namespace

TEST_CASE("cluster: hash slots match the specification's examples", "[unit][cluster]") {
    // The specification's CRC16 test vector: CRC16("123456789") = 0x31C3.
    CHECK(hash_slot("123456789") == (0x31C3 & 16383));
    // Values CLUSTER KEYSLOT gives (Redis documentation).
    CHECK(hash_slot("somekey") == 11058);
    CHECK(hash_slot("foo{hash_tag}") == 2515);
    CHECK(hash_slot("foo") == 12182);
    CHECK(hash_slot("bar") == 5061);
    // Hash tags: the first '{' to the next '}', when not empty.
    CHECK(hash_slot("{user1000}.following") == hash_slot("{user1000}.followers"));
    CHECK(hash_slot("{user1000}.following") == hash_slot("user1000"));
    CHECK(hash_slot("foo{{bar}}zap") == hash_slot("{bar"));
    CHECK(hash_slot("foo{bar}{zap}") == hash_slot("bar"));
    CHECK(hash_slot("foo{}{bar}") == hash_slot(std::string("foo{}{bar}")));
    CHECK(hash_slot("foo{}{bar}") != hash_slot("bar"));
    CHECK(hash_slot("") == 0);
}

TEST_CASE("cluster: the keys of commands decide their slot", "[unit][cluster]") {
    using kind = command_route::kind;
    redcoord::request get;
    get.push("GET", "{orders}:a");
    CHECK(route(get).what == kind::slot);
    CHECK(route(get).slot == hash_slot("orders"));

    redcoord::request ping;
    ping.push("PING");
    CHECK(route(ping).what == kind::any);

    redcoord::request load;
    load.push("SCRIPT", "LOAD", "return 1");
    CHECK(route(load).what == kind::any);

    // EVALSHA: numkeys, then the keys; arguments are not keys.
    redcoord::request eval;
    eval.push("EVALSHA", "abc", 2, "{x}:1", "{x}:2", "other-arg");
    CHECK(route(eval).what == kind::slot);
    CHECK(route(eval).slot == hash_slot("x"));
    redcoord::request eval_cross;
    eval_cross.push("EVALSHA", "abc", 2, "a", "b");
    CHECK(route(eval_cross).what == kind::cross_slot);
    CHECK(route(eval_cross).first_key == "a");
    CHECK(route(eval_cross).other_key == "b");
    redcoord::request eval_none;
    eval_none.push("EVAL", "return 1", 0);
    CHECK(route(eval_none).what == kind::any);

    // MSET: every other argument; MGET and DEL: all.
    redcoord::request mset;
    mset.push("MSET", "{a}1", "v", "{a}2", "w");
    CHECK(route(mset).what == kind::slot);
    redcoord::request mget;
    mget.push("MGET", "a", "b");
    CHECK(route(mget).what == kind::cross_slot);

    // BLPOP: all but the timeout; XREAD: the keys after STREAMS.
    redcoord::request blpop;
    blpop.push("BLPOP", "{q}a", "{q}b", 5);
    CHECK(route(blpop).what == kind::slot);
    redcoord::request xread;
    xread.push("XREAD", "COUNT", 2, "STREAMS", "{s}1", "{s}2", "0", "0");
    CHECK(route(xread).what == kind::slot);
    CHECK(route(xread).slot == hash_slot("s"));

    // Sharded pub/sub goes by the channel; classic pub/sub anywhere.
    redcoord::request spublish;
    spublish.push("SPUBLISH", "chan", "message");
    CHECK(route(spublish).what == kind::slot);
    CHECK(route(spublish).slot == hash_slot("chan"));
    redcoord::request publish;
    publish.push("PUBLISH", "chan", "message");
    CHECK(route(publish).what == kind::any);
}

TEST_CASE("cluster: a request splits into its commands", "[unit][cluster]") {
    redcoord::request req;
    req.push("SET", "a", "1");
    req.push("GET", "b");
    req.push("PING");
    const auto cmds = redcoord::detail::split_commands(req.payload());
    REQUIRE(cmds.size() == 3);
    CHECK(redcoord::detail::command_args(cmds[0]) == std::vector<std::string_view>{"SET", "a", "1"});
    CHECK(redcoord::detail::command_args(cmds[2]) == std::vector<std::string_view>{"PING"});

    // A command appended serialized counts as the original did.
    redcoord::request copy;
    redcoord::detail::append_serialized(copy, cmds[1]);
    CHECK(copy.commands() == 1);
    CHECK(copy.expected_responses() == 1);
    CHECK(copy.payload() == cmds[1]);
    redcoord::request sub;
    sub.push("SUBSCRIBE", "x");
    redcoord::request sub_copy;
    redcoord::detail::append_serialized(sub_copy, sub.payload());
    CHECK(sub_copy.expected_responses() == 0);
    CHECK(sub_copy.subscription_changes().size() == 1);
}

TEST_CASE("cluster: redirections are parsed", "[unit][cluster]") {
    auto moved = redcoord::detail::parse_redirection("MOVED 3999 127.0.0.1:6381");
    CHECK(moved.what == redirection::kind::moved);
    CHECK(moved.slot == 3999);
    CHECK(moved.host == "127.0.0.1");
    CHECK(moved.port == 6381);
    auto ask = redcoord::detail::parse_redirection("ASK 12 [::1]:7000");
    CHECK(ask.what == redirection::kind::ask);
    CHECK(ask.host == "::1");
    CHECK(ask.port == 7000);
    auto unknown_host = redcoord::detail::parse_redirection("MOVED 1 :7001");
    CHECK(unknown_host.what == redirection::kind::moved);
    CHECK(unknown_host.host.empty());
    CHECK(redcoord::detail::parse_redirection("TRYAGAIN Multiple keys request during rehashing "
                                              "of slot")
              .what == redirection::kind::try_again);
    CHECK(redcoord::detail::parse_redirection("CLUSTERDOWN The cluster is down").what ==
          redirection::kind::cluster_down);
    CHECK(redcoord::detail::parse_redirection("ERR wrong type").what == redirection::kind::none);
    CHECK(redcoord::detail::parse_redirection("MOVED 99999 h:1").what ==
          redirection::kind::none);
    CHECK(redcoord::detail::parse_redirection("MOVED 1 h:0").what == redirection::kind::none);
}

TEST_CASE("cluster: the slot map from CLUSTER SHARDS", "[unit][cluster]") {
    // Two shards as Redis 7.0 sends them in RESP3, one with its slots as strings, and a failed
    // master's shard without slots.
    auto node = [](std::string id, int port, std::string role, std::string health) {
        return "%7\r\n+id\r\n+" + id + "\r\n+port\r\n:" + std::to_string(port) +
               "\r\n+ip\r\n+127.0.0.1\r\n+endpoint\r\n+127.0.0.1\r\n+role\r\n+" + role +
               "\r\n+replication-offset\r\n:0\r\n+health\r\n+" + health + "\r\n";
    };
    const std::string wire =
        "*3\r\n"
        "%2\r\n+slots\r\n*4\r\n:0\r\n:100\r\n:200\r\n:300\r\n+nodes\r\n*2\r\n" +
        node("aaa", 7000, "master", "online") + node("bbb", 7003, "replica", "online") +
        "%2\r\n+slots\r\n*2\r\n$3\r\n101\r\n$3\r\n199\r\n+nodes\r\n*1\r\n" +
        node("ccc", 7001, "master", "online") +
        "%2\r\n+slots\r\n*0\r\n+nodes\r\n*1\r\n" + node("ddd", 7002, "master", "fail");
    message m(wire);
    redcoord::detail::cluster_map map;
    std::string why;
    REQUIRE(redcoord::detail::parse_cluster_shards(m.views, false, "seed", map, why));
    INFO(why);
    REQUIRE(map.masters.size() == 2);
    CHECK(map.masters[0].ep == redcoord::endpoint{"127.0.0.1", 7000});
    CHECK(map.masters[0].id == "aaa");
    CHECK(map.masters[1].ep == redcoord::endpoint{"127.0.0.1", 7001});
    CHECK(map.owner[0] == 0);
    CHECK(map.owner[100] == 0);
    CHECK(map.owner[101] == 1);
    CHECK(map.owner[199] == 1);
    CHECK(map.owner[250] == 0);
    CHECK(map.owner[301] == -1);
    CHECK(map.uncovered() == 16384 - 301);

    // A shard whose master is not online leaves its slots uncovered.
    const std::string failing = "*1\r\n%2\r\n+slots\r\n*2\r\n:0\r\n:16383\r\n+nodes\r\n*1\r\n" +
                                node("eee", 7004, "master", "fail");
    message f(failing);
    REQUIRE(redcoord::detail::parse_cluster_shards(f.views, false, "seed", map, why));
    CHECK(map.masters.empty());
    CHECK(map.uncovered() == 16384);

    // Malformed: a range out of bounds is refused and said so.
    const std::string bad = "*1\r\n%2\r\n+slots\r\n*2\r\n:0\r\n:16384\r\n+nodes\r\n*1\r\n" +
                            node("fff", 7005, "master", "online");
    message b(bad);
    CHECK_FALSE(redcoord::detail::parse_cluster_shards(b.views, false, "seed", map, why));
    CHECK(why.find("out of bounds") != std::string::npos);
}

TEST_CASE("cluster: the slot map from CLUSTER SLOTS", "[unit][cluster]") {
    const std::string wire =
        "*2\r\n"
        "*4\r\n:0\r\n:8191\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$3\r\naaa\r\n"
        "*3\r\n$9\r\n127.0.0.1\r\n:7003\r\n$3\r\nbbb\r\n"
        "*3\r\n:8192\r\n:16383\r\n*3\r\n$0\r\n\r\n:7001\r\n$3\r\nccc\r\n";
    message m(wire);
    redcoord::detail::cluster_map map;
    std::string why;
    REQUIRE(redcoord::detail::parse_cluster_slots(m.views, "seed-host", map, why));
    REQUIRE(map.masters.size() == 2);
    CHECK(map.masters[0].ep == redcoord::endpoint{"127.0.0.1", 7000});
    // An empty host is the seed's.
    CHECK(map.masters[1].ep == redcoord::endpoint{"seed-host", 7001});
    CHECK(map.uncovered() == 0);
    CHECK(map.owner[8191] == 0);
    CHECK(map.owner[8192] == 1);
}

TEST_CASE("cluster: connection strings", "[unit][cluster]") {
    using redcoord::parse_config;
    auto cfg = parse_config("127.0.0.1:30001,127.0.0.1:30002,cluster=true,password=pw");
    CHECK(cfg.cluster);
    CHECK(cfg.password == "pw");
    REQUIRE(cfg.endpoints.size() == 2);
    CHECK(cfg.endpoints[1] == redcoord::endpoint{"127.0.0.1", 30002});

    auto url = parse_config("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001");
    CHECK(url.cluster);
    CHECK(url.password == "pw");
    REQUIRE(url.endpoints.size() == 2);
    CHECK(url.endpoints[0] == redcoord::endpoint{"10.0.0.1", 7000});
    auto tls = parse_config("rediss+cluster://h:7000");
    CHECK(tls.cluster);
    CHECK(tls.use_tls);
    auto query = parse_config("redis://a:1,b:2?cluster=true&clusterMaxRedirects=5");
    CHECK(query.cluster);
    CHECK(query.cluster_max_redirects == 5);
    CHECK(query.endpoints.size() == 2);

    boost::system::error_code ec;
    redcoord::diagnostics diag;
    parse_config("redis+cluster://h:7000/2", ec, diag);
    CHECK(ec == redcoord::error::bad_config);
    CHECK(diag.client_message().find("database 0 only") != std::string::npos);
    parse_config("h:7000,cluster=true,defaultDatabase=1", ec, diag);
    CHECK(ec == redcoord::error::bad_config);
    CHECK(diag.client_message().find("database 0 only") != std::string::npos);
    parse_config("h:7000,cluster=true,serviceName=m", ec, diag);
    CHECK(ec == redcoord::error::bad_config);
    CHECK(diag.client_message().find("Sentinel") != std::string::npos);
    parse_config("h:7000,cluster=maybe", ec, diag);
    CHECK(ec == redcoord::error::bad_config);
    CHECK(diag.client_message().find("cluster") != std::string::npos);
    parse_config("redis://a:1,,b:2", ec, diag);
    CHECK(ec == redcoord::error::bad_config);
}
