-- The job system's shared code (jobs.hpp, "Key layout"). KEYS[1] is the scheduler's base key
-- S (`<prefix>jobs:{<name>}`): every key a script touches is S followed by a suffix, so all of
-- them share S's hash tag and slot. ARGV[1] = the events channel, ARGV[2] = how long a
-- finished job's record is kept (ms), ARGV[3] = the node making the step, ARGV[4] = the wake
-- channel; a script's own arguments follow.
local S = KEYS[1]
local EVENTS, RECORD_TTL, NODE, WAKE = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
if not RECORD_TTL or RECORD_TTL <= 0 then
    return redis.error_reply('ERR redcoord jobs: the record TTL must be a positive integer')
end

local function job_key(id) return S .. ':job:' .. id end
-- Queued jobs of one function, by priority then order: a node claims from the queues of the
-- functions it runs only.
local function ready_key(fn) return S .. ':ready:' .. fn end

-- A record holds only the options that differ from these (jobs.hpp's defaults, written by
-- option_fields in src/jobs/scheduler.cpp).
local DEFAULT_MAX_ATTEMPTS, DEFAULT_DELAY_MS, DEFAULT_MAX_DELAY_MS, DEFAULT_JITTER = 3, 1000,
    600000, 0.2

local now_cache
local function now_ms()
    if not now_cache then
        local t = redis.call('TIME')
        now_cache = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    end
    return now_cache
end

-- Moves job id from state `from` (may be false) to `to` in the indexes and its record (with
-- the fields of `extra`, name, value, ..., when given; extra = false: the record holds `to`
-- already), adds the step to its history and publishes it.
local function set_state(id, fn, from, to, attempt, err, extra)
    local now = now_ms()
    if from and from ~= to then
        redis.call('ZREM', S .. ':state:' .. from, id)
        redis.call('ZREM', S .. ':state:' .. from .. ':' .. fn, id)
    end
    redis.call('ZADD', S .. ':state:' .. to, now, id)
    redis.call('ZADD', S .. ':state:' .. to .. ':' .. fn, now, id)
    if extra then
        redis.call('HSET', job_key(id), 'state', to, unpack(extra))
    elseif extra == nil then
        redis.call('HSET', job_key(id), 'state', to)
    end
    local step = cjson.encode({id = id, ['function'] = fn, state = to, attempt = attempt or 0,
                               node = NODE, error = err or '', at = now})
    redis.call('RPUSH', job_key(id) .. ':history', step)
    redis.call('PUBLISH', EVENTS, step)
end

-- Idle nodes set S:idle before they sleep; the first work that comes after wakes them.
local function wake()
    if redis.call('DEL', S .. ':idle') == 1 then redis.call('PUBLISH', WAKE, '1') end
end

local TAG = 4294967296
local function ready_score(priority)
    local seq = redis.call('INCR', S .. ':seq') % TAG
    return (1000 - priority) * TAG + seq
end

-- Queues job id (state `from`) to run now. prio: its priority, read when not given.
local function make_ready(id, fn, from, attempt, err, prio)
    prio = prio or tonumber(redis.call('HGET', job_key(id), 'priority') or '0') or 0
    redis.call('ZADD', ready_key(fn), ready_score(prio), id)
    set_state(id, fn, from, 'queued', attempt, err, {'due_ms', now_ms()})
    wake()
end

-- Makes job id (state `from`) due at due_ms: queued at once when that is not in the future.
local function schedule(id, fn, from, due_ms, state, attempt, err, prio)
    if due_ms <= now_ms() then return make_ready(id, fn, from, attempt, err, prio) end
    redis.call('ZADD', S .. ':delayed', due_ms, id)
    set_state(id, fn, from, state, attempt, err, {'due_ms', due_ms})
    -- An idle node sleeps until the earliest due job it knew of: tell it of an earlier one.
    local first = redis.call('ZRANGE', S .. ':delayed', 0, 0)
    if first[1] == id then wake() end
end

