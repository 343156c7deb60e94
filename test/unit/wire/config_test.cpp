// Connection strings: the comma form, the semicolon form, the URL forms, and the errors they
// report.
#include <redcoord/config.hpp>
#include <redcoord/error.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

using namespace std::chrono_literals;
using redcoord::config;
using redcoord::endpoint;
using redcoord::parse_config;

namespace {

// Parses text that must be valid, failing the test with the diagnostic otherwise.
config parse_ok(std::string_view text) {
    boost::system::error_code ec;
    redcoord::diagnostics diag;
    config cfg = parse_config(text, ec, diag);
    INFO("input: " << text);
    INFO("diagnostic: " << diag.client_message());
    REQUIRE_FALSE(ec);
    CHECK(diag.empty());
    return cfg;
}

std::vector<endpoint> endpoints(std::initializer_list<endpoint> list) { return list; }

// Every field but the endpoints must be the same in both.
void check_same_options(const config& cfg, const config& expected) {
    CHECK(cfg.unix_socket == expected.unix_socket);
    CHECK(cfg.service_name == expected.service_name);
    CHECK(cfg.use_tls == expected.use_tls);
    CHECK(cfg.tls_server_name == expected.tls_server_name);
    CHECK(cfg.tls_ca_file == expected.tls_ca_file);
    CHECK(cfg.tls_verify == expected.tls_verify);
    CHECK(cfg.username == expected.username);
    CHECK(cfg.password == expected.password);
    CHECK(cfg.database == expected.database);
    CHECK(cfg.client_name == expected.client_name);
    CHECK(cfg.connect_timeout == expected.connect_timeout);
    CHECK(cfg.request_timeout == expected.request_timeout);
    CHECK(cfg.connect_retry == expected.connect_retry);
    CHECK(cfg.abort_connect == expected.abort_connect);
    CHECK(cfg.fail_fast_when_disconnected == expected.fail_fast_when_disconnected);
    CHECK(cfg.health_check_interval == expected.health_check_interval);
    CHECK(cfg.reconnect_wait_min == expected.reconnect_wait_min);
    CHECK(cfg.reconnect_wait_max == expected.reconnect_wait_max);
    CHECK(cfg.max_nesting_depth == expected.max_nesting_depth);
    CHECK(cfg.max_bulk_size == expected.max_bulk_size);
    CHECK(cfg.max_aggregate_size == expected.max_aggregate_size);
    CHECK(cfg.max_pending_pushes == expected.max_pending_pushes);
    CHECK(cfg.max_blocking_connections == expected.max_blocking_connections);
}

// Every field that none of the keys in `text` touched must keep its default.
void check_defaults(const config& cfg) { check_same_options(cfg, config{}); }

}  // namespace

TEST_CASE("comma form: the reference string", "[unit][config]") {
    auto cfg = parse_ok(
        "localhost:6379,password=secret,ssl=true,connectTimeout=5000,syncTimeout=5000,"
        "connectRetry=3,abortConnect=false,serviceName=mymaster");
    CHECK(cfg.endpoints == endpoints({{"localhost", 6379}}));
    CHECK(cfg.password == "secret");
    CHECK(cfg.username.empty());
    CHECK(cfg.use_tls);
    CHECK(cfg.connect_timeout == 5000ms);
    CHECK(cfg.request_timeout == 5000ms);
    CHECK(cfg.connect_retry == 3);
    CHECK_FALSE(cfg.abort_connect);
    CHECK(cfg.service_name == "mymaster");
    CHECK(cfg.unix_socket.empty());
}

