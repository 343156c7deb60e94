-- Grants a read hold of a read-write lock to ARGV[1].
-- KEYS[1]: the writer (a hash: owner, fence, since, node), KEYS[2]: the readers (a zset of
-- owners scored by their expiry in server milliseconds), KEYS[3]: the waiting writers (a zset
-- of owners scored by the expiry of their mark), KEYS[4]: the fencing counter (lib/fence.lua),
-- a greater token on every grant, read or write.
-- KEYS[5]: the readers' records (lib/holders.lua).
-- ARGV: owner, ttl_ms, node id.
-- Returns {1, fence, 0} when granted; {0, wait_ms, 1} while a writer holds the lock (wait_ms:
-- its PTTL); {0, wait_ms, 2} while a writer waits (writer preference: no new reader gets in;
-- wait_ms: until the last waiting mark lapses).
--#include fence.lua
--#include holders.lua

local writer, readers, waiting = KEYS[1], KEYS[2], KEYS[3]
local owner, ttl = ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

if redis.call('EXISTS', writer) == 1 then
    return {0, redis.call('PTTL', writer), 1}
end
-- Readers whose lease lapsed (they died) leave.
holders_lapse(readers, KEYS[5], now)
-- This owner's own grant, whose reply was lost (owner tokens are unique per hold): granting it
-- again is safe, even past a waiting writer.
if not redis.call('ZSCORE', readers, owner) then
    redis.call('ZREMRANGEBYSCORE', waiting, '-inf', now)
    local last = redis.call('ZRANGE', waiting, -1, -1, 'WITHSCORES')
    if last[2] then
        return {0, tonumber(last[2]) - now, 2}
    end
end
local fence = next_fence(KEYS[4])
redis.call('ZADD', readers, now + ttl, owner)
holder_add(KEYS[5], owner, fence, now, ARGV[3] or '', ttl)
if redis.call('PTTL', readers) < ttl then
    redis.call('PEXPIRE', readers, ttl)
end
return {1, fence, 0}
