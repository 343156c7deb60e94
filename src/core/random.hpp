// Random values for what must be unique across processes: owner tokens, session ids, queue item
// ids. One generator per thread, seeded from std::random_device and seeded again in a child
// after fork(): a forked process must never draw what its parent draws next, or two processes
// would hold the same owner token.
#pragma once

#include <cstdint>
#include <string>

namespace redcoord::detail {

std::uint64_t random_u64();

// Appends 16 * words random hex digits.
void append_random_hex(std::string& out, int words);

}  // namespace redcoord::detail
