-- Grants the lock KEYS[1] (a hash: owner, fence, count, since, node, wd) to ARGV[1].
-- KEYS[2]: the fencing counter, incremented on every grant (never expires: tokens only grow).
-- KEYS[3], KEYS[4]: the fair-mode wait queue (a list of owners in arrival order, and a zset of
-- their registration deadlines in server milliseconds).
-- ARGV: owner, ttl_ms, reentrant (0/1), fair (0/1), waiter_ttl_ms, node id, watchdog (0/1).
-- Returns {1, fence, count} when granted; {0, pttl_of_holder, 0} when held by another;
-- {0, -3, 0} in fair mode when the lock is free but earlier waiters come first.
local key, owner, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2])
local fair = ARGV[4] == '1'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function enqueue()
    local waiter_ttl = tonumber(ARGV[5])
    if not redis.call('ZSCORE', KEYS[4], owner) then
        redis.call('RPUSH', KEYS[3], owner)
    end
    redis.call('ZADD', KEYS[4], now + waiter_ttl, owner)
    redis.call('PEXPIRE', KEYS[3], waiter_ttl * 2)
    redis.call('PEXPIRE', KEYS[4], waiter_ttl * 2)
end

local holder = redis.call('HGET', key, 'owner')
if holder then
    if holder == owner then
        -- Reentrant: one more hold. Otherwise this owner's own grant, whose reply was lost
        -- (owner tokens are unique per acquisition): granting it again is safe.
        local n
        if ARGV[3] == '1' then
            n = redis.call('HINCRBY', key, 'count', 1)
        else
            n = tonumber(redis.call('HGET', key, 'count'))
        end
        redis.call('PEXPIRE', key, ttl)
        return {1, tonumber(redis.call('HGET', key, 'fence')), n}
    end
    if fair then enqueue() end
    return {0, redis.call('PTTL', key), 0}
end

if fair then
    -- Waiters that stopped refreshing their place (gone, or gave up) leave the head.
    while true do
        local head = redis.call('LINDEX', KEYS[3], 0)
        if not head then break end
        local until_ms = tonumber(redis.call('ZSCORE', KEYS[4], head) or '0')
        if until_ms > now then break end
        redis.call('LPOP', KEYS[3])
        redis.call('ZREM', KEYS[4], head)
    end
    local head = redis.call('LINDEX', KEYS[3], 0)
    if head and head ~= owner then
        enqueue()
        return {0, -3, 0}
    end
    if head == owner then
        redis.call('LPOP', KEYS[3])
        redis.call('ZREM', KEYS[4], owner)
    end
end

local fence = redis.call('INCR', KEYS[2])
redis.call('HSET', key, 'owner', owner, 'fence', fence, 'count', 1, 'since', now,
           'node', ARGV[6], 'wd', ARGV[7])
redis.call('PEXPIRE', key, ttl)
return {1, fence, 1}
