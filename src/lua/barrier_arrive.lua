-- One arrival at a barrier, announced in the same step: INCR KEYS[1], PEXPIRE it ARGV[1] ms,
-- PUBLISH the new count on channel ARGV[2]. Returns the count.
--#include publish.lua
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
publish(ARGV[2], n)
return n
