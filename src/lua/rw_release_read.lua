-- Releases the read hold of ARGV[1] in the readers zset KEYS[1] (scored by expiry in server
-- milliseconds). When no live reader remains, publishes the owner on channel ARGV[2], which
-- wakes the waiting writers.
-- KEYS[2]: the readers' records (lib/holders.lua).
-- Returns 0 when ARGV[1] does not hold it (gone, or its lease lapsed), 1 when released.
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
holders_lapse(KEYS[1], KEYS[2], now)
if redis.call('ZCARD', KEYS[1]) == 0 then
    publish(ARGV[2], ARGV[1])
end
if tonumber(score) <= now then
    return 0
end
return 1
