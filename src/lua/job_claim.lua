-- Claims up to `want` queued jobs for this node, after the upkeep any node does: jobs that
-- came due are queued, jobs whose lease lapsed are retried or failed. KEYS[1] = S;
-- ARGV[1..4] as lib/jobs.lua; ARGV[5] = want, ARGV[6] = lease (ms), ARGV[7] = idle marker TTL
-- (ms), ARGV[8] = rand in [0, 1), ARGV[9..] = the functions this node runs.
-- Returns {queued left, next due (Unix ms, 0: none), now, job...}, each job
-- {id, function, payload, attempt, max_attempts, fence, timeout_ms, occurrence}.
--#include jobs.lua
local want, lease, idle_ttl, rand = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]),
    tonumber(ARGV[8])
local runs = {}
for i = 9, #ARGV do runs[ARGV[i]] = true end
local now = now_ms()

-- Due jobs (time tickers, retries, waits for a rate window) are queued.
local due = redis.call('ZRANGEBYSCORE', S .. ':delayed', '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
    redis.call('ZREM', S .. ':delayed', id)
    local f = redis.call('HMGET', job_key(id), 'function', 'state', 'attempts')
    if f[1] then
        if f[2] == 'queued' then
            -- back from a rate limit's wait: no new step
            local prio = tonumber(redis.call('HGET', job_key(id), 'priority') or '0') or 0
            redis.call('ZADD', S .. ':ready', ready_score(prio), id)
        else
            make_ready(id, f[1], f[2], tonumber(f[3]) or 0, '')
        end
    end
end

-- Leases that lapsed: their node died or stalled.
local lapsed = redis.call('ZRANGEBYSCORE', S .. ':running', '-inf', now, 'LIMIT', 0, 100)
for _, id in ipairs(lapsed) do
    local node = redis.call('HGET', job_key(id), 'node') or '?'
    release_hold(id)
    if redis.call('HGET', job_key(id), 'state') == 'running' then
        fail_attempt(id, 'lease lapsed on node ' .. node, rand)
    end
end

local out = {0, 0, now}
local claimed = 0
if want > 0 then
    local start = 0
    local window = want * 2 + 16
    local scanned = 0
    while claimed < want and scanned < 4 * window do
        local ids = redis.call('ZRANGE', S .. ':ready', start, start + window - 1)
        if #ids == 0 then break end
        for _, id in ipairs(ids) do
            scanned = scanned + 1
            if claimed >= want then break end
            local k = job_key(id)
            local f = redis.call('HMGET', k, 'function', 'group', 'group_limit', 'rate_limit',
                                 'rate_window_ms', 'state')
            local fn, g = f[1], f[2]
            local limit, rlimit = tonumber(f[3]) or 0, tonumber(f[4]) or 0
            if not fn or f[6] ~= 'queued' then
                redis.call('ZREM', S .. ':ready', id)  -- expired or moved on: drop the entry
            elseif not runs[fn] then
                start = start + 1  -- another node's function: leave it
            elseif limit > 0 and redis.call('ZCARD', S .. ':group:' .. g) >= limit then
                redis.call('ZREM', S .. ':ready', id)
                redis.call('RPUSH', S .. ':parked:' .. g, id)
            else
                local wait_ms = 0
                if rlimit > 0 then
                    local rk = S .. ':rate:' .. g
                    local rwin = tonumber(f[5]) or 1000
                    redis.call('ZREMRANGEBYSCORE', rk, '-inf', now - rwin)
                    if redis.call('ZCARD', rk) >= rlimit then
                        local oldest = redis.call('ZRANGE', rk, 0, 0, 'WITHSCORES')
                        wait_ms = math.max(1, tonumber(oldest[2]) + rwin - now)
                    else
                        redis.call('ZADD', rk, now, id .. ':' .. redis.call('INCR', S .. ':seq'))
                        redis.call('PEXPIRE', rk, rwin)
                    end
                end
                redis.call('ZREM', S .. ':ready', id)
                if wait_ms > 0 then
                    redis.call('ZADD', S .. ':delayed', now + wait_ms, id)
                else
                    local attempt = redis.call('HINCRBY', k, 'attempts', 1)
                    local fence = redis.call('HINCRBY', k, 'fence', 1)
                    redis.call('HSET', k, 'node', NODE, 'started_ms', now, 'cancel', 0)
                    redis.call('ZADD', S .. ':running', now + lease, id)
                    if g and g ~= '' then redis.call('ZADD', S .. ':group:' .. g, now + lease, id) end
                    set_state(id, fn, 'queued', 'running', attempt, '')
                    local r = redis.call('HMGET', k, 'payload', 'max_attempts', 'timeout_ms', 'occurrence')
                    out[#out + 1] = {id, fn, r[1] or '', attempt, tonumber(r[2]) or 1, fence,
                                     tonumber(r[3]) or 0, r[4] or ''}
                    claimed = claimed + 1
                end
            end
        end
    end
end
out[1] = redis.call('ZCARD', S .. ':ready')
local first = redis.call('ZRANGE', S .. ':delayed', 0, 0, 'WITHSCORES')
if first[2] then out[2] = tonumber(first[2]) end
if claimed < want then redis.call('SET', S .. ':idle', '1', 'PX', idle_ttl) end
return out
