// Uses the installed library: parses a connection string and serializes a request.
#include <redcoord/redcoord.hpp>

#include <iostream>

int main() {
    auto cfg = redcoord::parse_config("redis://127.0.0.1:6390/3");
    redcoord::request req;
    req.push("SET", "key", 42);
    const bool ok = cfg.endpoints.at(0).port == 6390 && cfg.database == 3 &&
                    req.payload() == "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$2\r\n42\r\n";
    std::cout << (ok ? "consumer ok\n" : "consumer FAILED\n");
    return ok ? 0 : 1;
}
