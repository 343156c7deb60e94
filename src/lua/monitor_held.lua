-- What the monitor lists of one held resource, read atomically; ARGV[1] says what KEYS[1] is.
-- Every field is returned as a string; a missing field is "".
--   "lock" (a mutex or leadership, lock_ops.lua's string): KEYS = the lock, its fencing
--     counter, its fair queue. Replies {owner, node, pttl, fence, since, holds, waiters,
--     watchdog}, or {} when it is not held. waiters: the fair queue's length, else 1 when an
--     attempt found it held (the value's waiters flag), else 0.
--   "writer" (a read-write lock's writer hash): KEYS = the writer, the waiting writers.
--     Replies {owner, node, pttl, fence, since, 1, waiting writers, 1}, or {}.
--   "holders" (a semaphore's or the readers' zset, scored by expiry): KEYS = the zset, its
--     holders' records (lib/holders.lua), the waiting writers (readers only). Replies the
--     8 fields for each live holder, one after another (remaining ms for pttl).
--   "fill" (a fill lease, a string holding its owner token): KEYS = the lease. Replies
--     {owner, "", pttl, "", "", 1, 0, 1}, or {}.
local kind = ARGV[1]
local key = KEYS[1]
local function s(v) if v == nil or v == false then return '' end return tostring(v) end

if kind == 'lock' or kind == 'fill' then
    if redis.call('TYPE', key)['ok'] ~= 'string' then return {} end
    local v = redis.call('GET', key)
    local pttl = redis.call('PTTL', key)
    if kind == 'fill' then return {v, '', s(pttl), '', '', '1', '0', '1'} end
    local colon = string.find(v, ':', 1, true)
    local n = colon and tonumber(string.sub(v, 1, colon - 1))
    if not n or string.byte(v, colon + n + 1) ~= 32 then return {} end
    local owner = string.sub(v, colon + 1, colon + n)
    local holds, watchdog, since, waiters, node =
        string.match(v, '^(%d+) (%d) (%-?%d+) (%d) %S+ (.*)$', colon + n + 2)
    if not holds then return {} end
    local queued = 0
    if KEYS[3] then queued = redis.call('LLEN', KEYS[3]) end
    local w = queued
    if w == 0 and waiters ~= '0' then w = 1 end
    return {owner, node, s(pttl), s(redis.call('GET', KEYS[2])), since, holds, s(w), watchdog}
end

if kind == 'writer' then
    if redis.call('TYPE', key)['ok'] ~= 'hash' then return {} end
    local f = redis.call('HMGET', key, 'owner', 'node', 'fence', 'since')
    if not f[1] then return {} end
    local waiting = redis.call('ZCARD', KEYS[2])
    return {f[1], s(f[2]), s(redis.call('PTTL', key)), s(f[3]), s(f[4]), '1', s(waiting), '1'}
end

if kind == 'holders' then
    if redis.call('TYPE', key)['ok'] ~= 'zset' then return {} end
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    local live = redis.call('ZRANGEBYSCORE', key, '(' .. now, '+inf', 'WITHSCORES')
    local waiting = 0
    if KEYS[3] then waiting = redis.call('ZCARD', KEYS[3]) end
    local out = {}
    for i = 1, #live, 2 do
        local owner = live[i]
        local rec = redis.call('HGET', KEYS[2], owner) or ''
        local fence, since, node = string.match(rec, '^(%d+) (%-?%d+) (.*)$')
        local rest = {owner, s(node), s(math.floor(tonumber(live[i + 1]) - now)), s(fence),
                      s(since), '1', s(waiting), '1'}
        for _, x in ipairs(rest) do out[#out + 1] = x end
    end
    return out
end
return redis.error_reply('monitor_held: unknown kind ' .. tostring(kind))
