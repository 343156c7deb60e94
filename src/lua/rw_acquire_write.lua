-- Grants the write hold of a read-write lock to ARGV[1]: no writer, no live reader.
-- KEYS[1]: the writer (a hash: owner, fence, since, node), KEYS[2]: the readers (a zset of
-- owners scored by their expiry in server milliseconds), KEYS[3]: the waiting writers (a zset
-- of owners scored by the expiry of their mark), KEYS[4]: the fencing counter.
-- KEYS[5]: the readers' records (lib/holders.lua).
-- ARGV: owner, ttl_ms, wait (0/1: when refused, mark this writer as waiting, which keeps new
-- readers out), mark_ttl_ms (the mark lapses unless refreshed by the next attempt), node id.
-- Returns {1, fence, 0} when granted; {0, wait_ms, 1} while another writer holds it (wait_ms:
-- its PTTL); {0, wait_ms, 3} while readers hold it (wait_ms: until the last reader's lease
-- lapses).
--#include fence.lua
--#include holders.lua

local writer, readers, waiting = KEYS[1], KEYS[2], KEYS[3]
local owner, ttl = ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function mark()
    if ARGV[3] ~= '1' then return end
    local mark_ttl = tonumber(ARGV[4])
    redis.call('ZADD', waiting, now + mark_ttl, owner)
    if redis.call('PTTL', waiting) < mark_ttl then
        redis.call('PEXPIRE', waiting, mark_ttl)
    end
end

local holder = redis.call('HGET', writer, 'owner')
if holder == owner then
    -- This owner's own grant, whose reply was lost: granting it again is safe.
    redis.call('PEXPIRE', writer, ttl)
    redis.call('ZREM', waiting, owner)
    return {1, tonumber(redis.call('HGET', writer, 'fence')), 0}
end
if holder then
    mark()
    return {0, redis.call('PTTL', writer), 1}
end
-- Readers whose lease lapsed (they died) leave.
holders_lapse(readers, KEYS[5], now)
local last = redis.call('ZRANGE', readers, -1, -1, 'WITHSCORES')
if last[2] then
    mark()
    return {0, tonumber(last[2]) - now, 3}
end
redis.call('ZREM', waiting, owner)
local fence = next_fence(KEYS[4])
redis.call('HSET', writer, 'owner', owner, 'fence', fence, 'since', now, 'node', ARGV[5])
redis.call('PEXPIRE', writer, ttl)
return {1, fence, 0}