-- Frees the concurrency slot job id held in group g (limit: its limit): parked jobs of the
-- group go back to the ready queue, as many as there are free slots.
local function leave_group(id, g, limit)
    if not g or g == '' then return end
    redis.call('ZREM', S .. ':group:' .. g, id)
    if limit <= 0 then return end
    local free = limit - redis.call('ZCARD', S .. ':group:' .. g)
    while free > 0 do
        local p = redis.call('LPOP', S .. ':parked:' .. g)
        if not p then break end
        local f = redis.call('HMGET', job_key(p), 'state', 'priority', 'function')
        if f[1] == 'queued' then
            redis.call('ZADD', ready_key(f[3]), ready_score(tonumber(f[2]) or 0), p)
            free = free - 1
        end
    end
    if free < limit then wake() end
end

-- Ends job id in terminal state `to`; its dependents follow their policy (a worklist, as a
-- failure may run down a whole graph).
local function finish(id, to, err)
    local work = {{id, to, err}}
    local i = 1
    while i <= #work do
        local jid, st, e = work[i][1], work[i][2], work[i][3]
        i = i + 1
        local k = job_key(jid)
        local f = redis.call('HMGET', k, 'function', 'state', 'attempts', 'idem', 'watched')
        set_state(jid, f[1], f[2], st, tonumber(f[3]) or 0, e,
                  {'finished_ms', now_ms(), 'error', e or ''})
        local deps = redis.call('SMEMBERS', k .. ':dependents')
        if #deps > 0 then redis.call('DEL', k .. ':dependents') end
        redis.call('PEXPIRE', k, RECORD_TTL)
        redis.call('PEXPIRE', k .. ':history', RECORD_TTL)
        if f[4] and f[4] ~= '' then redis.call('PEXPIRE', S .. ':idem:' .. f[4], RECORD_TTL) end
        if f[5] == '1' then
            redis.call('PUBLISH', EVENTS .. ':job:' .. jid, st)
        end
        for _, d in ipairs(deps) do
            local dk = job_key(d)
            local ds = redis.call('HMGET', dk, 'state', 'dep_policy', 'due_ms', 'function', 'attempts')
            if ds[1] == 'waiting' then
                if st == 'succeeded' or ds[2] == 'run' then
                    if redis.call('HINCRBY', dk, 'pending', -1) <= 0 then
                        schedule(d, ds[4], 'waiting', tonumber(ds[3]) or 0, 'scheduled',
                                 tonumber(ds[5]) or 0, '')
                    end
                elseif ds[2] == 'skip' then
                    work[#work + 1] = {d, 'cancelled', 'skipped: dependency ' .. jid .. ' ' .. st}
                else
                    work[#work + 1] = {d, 'failed', 'dependency ' .. jid .. ' ' .. st}
                end
            end
        end
    end
end

-- The delay before attempt `attempt` + 1 of job k's fields f (backoff, delay_ms, max_delay_ms,
-- jitter), rand in [0, 1) from the client (scripts have no randomness of their own).
local function backoff_ms(f, attempt, rand)
    local delay = tonumber(f[2]) or DEFAULT_DELAY_MS
    local max_delay = tonumber(f[3]) or DEFAULT_MAX_DELAY_MS
    if f[1] ~= 'fixed' then
        for _ = 2, attempt do
            delay = delay * 2
            if delay >= max_delay then break end
        end
        if delay > max_delay then delay = max_delay end
    end
    local jitter = tonumber(f[4]) or DEFAULT_JITTER
    return math.floor(delay * (1 - jitter * rand))
end

-- An attempt of running job id failed with err: retried after its backoff while attempts are
-- left (and no cancellation was asked for), else failed for good.
local function fail_attempt(id, err, rand)
    local k = job_key(id)
    local f = redis.call('HMGET', k, 'function', 'attempts', 'max_attempts', 'cancel')
    local attempts, max = tonumber(f[2]) or 0, tonumber(f[3]) or DEFAULT_MAX_ATTEMPTS
    if f[4] == '1' then return finish(id, 'cancelled', 'cancelled') end
    if attempts >= max then return finish(id, 'failed', err) end
    local b = redis.call('HMGET', k, 'backoff', 'delay_ms', 'max_delay_ms', 'jitter')
    local due = now_ms() + backoff_ms(b, attempts, rand)
    if due <= now_ms() then
        make_ready(id, f[1], 'running', attempts, err)
        redis.call('HSET', k, 'error', err)
        return
    end
    redis.call('ZADD', S .. ':delayed', due, id)
    set_state(id, f[1], 'running', 'retrying', attempts, err, {'due_ms', due, 'error', err})
    local first = redis.call('ZRANGE', S .. ':delayed', 0, 0)
    if first[1] == id then wake() end
end

-- Ends the hold of running job id (its lease, its concurrency slot in group g, of limit
-- limit: read when g is not given).
local function release_hold(id, g, limit)
    if g == nil then
        local f = redis.call('HMGET', job_key(id), 'group', 'group_limit')
        g, limit = f[1], f[2]
    end
    redis.call('ZREM', S .. ':running', id)
    leave_group(id, g, tonumber(limit) or 0)
end

-- Creates job id. fields: the option fields (name, value, ...); deps: ids it waits for.
-- Returns false and a message when it cannot.
local function create(id, fn, payload, due_ms, deps, dep_policy, fields)
    local k = job_key(id)
    local pending, failed_dep = 0, nil
    for _, d in ipairs(deps) do
        local st = redis.call('HGET', job_key(d), 'state')
        if not st then return false, 'dependency ' .. d .. ' does not exist' end
        if st == 'failed' or st == 'cancelled' then
            if dep_policy ~= 'run' and not failed_dep then failed_dep = {d, st} end
        elseif st ~= 'succeeded' then
            pending = pending + 1
        end
    end
    if redis.call('HSETNX', k, 'id', id) == 0 then return false, 'job ' .. id .. ' exists' end
    local now = now_ms()
    local state = 'queued'
    if failed_dep or pending > 0 then
        state = 'waiting'
    elseif due_ms > now then
        state = 'scheduled'
    else
        due_ms = now
    end
    local prio = 0
    for i = 1, #fields, 2 do
        if fields[i] == 'priority' then prio = tonumber(fields[i + 1]) or 0 end
    end
    redis.call('HSET', k, 'function', fn, 'payload', payload, 'state', state, 'created_ms', now,
               'due_ms', due_ms, 'pending', pending, 'dep_policy', dep_policy, 'depends_on',
               table.concat(deps, ','), unpack(fields))
    redis.call('SADD', S .. ':functions', fn)
    set_state(id, fn, false, state, 0, '', false)
    if failed_dep then
        local why = 'dependency ' .. failed_dep[1] .. ' ' .. failed_dep[2]
        if dep_policy == 'skip' then
            finish(id, 'cancelled', 'skipped: ' .. why)
        else
            finish(id, 'failed', why)
        end
    elseif pending > 0 then
        for _, d in ipairs(deps) do
            local st = redis.call('HGET', job_key(d), 'state')
            if st ~= 'succeeded' and st ~= 'failed' and st ~= 'cancelled' then
                redis.call('SADD', job_key(d) .. ':dependents', id)
            end
        end
    elseif state == 'queued' then
        redis.call('ZADD', ready_key(fn), ready_score(prio), id)
        wake()
    else
        redis.call('ZADD', S .. ':delayed', due_ms, id)
        local first = redis.call('ZRANGE', S .. ':delayed', 0, 0)
        if first[1] == id then wake() end
    end
    return true
end

-- Records the end of an attempt of job id when fence (its fencing token) still holds it:
-- outcome 'succeeded', 'failed' (retried while attempts are left), 'cancelled' or
-- 'interrupted' (handed back, the attempt not counted); has_result '1' when a result was
-- stored. Returns 1, or 0 when the attempt no longer holds the job.
local function end_attempt(id, fence, outcome, err, rand, has_result)
    local k = job_key(id)
    local f = redis.call('HMGET', k, 'state', 'fence', 'function', 'group', 'group_limit')
    if f[1] ~= 'running' or f[2] ~= fence then return 0 end
    release_hold(id, f[4] or false, f[5])
    if has_result == '1' then redis.call('HSET', k, 'has_result', 1) end
    if outcome == 'succeeded' then
        finish(id, 'succeeded', '')
    elseif outcome == 'cancelled' then
        finish(id, 'cancelled', err)
    elseif outcome == 'interrupted' then
        local attempts = redis.call('HINCRBY', k, 'attempts', -1)
        make_ready(id, f[3], 'running', attempts, err)
    else
        fail_attempt(id, err, rand)
    end
    return 1
end