TEST_CASE("comma form: every key", "[unit][config]") {
    auto cfg = parse_ok(
        "redis.example:6380,user=alice,password=pw,ssl=true,sslHost=cache.example,"
        "sslVerify=false,sslCaFile=/etc/ca.pem,connectTimeout=1500,syncTimeout=250,"
        "connectRetry=7,abortConnect=false,serviceName=svc,defaultDatabase=4,name=worker-1,"
        "keepAlive=10,failFast=true");
    CHECK(cfg.endpoints == endpoints({{"redis.example", 6380}}));
    CHECK(cfg.username == "alice");
    CHECK(cfg.password == "pw");
    CHECK(cfg.use_tls);
    CHECK(cfg.tls_server_name == "cache.example");
    CHECK_FALSE(cfg.tls_verify);
    CHECK(cfg.tls_ca_file == "/etc/ca.pem");
    CHECK(cfg.connect_timeout == 1500ms);
    CHECK(cfg.request_timeout == 250ms);
    CHECK(cfg.connect_retry == 7);
    CHECK_FALSE(cfg.abort_connect);
    CHECK(cfg.service_name == "svc");
    CHECK(cfg.database == 4);
    CHECK(cfg.client_name == "worker-1");
    CHECK(cfg.health_check_interval == 10s);
    CHECK(cfg.fail_fast_when_disconnected);
}

TEST_CASE("comma form: several endpoints", "[unit][config]") {
    SECTION("a failover list, with and without ports") {
        auto cfg = parse_ok("a.example:7000,b.example,[::1]:7002,[fe80::1]");
        CHECK(cfg.endpoints ==
              endpoints(
                  {{"a.example", 7000}, {"b.example", 6379}, {"::1", 7002}, {"fe80::1", 6379}}));
    }
    SECTION("sentinels mixed with options") {
        auto cfg = parse_ok("s1:26379,serviceName=mymaster,s2:26379 , s3:26379");
        CHECK(cfg.endpoints == endpoints({{"s1", 26379}, {"s2", 26379}, {"s3", 26379}}));
        CHECK(cfg.service_name == "mymaster");
    }
    SECTION("no endpoint keeps the default one") {
        auto cfg = parse_ok("password=x");
        CHECK(cfg.endpoints == config{}.endpoints);
    }
}

TEST_CASE("comma form: keys, values and whitespace", "[unit][config]") {
    SECTION("keys and booleans are case-insensitive") {
        auto cfg = parse_ok("host,PASSWORD=x,SSL=TRUE,AbortConnect=False,connecttimeout=9");
        CHECK(cfg.password == "x");
        CHECK(cfg.use_tls);
        CHECK_FALSE(cfg.abort_connect);
        CHECK(cfg.connect_timeout == 9ms);
    }
    SECTION("whitespace around entries, keys and values is trimmed") {
        auto cfg = parse_ok("  host:1234 ,  password = secret  ,\tname=n ");
        CHECK(cfg.endpoints == endpoints({{"host", 1234}}));
        CHECK(cfg.password == "secret");
        CHECK(cfg.client_name == "n");
    }
    SECTION("empty entries are ignored") {
        auto cfg = parse_ok("host,,password=x,");
        CHECK(cfg.endpoints == endpoints({{"host", 6379}}));
        CHECK(cfg.password == "x");
    }
    SECTION("a value may contain '=' and '://'") {
        auto cfg = parse_ok("host,password=a=b://c");
        CHECK(cfg.password == "a=b://c");
    }
    SECTION("asyncTimeout also sets the request timeout; the last one wins") {
        CHECK(parse_ok("syncTimeout=100,asyncTimeout=200").request_timeout == 200ms);
        CHECK(parse_ok("asyncTimeout=200,syncTimeout=100").request_timeout == 100ms);
    }
    SECTION("zero durations disable") {
        auto cfg = parse_ok("keepAlive=0,syncTimeout=0");
        CHECK(cfg.health_check_interval == 0ms);
        CHECK(cfg.request_timeout == 0ms);
    }
    SECTION("an empty name sends none") { CHECK(parse_ok("host,name=").client_name.empty()); }
    SECTION("port bounds") {
        CHECK(parse_ok("h:1").endpoints.front().port == 1);
        CHECK(parse_ok("h:65535").endpoints.front().port == 65535);
    }
}

