// Tests of the test fixture itself: if these fail, no other integration test can be trusted.
// All but the last are of one redis-server ([single_server]); the last runs on both topologies.
#include "redis_server.hpp"
#include "connection_helpers.hpp"
#include "redis_cluster.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <thread>

#include "async_test.hpp"
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace std::chrono_literals;
using redcoord::test::raw_ping;
using redcoord::test::redis_options;
using redcoord::test::redis_server;
using redcoord::test::run_async;

TEST_CASE("redis_server starts and answers redis-cli", "[integration][single_server]") {
    redis_server server;
    REQUIRE(server.running());
    CHECK(server.pid() > 0);
    CHECK(server.port() != 0);
    CHECK(server.tls_port() == 0);
    CHECK(server.unix_path().empty());
    CHECK(std::filesystem::is_directory(server.dir()));
    CHECK(server.cli({"PING"}) == "PONG");
    CHECK(raw_ping(server.port(), 1s) == "+PONG");

    server.cli({"SET", "k", "v"});
    CHECK(server.cli({"GET", "k"}) == "v");
}

TEST_CASE("redis_server removes its temp dir and stops its process",
          "[integration][single_server]") {
    std::string dir;
    pid_t pid = -1;
    {
        redis_server server;
        dir = server.dir();
        pid = server.pid();
    }
    CHECK_FALSE(std::filesystem::exists(dir));
    CHECK(::kill(pid, 0) != 0);  // reaped: no zombie left either
}

TEST_CASE("redis_server with a password", "[integration][single_server]") {
    redis_server server(redis_options{.password = "s3cret"});
    CHECK(server.cli({"PING"}) == "PONG");
    const auto reply = raw_ping(server.port(), 1s);
    REQUIRE(reply);
    CHECK(reply->starts_with("-NOAUTH"));
}

TEST_CASE("redis_server with an ACL user", "[integration][single_server]") {
    redis_server server(redis_options{.password = "s3cret", .acl = {{"alice", "wonderland"}}});
    CHECK(server.cli({"ACL", "LIST"}).find("user alice on") != std::string::npos);
    // cli() authenticates as default; switching to alice on the same connection proves her
    // password works.
    CHECK(server.cli({"AUTH", "alice", "wonderland"}) == "OK");
    CHECK(server.cli({"AUTH", "alice", "wrong"}).starts_with("WRONGPASS"));
    // The default user keeps requirepass.
    CHECK(raw_ping(server.port(), 1s)->starts_with("-NOAUTH"));
}

TEST_CASE("redis_server pause and resume", "[integration][single_server]") {
    redis_server server;
    server.pause();
    CHECK(server.running());
    CHECK_FALSE(raw_ping(server.port(), 300ms));
    server.resume();
    CHECK(raw_ping(server.port(), 1s) == "+PONG");
}

TEST_CASE("redis_server destructor ends a paused server", "[integration][single_server]") {
    pid_t pid = -1;
    {
        redis_server server;
        pid = server.pid();
        server.pause();
    }
    CHECK(::kill(pid, 0) != 0);
}

TEST_CASE("redis_server stop, start and restart keep the port", "[integration][single_server]") {
    redis_server server;
    const auto port = server.port();
    server.cli({"SET", "k", "v"});

    server.stop();
    CHECK_FALSE(server.running());
    CHECK(server.pid() == -1);
    CHECK_FALSE(raw_ping(port, 300ms));

    server.start();
    CHECK(server.running());
    CHECK(server.port() == port);
    CHECK(server.cli({"PING"}) == "PONG");
    CHECK(server.cli({"DBSIZE"}) == "0");  // no persistence: data is gone

    const auto old_pid = server.pid();
    server.restart();
    CHECK(server.port() == port);
    CHECK(server.pid() != old_pid);
    CHECK(server.cli({"PING"}) == "PONG");
}

TEST_CASE("redis_server kill", "[integration][single_server]") {
    redis_server server;
    const auto pid = server.pid();
    server.kill();
    CHECK_FALSE(server.running());
    CHECK(::kill(pid, 0) != 0);
    CHECK_FALSE(raw_ping(server.port(), 300ms));

    server.start();
    CHECK(server.cli({"PING"}) == "PONG");
}

TEST_CASE("redis_server notices a server that died by itself", "[integration][single_server]") {
    redis_server server;
    ::kill(server.pid(), SIGKILL);
    for (int i = 0; i < 100 && server.running(); ++i) std::this_thread::sleep_for(10ms);
    CHECK_FALSE(server.running());
    server.start();
    CHECK(server.cli({"PING"}) == "PONG");
}

TEST_CASE("redis_server with TLS", "[integration][single_server]") {
    redis_server server(redis_options{.password = "pw", .tls = true});
    CHECK(server.tls_port() != 0);
    CHECK(server.tls_port() != server.port());
    REQUIRE(std::filesystem::exists(server.ca_file()));
    CHECK(std::filesystem::exists(server.dir() + "/key.pem"));
    CHECK(server.cli_tls({"PING"}) == "PONG");
    CHECK(server.cli({"PING"}) == "PONG");  // the plain port stays open
}

