-- Grants one permit of the semaphore KEYS[1] (a zset of holders scored by their expiry in
-- server milliseconds) to ARGV[1] when fewer than ARGV[3] live holders have one.
-- KEYS[2]: the fencing counter (lib/fence.lua: every grant issues a greater token), KEYS[3]:
-- the holders' records (lib/holders.lua).
-- ARGV: owner, ttl_ms, permits_total, node id.
-- Returns {1, fence, free, next_ms} when granted (free: permits still free after this grant;
-- next_ms: when none is free, ms until the earliest holder's lease lapses, else 0);
-- {0, wait_ms, 0, 0} when every permit is taken (wait_ms: until the earliest lease lapses).
--#include fence.lua
--#include holders.lua

local key, owner = KEYS[1], ARGV[1]
local ttl, permits = tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function earliest()
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if first[2] then
        return tonumber(first[2]) - now
    end
    return 0
end

-- Holders whose lease lapsed (they died) give their permit back.
holders_lapse(key, KEYS[3], now)
local n = redis.call('ZCARD', key)
-- This owner's own grant, whose reply was lost (owner tokens are unique per hold): granting it
-- again takes no second permit.
if not redis.call('ZSCORE', key, owner) then
    if n >= permits then
        return {0, earliest(), 0, 0}
    end
    n = n + 1
end
local fence = next_fence(KEYS[2])
redis.call('ZADD', key, now + ttl, owner)
holder_add(KEYS[3], owner, fence, now, ARGV[4] or '', ttl)
if redis.call('PTTL', key) < ttl then
    redis.call('PEXPIRE', key, ttl)
end
local free = permits - n
if free < 0 then free = 0 end
local next_ms = 0
if free == 0 then next_ms = earliest() end
return {1, fence, free, next_ms}