TEST_CASE("defaults are kept when a key is absent", "[unit][config]") {
    SECTION("comma form") {
        auto cfg = parse_ok("somehost");
        CHECK(cfg.endpoints == endpoints({{"somehost", 6379}}));
        check_defaults(cfg);
    }
    SECTION("URL") {
        auto cfg = parse_ok("redis://somehost");
        CHECK(cfg.endpoints == endpoints({{"somehost", 6379}}));
        check_defaults(cfg);
    }
    SECTION("semicolon form") {
        auto cfg = parse_ok("server=somehost;");
        CHECK(cfg.endpoints == endpoints({{"somehost", 6379}}));
        check_defaults(cfg);
    }
}

TEST_CASE("semicolon form: the reference string", "[unit][config]") {
    auto cfg = parse_ok("server=localhost:6379;password=secret;ssl=true");
    CHECK(cfg.endpoints == endpoints({{"localhost", 6379}}));
    CHECK(cfg.password == "secret");
    CHECK(cfg.use_tls);
    CHECK(cfg.username.empty());
    CHECK(cfg.unix_socket.empty());
}

TEST_CASE("semicolon form: several servers", "[unit][config]") {
    SECTION("repeated server= entries extend the list in order") {
        auto cfg = parse_ok("server=a.example:7000;password=x;server=b.example;server=[::1]:7002");
        CHECK(cfg.endpoints ==
              endpoints({{"a.example", 7000}, {"b.example", 6379}, {"::1", 7002}}));
        CHECK(cfg.password == "x");
    }
    SECTION("a comma list inside one server= value") {
        auto cfg = parse_ok("server=a:1,b:2;password=x");
        CHECK(cfg.endpoints == endpoints({{"a", 1}, {"b", 2}}));
        CHECK(cfg.password == "x");
    }
    SECTION("both, with spaces and an empty item") {
        auto cfg = parse_ok("server= a:1 , b:2 ,; server=c:3");
        CHECK(cfg.endpoints == endpoints({{"a", 1}, {"b", 2}, {"c", 3}}));
    }
    SECTION("sentinels") {
        auto cfg = parse_ok("server=s1:26379,s2:26379;serviceName=mymaster");
        CHECK(cfg.endpoints == endpoints({{"s1", 26379}, {"s2", 26379}}));
        CHECK(cfg.service_name == "mymaster");
    }
}

TEST_CASE("semicolon form: host= and port=", "[unit][config]") {
    SECTION("both") {
        auto cfg = parse_ok("host=cache.example;port=6380;password=x");
        CHECK(cfg.endpoints == endpoints({{"cache.example", 6380}}));
        CHECK(cfg.password == "x");
    }
    SECTION("port= after other keys") {
        CHECK(parse_ok("ssl=true;port=7000;host=h").endpoints == endpoints({{"h", 7000}}));
    }
    SECTION("host alone keeps the default port") {
        CHECK(parse_ok("host=h").endpoints == endpoints({{"h", 6379}}));
    }
    SECTION("port alone keeps the default host") {
        CHECK(parse_ok("port=6390").endpoints == endpoints({{"127.0.0.1", 6390}}));
    }
    SECTION("a bracketed IPv6 host") {
        CHECK(parse_ok("host=[::1];port=1").endpoints == endpoints({{"::1", 1}}));
    }
    SECTION("no endpoint key keeps the default endpoint") {
        auto cfg = parse_ok("password=x;ssl=true");
        CHECK(cfg.endpoints == config{}.endpoints);
        CHECK(cfg.password == "x");
        CHECK(cfg.use_tls);
    }
}

