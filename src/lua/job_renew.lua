-- Renews the leases of this node's running jobs. KEYS[1] = S; ARGV[1..4] as lib/jobs.lua;
-- ARGV[5] = lease (ms), then id, fencing token, ... Returns one status per job: 1 renewed,
-- 2 renewed and asked to stop (cancelled from another node), 0 lost. Also the upkeep of the
-- indexes: finished jobs whose records expired leave the state indexes, and the indexes and
-- the scheduler's own keys live record_ttl past the last node that renewed.
--#include jobs.lua
local lease = tonumber(ARGV[5])
local now = now_ms()
local out = {}
local functions = redis.call('SMEMBERS', S .. ':functions')
-- The ended states' lists, newest first: records expire oldest first, from the tail.
local function trim(key)
    for _ = 1, 1000 do
        local id = redis.call('LINDEX', key, -1)
        if not id or redis.call('EXISTS', job_key(id)) == 1 then return end
        redis.call('RPOP', key)
    end
end
for _, st in ipairs({'succeeded', 'failed', 'cancelled'}) do
    trim(S .. ':state:' .. st)
    for _, fn in ipairs(functions) do trim(S .. ':state:' .. st .. ':' .. fn) end
end
for _, k in ipairs({':functions', ':seq', ':recurring', ':running'}) do
    redis.call('PEXPIRE', S .. k, RECORD_TTL)
end
for _, st in ipairs({'waiting', 'scheduled', 'retrying', 'succeeded',
                     'failed', 'cancelled'}) do
    redis.call('PEXPIRE', S .. ':state:' .. st, RECORD_TTL)
    for _, fn in ipairs(functions) do
        redis.call('PEXPIRE', S .. ':state:' .. st .. ':' .. fn, RECORD_TTL)
    end
end
for i = 6, #ARGV, 2 do
    local id, fence = ARGV[i], ARGV[i + 1]
    local f = redis.call('HMGET', job_key(id), 'state', 'fence', 'cancel', 'group')
    if f[1] == 'running' and f[2] == fence and redis.call('ZSCORE', S .. ':running', id) then
        redis.call('ZADD', S .. ':running', now + lease, id)
        if f[4] and f[4] ~= '' then redis.call('ZADD', S .. ':group:' .. f[4], now + lease, id) end
        out[#out + 1] = f[3] == '1' and 2 or 1
    else
        out[#out + 1] = 0
    end
end
return out
