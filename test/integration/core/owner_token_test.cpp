// Owner tokens stay unique across processes: a process forked after its parent drew tokens
// draws others (its generator seeds itself again), so two processes never hold one token.
#include <redcoord/redcoord.hpp>

#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <string>

#include "async_test.hpp"
#include "connection_helpers.hpp"
#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace asio = boost::asio;
using redcoord::session;
using redcoord::test::with_connection;

TEST_CASE("owner tokens: a process forked after drawing tokens draws others than its parent",
          "[owner-token]") {
    with_connection([](redcoord::connection& conn, auto&) -> asio::awaitable<void> {
        session s(conn, {.node_id = "forked"});
        const auto before = s.new_owner_token();  // the generator is seeded and in use
        int fds[2];
        REQUIRE(::pipe(fds) == 0);
        const pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            // The child: its next token, to the parent, and nothing else (no destructors).
            const auto token = s.new_owner_token();
            const bool written =
                ::write(fds[1], token.data(), token.size()) == static_cast<ssize_t>(token.size());
            ::_exit(written ? 0 : 1);
        }
        ::close(fds[1]);
        const auto mine = s.new_owner_token();
        std::string theirs;
        char buf[256];
        for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) theirs.append(buf, n);
        ::close(fds[0]);
        int status = 0;
        REQUIRE(::waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
        INFO("parent " << mine << ", child " << theirs);
        CHECK(theirs.starts_with("forked:"));
        CHECK(theirs.size() == mine.size());
        CHECK(theirs != mine);
        CHECK(before != mine);
        co_return;
    });
}

}  // namespace