TEST_CASE("semicolon form: keys, values and whitespace", "[unit][config]") {
    SECTION("keys and booleans are case-insensitive") {
        auto cfg = parse_ok(
            "SERVER=h:1;PassWord=x;SSL=TRUE;UserName=u;DataBase=3;CLIENTNAME=c;"
            "abortconnect=False");
        CHECK(cfg.endpoints == endpoints({{"h", 1}}));
        CHECK(cfg.password == "x");
        CHECK(cfg.use_tls);
        CHECK(cfg.username == "u");
        CHECK(cfg.database == 3);
        CHECK(cfg.client_name == "c");
        CHECK_FALSE(cfg.abort_connect);
        CHECK(parse_ok("HOST=h;Port=2").endpoints == endpoints({{"h", 2}}));
    }
    SECTION("whitespace and a trailing ';'") {
        auto cfg = parse_ok("  server = h:1234 ;  password = secret  ;;\tname=n ; ");
        CHECK(cfg.endpoints == endpoints({{"h", 1234}}));
        CHECK(cfg.password == "secret");
        CHECK(cfg.client_name == "n");
    }
    SECTION("the other spellings set the same fields") {
        CHECK(parse_ok("server=h;user=a").username == "a");
        CHECK(parse_ok("server=h;username=a").username == "a");
        CHECK(parse_ok("server=h;database=2").database == 2);
        CHECK(parse_ok("server=h;db=2").database == 2);
        CHECK(parse_ok("server=h;defaultDatabase=2").database == 2);
        CHECK(parse_ok("server=h;name=c").client_name == "c");
        CHECK(parse_ok("server=h;clientName=c").client_name == "c");
    }
    SECTION("a value may contain '=', ',' and '://'") {
        auto cfg = parse_ok("server=h;password=a=b,c://d");
        CHECK(cfg.password == "a=b,c://d");
        CHECK(cfg.endpoints == endpoints({{"h", 6379}}));
    }
    SECTION("a ';' in a value of the comma form is left alone") {
        auto cfg = parse_ok("localhost:6379,password=a;b");
        CHECK(cfg.endpoints == endpoints({{"localhost", 6379}}));
        CHECK(cfg.password == "a;b");
        CHECK(parse_ok("password=x,h,name=a;b").client_name == "a;b");
    }
}

TEST_CASE("semicolon form: the same options as the comma form", "[unit][config]") {
    auto semicolon = parse_ok(
        "server=redis.example:6380,b.example;user=alice;password=pw;ssl=true;"
        "sslHost=cache.example;sslVerify=false;sslCaFile=/etc/ca.pem;connectTimeout=1500;"
        "syncTimeout=250;connectRetry=7;abortConnect=false;serviceName=svc;defaultDatabase=4;"
        "name=worker-1;keepAlive=10;failFast=true");
    auto comma = parse_ok(
        "redis.example:6380,b.example,user=alice,password=pw,ssl=true,sslHost=cache.example,"
        "sslVerify=false,sslCaFile=/etc/ca.pem,connectTimeout=1500,syncTimeout=250,"
        "connectRetry=7,abortConnect=false,serviceName=svc,defaultDatabase=4,name=worker-1,"
        "keepAlive=10,failFast=true");
    CHECK(semicolon.endpoints == endpoints({{"redis.example", 6380}, {"b.example", 6379}}));
    CHECK(semicolon.endpoints == comma.endpoints);
    check_same_options(semicolon, comma);
    // The strings set every option away from its default, so the comparison means something.
    CHECK(semicolon.password == "pw");
    CHECK(semicolon.tls_ca_file == "/etc/ca.pem");
    CHECK(semicolon.health_check_interval == 10s);
    CHECK(semicolon.fail_fast_when_disconnected);
}

