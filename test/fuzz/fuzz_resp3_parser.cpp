// libFuzzer target: any byte string, split at a point the input chooses, must parse to a
// message or an error, never crash, hang or read out of bounds. A message that parses must
// also give a consistent tree.
#include <redcoord/resp3/parser.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::size_t split = data[0] % (size);
    std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);

    redcoord::resp3::parser p({8, 1 << 16, 1 << 12});
    boost::system::error_code ec;
    std::string pending;
    // Feed in two pieces, keeping what the parser did not consume, as the connection does.
    for (auto piece : {input.substr(0, split), input.substr(std::min(split, input.size()))}) {
        pending.append(piece);
        while (!pending.empty() && !ec) {
            const std::size_t n = p.consume(pending, ec);
            pending.erase(0, n);
            if (p.done()) {
                auto msg = p.message();
                (void)redcoord::resp3::make_tree(msg);
                if (redcoord::resp3::value_extent(msg) > msg.size()) __builtin_trap();
                p.clear();
            } else if (n == 0) {
                break;
            }
        }
        if (ec) break;
    }
    return 0;
}
