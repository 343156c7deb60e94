-- Renews the permit of ARGV[1] in the semaphore zset KEYS[1] (scored by expiry in server
-- milliseconds) to ARGV[2] ms from now, while its lease has not lapsed.
-- ARGV: owner, ttl_ms, channel (a lapsed entry removed here frees a permit: waiters are woken).
-- KEYS[2]: the holders' records (lib/holders.lua).
-- Returns 1 when renewed, 0 when gone or lapsed.
--#include holders.lua
--#include publish.lua

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) > now then
    local ttl = tonumber(ARGV[2])
    redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[1])
    if redis.call('PTTL', KEYS[1]) < ttl then
        redis.call('PEXPIRE', KEYS[1], ttl)
    end
    holder_keep(KEYS[2], ttl)
    return 1
end
if score then
    redis.call('ZREM', KEYS[1], ARGV[1])
    holder_drop(KEYS[2], ARGV[1])
    publish(ARGV[3], '')
end
return 0