TEST_CASE("URL: redis:// with user, password and database", "[unit][config]") {
    SECTION("user and password") {
        auto cfg = parse_ok("redis://alice:s3cret@cache.example:6380/2");
        CHECK(cfg.endpoints == endpoints({{"cache.example", 6380}}));
        CHECK(cfg.username == "alice");
        CHECK(cfg.password == "s3cret");
        CHECK(cfg.database == 2);
        CHECK_FALSE(cfg.use_tls);
    }
    SECTION("password only") {
        auto cfg = parse_ok("redis://:pw@host");
        CHECK(cfg.username.empty());
        CHECK(cfg.password == "pw");
    }
    SECTION("user only") {
        auto cfg = parse_ok("redis://bob@host");
        CHECK(cfg.username == "bob");
        CHECK(cfg.password.empty());
    }
    SECTION("percent-decoding; '+' is kept") {
        auto cfg = parse_ok("redis://us%40er:p%3As%2Fs+w%25@host");
        CHECK(cfg.username == "us@er");
        CHECK(cfg.password == "p:s/s+w%");
    }
    SECTION("an unencoded '@' in the password: the last '@' ends the user info") {
        auto cfg = parse_ok("redis://u:p@ss@host");
        CHECK(cfg.password == "p@ss");
        CHECK(cfg.endpoints == endpoints({{"host", 6379}}));
    }
    SECTION("empty path and '/' keep database 0") {
        CHECK(parse_ok("redis://host/").database == 0);
        CHECK(parse_ok("redis://host").database == 0);
    }
    SECTION("the scheme is case-insensitive") {
        CHECK(parse_ok("REDIS://host:1").endpoints == endpoints({{"host", 1}}));
    }
}

TEST_CASE("URL: rediss:// and IPv6", "[unit][config]") {
    SECTION("rediss sets TLS") {
        auto cfg = parse_ok("rediss://host:6390");
        CHECK(cfg.use_tls);
        CHECK(cfg.endpoints == endpoints({{"host", 6390}}));
    }
    SECTION("bracketed IPv6 with port") {
        auto cfg = parse_ok("redis://[::1]:6380/3");
        CHECK(cfg.endpoints == endpoints({{"::1", 6380}}));
        CHECK(cfg.database == 3);
    }
    SECTION("bracketed IPv6 without port, with user info") {
        auto cfg = parse_ok("rediss://u:p@[2001:db8::7]");
        CHECK(cfg.endpoints == endpoints({{"2001:db8::7", 6379}}));
        CHECK(cfg.username == "u");
        CHECK(cfg.password == "p");
        CHECK(cfg.use_tls);
    }
}

TEST_CASE("URL: query parameters", "[unit][config]") {
    SECTION("the URL keys and the comma-form keys") {
        auto cfg = parse_ok(
            "redis://host?db=5&password=p%26w&user=carol&name=svc&connectTimeout=42"
            "&SSLVERIFY=false&keepAlive=3&failFast=true");
        CHECK(cfg.database == 5);
        CHECK(cfg.password == "p&w");
        CHECK(cfg.username == "carol");
        CHECK(cfg.client_name == "svc");
        CHECK(cfg.connect_timeout == 42ms);
        CHECK_FALSE(cfg.tls_verify);
        CHECK(cfg.health_check_interval == 3s);
        CHECK(cfg.fail_fast_when_disconnected);
    }
    SECTION("the query is applied last") {
        CHECK(parse_ok("redis://host/1?db=2").database == 2);
        CHECK_FALSE(parse_ok("rediss://host?ssl=false").use_tls);
    }
    SECTION("empty query items are ignored") {
        CHECK(parse_ok("redis://host?&db=1&").database == 1);
    }
}

TEST_CASE("URL: unix://", "[unit][config]") {
    SECTION("path only") {
        auto cfg = parse_ok("unix:///var/run/redis.sock");
        CHECK(cfg.unix_socket == "/var/run/redis.sock");
        CHECK(cfg.database == 0);
        CHECK_FALSE(cfg.use_tls);
    }
    SECTION("with db, password and user") {
        auto cfg = parse_ok("unix:///tmp/redis.sock?db=3&password=pw&user=dave");
        CHECK(cfg.unix_socket == "/tmp/redis.sock");
        CHECK(cfg.database == 3);
        CHECK(cfg.password == "pw");
        CHECK(cfg.username == "dave");
    }
    SECTION("with user info and a percent-encoded path") {
        auto cfg = parse_ok("unix://:pw@/tmp/my%20redis.sock");
        CHECK(cfg.unix_socket == "/tmp/my redis.sock");
        CHECK(cfg.password == "pw");
    }
}

