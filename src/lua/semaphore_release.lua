-- Gives the permit of ARGV[1] back to the semaphore zset KEYS[1] (scored by expiry in server
-- milliseconds) and publishes the owner on channel ARGV[2], which wakes the waiters.
-- KEYS[2]: the holders' records (lib/holders.lua).
-- Returns 0 when ARGV[1] holds no permit (gone, or its lease lapsed), 1 when released.
--#include holders.lua
--#include publish.lua

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then
    return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
holder_drop(KEYS[2], ARGV[1])
publish(ARGV[2], ARGV[1])
if tonumber(score) <= now then
    return 0
end
return 1
