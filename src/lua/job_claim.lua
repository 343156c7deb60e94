-- Records the ends of this node's finished attempts, then claims up to `want` queued jobs
-- for it, after the upkeep any node does: jobs that came due are queued, jobs whose lease
-- lapsed are retried or failed. One call per round of a node's loop, however many jobs
-- ended. KEYS[1] = S; ARGV[1..4] as lib/jobs.lua; ARGV[5] = want, ARGV[6] = lease (ms),
-- ARGV[7] = idle marker TTL (ms), ARGV[8] = rand in [0, 1), ARGV[9] = e, the number of
-- ended attempts, then 5 arguments each (id, fencing token, outcome, error, has_result, as
-- job_finish.lua), then the functions this node runs.
-- Returns {queued left, next due (Unix ms, 0: none), now, job...}, each job
-- {id, function, payload, attempt, max_attempts, fence, timeout_ms, occurrence}.
--#include jobs.lua
--#include rate_window.lua
local want, lease, idle_ttl, rand = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]),
    tonumber(ARGV[8])
local ended = tonumber(ARGV[9])
local first_fn = 10 + 5 * ended
local runs = {}
for i = first_fn, #ARGV do runs[ARGV[i]] = true end
local now = now_ms()

for i = 10, first_fn - 1, 5 do
    -- each its own jitter: rand moved along the golden ratio's sequence
    local r = (rand + (i - 10) / 5 * 0.6180339887) % 1
    end_attempt(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], r, ARGV[i + 4])
end

-- Due jobs (time tickers, retries, waits for a rate window) are queued.
local due = redis.call('ZRANGEBYSCORE', DELAYED, '-inf', now, 'LIMIT', 0, 1000)
if #due > 0 then call_chunked('ZREM', DELAYED, due) end
for _, id in ipairs(due) do
    local f = redis.call('HMGET', job_key(id), 'function', 'state', 'attempts', 'priority')
    if f[1] then
        local prio = tonumber(f[4]) or 0
        if f[2] == 'queued' then
            -- back from a rate limit's wait: no new step
            zset_later(ready_key(f[1]), id, ready_score(prio))
        else
            make_ready(id, f[1], f[2], tonumber(f[3]) or 0, '', prio)
        end
    end
end

-- Leases that lapsed: their node died or stalled.
local lapsed = redis.call('ZRANGEBYSCORE', RUNNING, '-inf', now, 'LIMIT', 0, 100)
for _, id in ipairs(lapsed) do
    -- (leave_group touches other jobs' records only: this one's state is as read)
    local f = redis.call('HMGET', job_key(id), 'node', 'state', 'group', 'group_limit')
    release_hold(id, f[3] or false, f[4])
    if f[2] == 'running' then
        fail_attempt(id, 'lease lapsed on node ' .. (f[1] or '?'), rand)
    end
end

-- (the ready queues as the steps above left them)
flush()
local out = {0, 0, now}
local claimed = 0
if want > 0 then
    -- The best queued jobs of the functions this node runs, in one order (priority, then
    -- enqueue order); each round takes every candidate out of its queue (claimed, parked,
    -- deferred or dropped), so the next round sees new ones.
    -- (a candidate may be parked, deferred or dropped: a few more than the free slots)
    local nfn = 0
    for _ in pairs(runs) do nfn = nfn + 1 end
    local lease_end = int(now + lease)
    for _ = 1, 8 do
        if claimed >= want then break end
        local window = want - claimed + 4
        local heads = {}
        for fn in pairs(runs) do
            local rk = ready_key(fn)
            if nfn == 1 then
                for _, id in ipairs(redis.call('ZRANGE', rk, 0, window - 1)) do
                    heads[#heads + 1] = {0, id, rk}
                end
            else
                local r = redis.call('ZRANGE', rk, 0, window - 1, 'WITHSCORES')
                for i = 1, #r, 2 do heads[#heads + 1] = {tonumber(r[i + 1]), r[i], rk} end
            end
        end
        if #heads == 0 then break end
        if nfn > 1 then table.sort(heads, function(a, b) return a[1] < b[1] end) end
        local taken = {}  -- ready key -> the ids this round takes out of it
        for _, h in ipairs(heads) do
            if claimed >= want then break end
            local id, rk = h[2], h[3]
            local k = job_key(id)
            -- (a plain record, x = 0 in lib/jobs.lua, is read in one short HMGET)
            local q = redis.call('HMGET', k, 'function', 'state', 'attempts', 'fence', 'payload',
                                 'x')
            local fn, state, fence = q[1], q[2], q[4]
            local g, limit, rlimit, window, max_attempts, timeout, occurrence, cancel =
                false, 0, 0, false, false, false, false, false
            if fn and q[6] ~= '0' then
                local o = redis.call('HMGET', k, 'group', 'group_limit', 'rate_limit',
                                     'rate_window_ms', 'max_attempts', 'timeout_ms', 'occurrence',
                                     'cancel')
                g, limit, rlimit, window = o[1], tonumber(o[2]) or 0, tonumber(o[3]) or 0, o[4]
                max_attempts, timeout, occurrence, cancel = o[5], o[6], o[7], o[8]
            end
            taken[rk] = taken[rk] or {}
            table.insert(taken[rk], id)
            if not fn or state ~= 'queued' then
                -- expired or moved on: the entry is dropped
            elseif cancel == '1' then
                -- handed back (its node stopped) after a cancellation was asked for
                finish(id, 'cancelled', 'cancelled')
            elseif limit > 0 and redis.call('ZCARD', S .. ':group:' .. g) >= limit then
                redis.call('RPUSH', S .. ':parked:' .. g, id)
            else
                local wait_ms = 0
                if rlimit > 0 then
                    -- the rate limiter's sliding window (rate_limiter.hpp), on the group's key
                    local allowed, retry_ms = rate_window_take(S .. ':rate:' .. g, rlimit,
                        tonumber(window) or 1000, now, id .. ':' .. (tonumber(fence) or 0))
                    if not allowed then wait_ms = retry_ms end
                end
                if wait_ms > 0 then
                    redis.call('ZADD', DELAYED, int(now + wait_ms), id)
                else
                    local attempt = (tonumber(q[3]) or 0) + 1
                    fence = (tonumber(fence) or 0) + 1
                    zset_later(RUNNING, id, lease_end)
                    if g and g ~= '' then redis.call('ZADD', S .. ':group:' .. g, lease_end, id) end
                    -- (set_state's step, queued to running: no index, no history list)
                    redis.call('HSET', k, 'state', 'running', 'attempts', itext(attempt), 'fence',
                               itext(fence), 'node', NODE, 'started_ms', now_s())
                    publish_step(id, fn, 'running', attempt, '')
                    out[#out + 1] = {id, fn, q[5] or '', attempt,
                                     tonumber(max_attempts) or DEFAULT_MAX_ATTEMPTS, fence,
                                     tonumber(timeout) or 0, occurrence or ''}
                    claimed = claimed + 1
                end
            end
        end
        for rk, ids in pairs(taken) do call_chunked('ZREM', rk, ids) end
    end
end
local left = 0
for fn in pairs(runs) do left = left + redis.call('ZCARD', ready_key(fn)) end
out[1] = left
local first = redis.call('ZRANGE', DELAYED, 0, 0, 'WITHSCORES')
if first[2] then out[2] = tonumber(first[2]) end
flush()
if claimed < want then redis.call('SET', S .. ':idle', '1', 'PX', idle_ttl) end
return out