namespace {

struct bad_case {
    std::string_view input;
    std::string_view expected;  // must appear in the diagnostic message
};

const std::vector<bad_case> bad_cases = {
    // Whole string.
    {"", "empty"},
    {"   \t ", "empty"},
    {" , ,", "no entries"},
    // Endpoints.
    {"localhost:70000", "port '70000' of 'localhost:70000' is out of range 1..65535"},
    {"localhost:0", "port '0'"},
    {"localhost:99999999999999999999999", "'99999999999999999999999'"},
    {"localhost:abc", "'abc'"},
    {"localhost:-1", "'-1'"},
    {"localhost:", "'localhost:'"},
    {":6379", "':6379'"},
    {"[::1:6379", "'[::1:6379'"},
    {"[]:6379", "'[]:6379'"},
    {"[::1]x", "'[::1]x'"},
    {"::1", "'::1'"},
    {"local host", "'local host'"},
    // Keys and values of the comma form.
    {"localhost,foo=bar", "unknown key 'foo' in connection string"},
    {"localhost,db=1", "unknown key 'db'"},
    {"localhost,=value", "'=value'"},
    {"connectTimeout=-5", "connectTimeout: '-5' is not a non-negative integer (milliseconds)"},
    {"connectTimeout=abc", "connectTimeout: 'abc'"},
    {"connectTimeout=", "connectTimeout: ''"},
    {"syncTimeout=1.5", "syncTimeout: '1.5'"},
    {"asyncTimeout=+10", "asyncTimeout: '+10'"},
    {"asyncTimeout=99999999999999999999999", "asyncTimeout: '99999999999999999999999'"},
    {"keepAlive=-1", "keepAlive: '-1' is not a non-negative integer (seconds)"},
    {"keepAlive=9223372036854776", "keepAlive: '9223372036854776' is too large"},
    {"connectRetry=0", "connectRetry: '0'"},
    {"connectRetry=x", "connectRetry: 'x'"},
    {"abortConnect=yes", "abortConnect: 'yes'"},
    {"ssl=1", "ssl: '1'"},
    {"sslVerify=maybe", "sslVerify: 'maybe'"},
    {"failFast=on", "failFast: 'on'"},
    {"defaultDatabase=-1", "defaultDatabase: '-1'"},
    {"defaultDatabase=3000000000", "defaultDatabase: '3000000000'"},
    // URLs.
    {"http://localhost", "unsupported URL scheme 'http'"},
    {"redis://", "no host"},
    {"redis://user:pw@", "no host"},
    {"redis://localhost:70000", "port '70000'"},
    {"redis://h1,,h2", "empty host"},
    {"rediss://[::1", "'[::1'"},
    {"redis://localhost/abc", "database 'abc'"},
    {"redis://localhost/1/2", "'1/2'"},
    {"redis://localhost?foo=1", "unknown key 'foo' in URL query"},
    {"redis://localhost?db=x", "db: 'x'"},
    {"redis://localhost?ssl", "'ssl'"},
    {"redis://localhost?connectRetry=0", "connectRetry: '0'"},
    {"redis://us%zzer@localhost", "'%zz' in user"},
    {"redis://user:pa%4@localhost", "'%4' in password"},
    {"unix://", "empty socket path"},
    {"unix:///", "empty socket path"},
    {"unix://somehost/tmp/s.sock", "'somehost'"},
    {"unix:///tmp/s.sock?db=-1", "db: '-1'"},
    // The semicolon form.
    {";", "no entries"},
    {" ; ;; ", "no entries"},
    {"server=localhost;pasword=x", "unknown key 'pasword' in semicolon-separated connection"},
    {"server=localhost;ssl=yes", "ssl: 'yes' is not a boolean"},
    {"server=localhost;connectTimeout=-5", "connectTimeout: '-5' is not a non-negative integer"},
    {"server=h;database=-1", "database: '-1'"},
    {"server=h;DB=x", "DB: 'x'"},
    {"server=h;=x", "empty key in entry '=x'"},
    {"server=localhost:70000", "server: port '70000' of 'localhost:70000' is out of range"},
    {"server=a:1,b:x", "server: port 'x' of 'b:x' is not a number"},
    {"server=::1", "server: endpoint '::1' has several ':'"},
    {"server=", "server: '' names no endpoint"},
    {"server= , ;password=x", "server: ',' names no endpoint"},
    {"server=localhost:6379,password=x", "server: 'password=x' is not an endpoint"},
    {"localhost:6379;password=x", "entry 'localhost:6379' of a semicolon-separated"},
    {"password=a;b,localhost", "entry 'b,localhost'"},
    {"server=a;host=b", "server= cannot be combined with host= or port="},
    {"port=1;server=a", "server= cannot be combined"},
    {"host=a:1", "host: 'a:1' includes a port"},
    {"host=;port=1", "host: endpoint '' has an empty host"},
    {"host=a,password=x", "host: 'a,password=x' is not an endpoint"},
    {"port=0", "port: '0' is not a port number (1..65535)"},
    {"host=h;port=70000", "port: '70000'"},
    {"host=h;port=abc", "port: 'abc'"},
    // The semicolon form's other spellings are not keys of the comma form.
    {"localhost,username=u", "unknown key 'username' in connection string"},
    {"localhost,clientName=c", "unknown key 'clientName' in connection string"},
};

}  // namespace