TEST_CASE("redis_server with a Unix socket", "[integration][single_server]") {
    redis_server server(redis_options{.unix_socket = true});
    REQUIRE_FALSE(server.unix_path().empty());
    struct stat st {};
    REQUIRE(::stat(server.unix_path().c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 0777) == 0700);
    CHECK(server.cli_unix({"PING"}) == "PONG");
}

TEST_CASE("redis_server enable_debug", "[integration][single_server]") {
    SECTION("enabled") {
        redis_server server(redis_options{.enable_debug = true});
        CHECK(server.cli({"DEBUG", "PROTOCOL", "string"}) == "Hello World");
    }
    SECTION("disabled by default") {
        redis_server server;
        CHECK(server.cli({"DEBUG", "PROTOCOL", "string"}).starts_with("ERR"));
    }
}

TEST_CASE("redis_server extra_config", "[integration][single_server]") {
    redis_server server(redis_options{.extra_config = {"maxclients 77"}});
    CHECK(server.cli({"CONFIG", "GET", "maxclients"}) == "maxclients\n77");
}

TEST_CASE("redis_server reports a bad config with the server's output",
          "[integration][single_server]") {
    try {
        redis_server server(redis_options{.extra_config = {"no-such-directive yes"}});
        FAIL("the server started despite a bad config line");
    } catch (const std::runtime_error& e) {
        CHECK_THAT(e.what(), Catch::Contains("no-such-directive"));
    }
}

TEST_CASE("redis_server start reports a port taken while it was stopped",
          "[integration][single_server]") {
    redis_server server;
    server.stop();

    // Squat on the server's port.
    const int squatter = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(squatter >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(server.port());
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(squatter, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(squatter, 1) == 0);

    CHECK_THROWS_WITH(server.start(), Catch::Contains("Address already in use"));
    CHECK_FALSE(server.running());
    ::close(squatter);

    server.start();
    CHECK(server.cli({"PING"}) == "PONG");
}

TEST_CASE("redis_server picks distinct ports for parallel servers",
          "[integration][single_server]") {
    redis_server a, b, c;
    CHECK(a.port() != b.port());
    CHECK(b.port() != c.port());
    CHECK(a.port() != c.port());
}

TEST_CASE("run_async runs a coroutine to completion", "[integration][single_server]") {
    bool finished = false;
    run_async([&](boost::asio::io_context& ioc) -> boost::asio::awaitable<void> {
        boost::asio::steady_timer timer(ioc, 10ms);
        co_await timer.async_wait(boost::asio::use_awaitable);
        finished = true;
    });
    CHECK(finished);
}

TEST_CASE("run_async rethrows the coroutine's exception", "[integration][single_server]") {
    CHECK_THROWS_WITH(run_async([](boost::asio::io_context&) -> boost::asio::awaitable<void> {
                          throw std::runtime_error("boom");
                          co_return;
                      }),
                      "boom");
}

TEST_CASE("run_async returns when the coroutine is done, even with work left",
          "[integration][single_server]") {
    const auto start = std::chrono::steady_clock::now();
    run_async([](boost::asio::io_context& ioc) -> boost::asio::awaitable<void> {
        // A long timer still pending, like a connection's run loop.
        auto background = std::make_shared<boost::asio::steady_timer>(ioc, 1h);
        background->async_wait([background](auto) {});
        co_return;
    });
    CHECK(std::chrono::steady_clock::now() - start < 5s);
}

TEST_CASE("redis_server on the test topology: one redis-server, or three masters that follow "
          "redirections and refuse what needs one process",
          "[integration]") {
    redis_server server(redis_options{.password = "s3cret"});
    CHECK(server.cli({"PING"}) == "PONG");
    // Keys of every master's slots.
    for (const std::string key : {"a", "b", "c", "d", "e"}) server.cli({"SET", key, "v-" + key});
    for (const std::string key : {"a", "b", "c", "d", "e"})
        CHECK(server.cli({"GET", key}) == "v-" + key);
    CHECK(redcoord::test::key_count(server) == 5);
    CHECK(redcoord::test::cli_on_each_node(server, {"PING"}).size() ==
          redcoord::test::masters_of(server));
    const auto address = redcoord::test::server_address(server);
    if (!redcoord::test::test_topology_is_cluster()) {
        CHECK(server.cluster() == nullptr);
        CHECK(address == std::to_string(server.port()));
        return;
    }
    const auto* cluster = server.cluster();
    REQUIRE(cluster != nullptr);
    CHECK(cluster->size() == 3);
    CHECK(cluster->master_ports().size() == 3);
    CHECK(server.port() == cluster->port(0));
    CHECK(address == cluster->seeds() + ",cluster=true");
    CHECK(cluster->node(0).options().single_server);
    CHECK(cluster->node(0).options().password == "s3cret");
    CHECK_THROWS_WITH(server.restart(), Catch::Contains("[single_server]"));
    CHECK_THROWS_WITH(server.pause(), Catch::Contains("[single_server]"));
    CHECK_THROWS_WITH(redis_server(redis_options{.tls = true}), Catch::Contains("[single_server]"));
    CHECK(server.cli({"PING"}) == "PONG");  // still up
    // A node of a cluster is one redis-server whatever the topology.
    redis_server single(redis_options{.single_server = true});
    CHECK(single.cluster() == nullptr);
}
