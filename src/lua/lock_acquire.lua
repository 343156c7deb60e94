-- Grants the lock KEYS[1]. A held lock is a string with the lease's TTL:
--   <owner> "\n" <holds> " " <watchdog 0/1> " " <since, Unix ms> " " <waiters 0/1> " " <node>
-- (an owner holds no newline; the node is the rest of the value). "waiters" is set to 1 by an
-- attempt that found the lock held: only then does the release publish (the wake-up).
-- KEYS[2]: the fencing counter, incremented on every grant and never expiring, so tokens only
-- grow; while the lock is held, the counter is the holder's fencing token.
-- KEYS[3], KEYS[4] (fair mode only): the wait queue (a list of owners in arrival order) and a
-- zset of their registration deadlines in server milliseconds.
-- ARGV[1]: the value to store, with one hold (the client's clock gives "since", for display
-- only); ARGV[2]: ttl_ms; ARGV[3]: mode, "-" or any of "r" (reentrant) and "f" (fair);
-- ARGV[4] (fair mode only): waiter_ttl_ms.
-- Returns {1, fence, holds} when granted; {0, pttl_of_holder, 0} when held by another;
-- {0, -3, 0} in fair mode when the lock is free but earlier waiters come first.
local key, value, ttl, mode = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local fair = mode ~= '-' and string.find(mode, 'f', 1, true) ~= nil

local held
if fair then
    held = redis.call('GET', key)
else
    -- The fast path: one call takes a free lock, or reads its holder.
    held = redis.call('SET', key, value, 'NX', 'PX', ttl, 'GET')
    if not held then
        return {1, redis.call('INCR', KEYS[2]), 1}
    end
end
local owner = string.sub(value, 1, string.find(value, '\n', 1, true) - 1)

local now
local function server_now()
    if not now then
        local t = redis.call('TIME')
        now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    end
    return now
end

local function enqueue()
    local waiter_ttl = tonumber(ARGV[4])
    if not redis.call('ZSCORE', KEYS[4], owner) then
        redis.call('RPUSH', KEYS[3], owner)
    end
    redis.call('ZADD', KEYS[4], server_now() + waiter_ttl, owner)
    redis.call('PEXPIRE', KEYS[3], waiter_ttl * 2)
    redis.call('PEXPIRE', KEYS[4], waiter_ttl * 2)
end

if held then
    local nl = string.find(held, '\n', 1, true)
    if nl and string.sub(held, 1, nl - 1) == owner then
        -- Reentrant: one more hold. Otherwise this owner's own grant, whose reply was lost
        -- (owner tokens are unique per acquisition): granting it again is safe.
        local holds_end = string.find(held, ' ', nl + 1, true) or (#held + 1)
        local n = tonumber(string.sub(held, nl + 1, holds_end - 1)) or 1
        if string.find(mode, 'r', 1, true) then
            n = n + 1
            redis.call('SET', key, owner .. '\n' .. n .. string.sub(held, holds_end), 'PX', ttl)
        else
            redis.call('PEXPIRE', key, ttl)
        end
        return {1, tonumber(redis.call('GET', KEYS[2]) or '0'), n}
    end
    -- Someone waits: the release must publish.
    local _, fields_end = string.find(held, '^%d+ %d %-?%d+ ', (nl or 0) + 1)
    if fields_end and string.sub(held, fields_end + 1, fields_end + 1) == '0' then
        redis.call('SET', key, string.sub(held, 1, fields_end) .. '1' ..
                   string.sub(held, fields_end + 2), 'KEEPTTL')
    end
    if fair then enqueue() end
    return {0, redis.call('PTTL', key), 0}
end

-- Fair mode, and the lock is free: waiters that stopped refreshing their place (gone, or gave
-- up) leave the head; then only the head may take it.
while true do
    local head = redis.call('LINDEX', KEYS[3], 0)
    if not head then break end
    local until_ms = tonumber(redis.call('ZSCORE', KEYS[4], head) or '0')
    if until_ms > server_now() then break end
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
local fence = redis.call('INCR', KEYS[2])
redis.call('SET', key, value, 'PX', ttl)
return {1, fence, 1}