TEST_CASE("bad inputs are reported as bad_config naming the key or value", "[unit][config]") {
    REQUIRE(bad_cases.size() >= 25);
    auto bad = GENERATE(from_range(bad_cases));
    INFO("input: '" << bad.input << "'");

    boost::system::error_code ec;
    redcoord::diagnostics diag;
    config cfg = parse_config(bad.input, ec, diag);
    INFO("diagnostic: " << diag.client_message());
    CHECK(ec == redcoord::error::bad_config);
    CHECK(diag.client_message().find(bad.expected) != std::string::npos);
    CHECK(diag.server_message().empty());
    // A failed parse returns the defaults, not a half-filled configuration.
    CHECK(cfg.endpoints == config{}.endpoints);
    CHECK(cfg.password.empty());
}

TEST_CASE("the error-code overload resets ec and diagnostics on success", "[unit][config]") {
    boost::system::error_code ec = redcoord::error::timeout;
    redcoord::diagnostics diag;
    diag.set_client_message("stale");
    diag.set_server_message("stale");
    parse_config("localhost", ec, diag);
    CHECK_FALSE(ec);
    CHECK(diag.empty());
}

TEST_CASE("the throwing overload", "[unit][config]") {
    SECTION("returns the configuration") {
        auto cfg = parse_config("redis://:pw@host:7000/1");
        CHECK(cfg.endpoints == endpoints({{"host", 7000}}));
        CHECK(cfg.password == "pw");
        CHECK(cfg.database == 1);
    }
    SECTION("throws error_with_diagnostics") {
        CHECK_THROWS_AS(parse_config("connectTimeout=-5"), redcoord::error_with_diagnostics);
        try {
            parse_config("connectTimeout=-5");
            FAIL("no exception");
        } catch (const redcoord::error_with_diagnostics& e) {
            CHECK(e.code() == redcoord::error::bad_config);
            CHECK(std::string(e.what()).find("connectTimeout: '-5'") != std::string::npos);
            CHECK(e.get_diagnostics().client_message() ==
                  "connectTimeout: '-5' is not a non-negative integer (milliseconds)");
        }
    }
}
