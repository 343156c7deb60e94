-- The job system's shared code (jobs.hpp, "Key layout"). KEYS[1] is the scheduler's base key
-- S (`<prefix>jobs:{<name>}`): every key a script touches is S followed by a suffix, so all of
-- them share S's hash tag and slot. ARGV[1] = the events channel, ARGV[2] = how long a
-- finished job's record is kept (ms), ARGV[3] = the node making the step, ARGV[4] = the wake
-- channel; a script's own arguments follow. A script that changes jobs ends with flush().
local S = KEYS[1]
local EVENTS, RECORD_TTL, NODE, WAKE = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
-- (as text for the commands: a Lua number is formatted as it goes to Redis)
local RECORD_TTL_TEXT = ARGV[2]
if not RECORD_TTL or RECORD_TTL <= 0 then
    return redis.error_reply('ERR redcoord jobs: the record TTL must be a positive integer')
end

local function job_key(id) return S .. ':job:' .. id end
-- Queued jobs of one function, by priority then order: a node claims from the queues of the
-- functions it runs only.
local ready_keys = {}
local function ready_key(fn)
    local k = ready_keys[fn]
    if not k then
        k = S .. ':ready:' .. fn
        ready_keys[fn] = k
    end
    return k
end
local RUNNING, DELAYED = S .. ':running', S .. ':delayed'
-- S:running's keeper: a member longer than Redis's zset-max-listpack-value (64 bytes), scored
-- +inf, holds the set in skiplist encoding. In listpack encoding, which a set of a few dozen
-- leases would have, every lease added or removed scans the whole set. Only lapsed leases
-- (score <= now) and listings (below +inf) are read from it.
local RUNNING_KEEPER = '(keeps this sorted set in skiplist encoding: a member longer than 64 bytes)'

-- Numbers go to Redis as integer text (string.format's %d): passed as Lua numbers they would
-- be formatted with "%.14g", slower and, past 14 digits, inexact.
local function int(n) return string.format('%d', n) end
-- Small counts (attempts, fencing tokens) as text, kept: int() is a formatted print.
local small_ints = {}
local function itext(n)
    local t = small_ints[n]
    if not t then
        t = int(n)
        if n >= 0 and n < 4096 then small_ints[n] = t end
    end
    return t
end

-- A record holds only the options that differ from these (jobs.hpp's defaults, written by
-- option_fields in src/jobs/node.cpp).
--
-- A record's field x tells how much of it the steps every job makes must read. x = 0: a plain
-- job, of no option field (its options are the defaults), no dependency, idempotency key,
-- watcher, dependent, history list, error or cancellation request; its claim and end read a
-- few fields (a field looked up and missing costs a scan of the whole record). x = 1, or no x
-- (a record written before x was kept): every field that may matter is read. Whatever writes
-- one of those fields into a record sets x = 1 in the same command.
--
-- Every field a record holds costs each later command on it, so a record leaves out what it
-- can tell otherwise: an option at its default, due_ms when the job was due when created
-- (created_ms), error while there was none, ended_by when the node that ran the last attempt
-- (node) ended it. The readers (scheduler.cpp's record_from_fields and history_of) fill them
-- in.
local DEFAULT_MAX_ATTEMPTS, DEFAULT_DELAY_MS, DEFAULT_MAX_DELAY_MS, DEFAULT_JITTER = 3, 1000,
    600000, 0.2
-- Whether option fields (name, value, ...: as option_fields writes them, priority and
-- max_attempts first) are the defaults: the job is plain (see x below).
local function is_default_options(n1, v1, n2, v2)
    return n1 == 'priority' and v1 == '0' and n2 == 'max_attempts' and
               tonumber(v2) == DEFAULT_MAX_ATTEMPTS
end

local now_cache, now_text
local function now_ms()
    if not now_cache then
        local t = redis.call('TIME')
        now_cache = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        now_text = int(now_cache)
    end
    return now_cache
end
-- now_ms() as text
local function now_s()
    now_ms()
    return now_text
end

-- Sorted-set writes no later command of the script reads (the state indexes, S:running, the
-- ready queues until a claim reads them) are gathered and made by flush(), one ZADD and one
-- ZREM per key for however many jobs the call moved: key -> {member -> score, or false to
-- remove}. The last write of a member wins, as it would one at a time.
local zlater = {}
local function zset_later(key, member, score)
    local t = zlater[key]
    if not t then
        t = {}
        zlater[key] = t
    end
    t[member] = score
end
local wake_later = false
-- List pushes, made at flush: key -> ids, oldest first (LPUSH: the newest ends at the head).
local lpush_later = {}
local function lpush_later_add(key, id)
    local t = lpush_later[key]
    if not t then
        t = {}
        lpush_later[key] = t
    end
    t[#t + 1] = id
end
-- The steps the call made, published at flush as one message: a JSON array, in order (the
-- parts of publish_step).
local steps_later = {}

-- Idle nodes set S:idle before they sleep; the first work that comes after wakes them (at
-- flush, once per call).
local function wake() wake_later = true end

local function call_chunked(cmd, key, args)
    local CHUNK = 2000
    for i = 1, #args, CHUNK do
        redis.call(cmd, key, unpack(args, i, math.min(i + CHUNK - 1, #args)))
    end
end

local function flush()
    for key, t in pairs(zlater) do
        local add, rem = {}, {}
        for member, score in pairs(t) do
            if score then
                add[#add + 1] = score
                add[#add + 1] = member
            else
                rem[#rem + 1] = member
            end
        end
        if #rem > 0 then call_chunked('ZREM', key, rem) end
        if #add > 0 then
            if key == RUNNING then
                add[#add + 1] = '+inf'
                add[#add + 1] = RUNNING_KEEPER
            end
            call_chunked('ZADD', key, add)
        end
    end
    zlater = {}
    for key, ids in pairs(lpush_later) do call_chunked('LPUSH', key, ids) end
    lpush_later = {}
    if #steps_later > 0 then
        steps_later[#steps_later + 1] = ']'
        redis.call('PUBLISH', EVENTS, table.concat(steps_later))
        steps_later = {}
    end
    if wake_later then
        wake_later = false
        if redis.call('DEL', S .. ':idle') == 1 then redis.call('PUBLISH', WAKE, '1') end
    end
end

-- The states a job is indexed under (S:state:<state> and S:state:<state>:<function>): what
-- async_list pages through. The ended states are lists, newest first (a push, however many
-- jobs ended; job_renew.lua drops the ids whose records expired from their tails); waiting,
-- scheduled and retrying are sorted sets by when the job entered them. A queued job is
-- listed from its ready queue and a running one from S:running instead: the two states every
-- job passes through cost no index.
local ENDED = {succeeded = true, failed = true, cancelled = true}
local function indexed(state) return state and state ~= 'queued' and state ~= 'running' end
-- The index keys of a state, kept: state -> {S:state:<state>, function -> its own key}.
local state_keys = {}
local function index_keys(state, fn)
    local t = state_keys[state]
    if not t then
        t = {S .. ':state:' .. state, {}}
        state_keys[state] = t
    end
    local kf = t[2][fn]
    if not kf then
        kf = t[1] .. ':' .. fn
        t[2][fn] = kf
    end
    return t[1], kf
end
local function index_move(id, fn, from, to)
    if indexed(from) and from ~= to then
        local all, own = index_keys(from, fn)
        if ENDED[from] then
            -- (run again: rare)
            redis.call('LREM', all, 0, id)
            redis.call('LREM', own, 0, id)
        else
            zset_later(all, id, false)
            zset_later(own, id, false)
        end
    end
    if ENDED[to] then
        local all, own = index_keys(to, fn)
        lpush_later_add(all, id)
        lpush_later_add(own, id)
    elseif indexed(to) then
        local all, own = index_keys(to, fn)
        zset_later(all, id, now_s())
        zset_later(own, id, now_s())
    end
end

-- A JSON string of s (cjson when it needs escapes). Names (functions, nodes) recur: kept.
local jnames = {}
local function jstr(s)
    if not s then return '""' end
    if string.find(s, '[%c"\\]') then return cjson.encode(s) end
    return '"' .. s .. '"'
end
local function jname(s)
    if not s then return '""' end
    local j = jnames[s]
    if not j then
        j = jstr(s)
        jnames[s] = j
    end
    return j
end
-- A step as JSON: {"id","function","state","attempt","node","error","at"}; at: Unix ms as
-- integer text. Made of five parts, so a call's steps go to the events channel as one string
-- with no string made per step (Lua hashes every string it makes): '{"id":"' or '{"id":',
-- the id (JSON-escaped when it must be: ids hold no control character, as the client and the
-- recurring jobs' names are checked, so only quotes and backslashes are looked for), the
-- function and state's part (kept), the attempt and the node, error and time's part (kept
-- when there is no error).
local json_mid, json_end = {}, {}
local function json_parts(id, fn, state, attempt, node, err, at)
    local by_fn = json_mid[fn]
    if not by_fn then
        by_fn = {}
        json_mid[fn] = by_fn
    end
    local mid = by_fn[state]
    if not mid then
        mid = '","function":' .. jname(fn) .. ',"state":"' .. state .. '","attempt":'
        by_fn[state] = mid
    end
    local tail
    if err and err ~= '' then
        tail = ',"node":' .. jname(node) .. ',"error":' .. jstr(err) .. ',"at":' .. at .. '}'
    else
        local by_node = json_end[node]
        if not by_node then
            by_node = {}
            json_end[node] = by_node
        end
        tail = by_node[at]
        if not tail then
            tail = ',"node":' .. jname(node) .. ',"error":"","at":' .. at .. '}'
            by_node[at] = tail
        end
    end
    if string.find(id, '"', 1, true) or string.find(id, '\\', 1, true) then
        return '{"id":', cjson.encode(id), string.sub(mid, 2), itext(attempt or 0), tail
    end
    return '{"id":"', id, mid, itext(attempt or 0), tail
end
local function step_json(id, fn, state, attempt, node, err, at)
    local a, b, c, d, e = json_parts(id, fn, state, attempt, node, err, at)
    return a .. b .. c .. d .. e
end
-- Adds a step (made on this node now) to the call's message (flush publishes it).
local function publish_step(id, fn, state, attempt, err)
    local t = steps_later
    local n = #t
    local a, b, c, d, e = json_parts(id, fn, state, attempt, NODE, err, now_s())
    t[n + 1] = (n == 0 and '[' or ',') .. a
    t[n + 2] = b
    t[n + 3] = c
    t[n + 4] = d
    t[n + 5] = e
end

-- A job's history is its record plus S:job:<id>:history. The record tells the steps it
-- still holds: the creation (first, created_ms, created_by), the latest attempt's start
-- (attempts, started_ms, node; unless `logged`, the attempts whose start is in the list,
-- covers it) and, once the job ended, the end (state, finished_ms, ended_by, error). Every
-- other step is appended to the list when it is made; a job that runs once and ends has no
-- list at all (scheduler.cpp's read_job puts the history together).
local function log_step(id, json)
    if redis.call('RPUSH', job_key(id) .. ':history', json) == 1 then
        redis.call('HSET', job_key(id), 'steps', 1, 'x', 1)
    end
end

-- Before the record forgets it (a new attempt, a run again): the latest attempt's start
-- goes to the list when the record still held it, and, with `terminal` (the state it ends),
-- the end. logged: what the record's `logged` becomes.
local function archive(id, logged, terminal)
    local k = job_key(id)
    local f = redis.call('HMGET', k, 'function', 'attempts', 'logged', 'started_ms', 'node',
                         'finished_ms', 'ended_by', 'error')
    local attempts = tonumber(f[2]) or 0
    if attempts > (tonumber(f[3]) or 0) and (tonumber(f[4]) or 0) > 0 then
        log_step(id, step_json(id, f[1], 'running', attempts, f[5], '', f[4]))
    end
    if terminal then
        -- (no ended_by: ended by the node of its last attempt)
        log_step(id, step_json(id, f[1], terminal, attempts, f[7] or f[5], f[8], f[6] or '0'))
    end
    redis.call('HSET', k, 'logged', logged)
end

-- Moves job id from state `from` (may be false: just created) to `to` in the indexes and its
-- record (with the fields of `extra`, name, value, ..., when given; extra = false: the record
-- holds `to` already), adds the step to its history (see archive) and publishes it.
local function set_state(id, fn, from, to, attempt, err, extra)
    index_move(id, fn, from, to)
    if extra then
        redis.call('HSET', job_key(id), 'state', to, unpack(extra))
    elseif extra == nil then
        redis.call('HSET', job_key(id), 'state', to)
    end
    if from and to ~= 'running' and not ENDED[to] then
        log_step(id, step_json(id, fn, to, attempt, NODE, err, now_s()))
    end
    publish_step(id, fn, to, attempt, err)
end

-- Scores of the ready queues: priority first, then the order of enqueue (S:seq, taken in
-- blocks so a call that queues many jobs increments it once).
local TAG = 4294967296
local seq_next, seq_last = 0, -1
local function ready_score(priority)
    if seq_next > seq_last then
        seq_last = redis.call('INCRBY', S .. ':seq', 256)
        seq_next = seq_last - 255
    end
    local seq = seq_next % TAG
    seq_next = seq_next + 1
    return int((1000 - priority) * TAG + seq)
end

-- Puts job id in S:delayed, due at due_ms. An idle node sleeps until the earliest due job it
-- knew of: it is told of an earlier one.
local function add_delayed(id, due_ms)
    redis.call('ZADD', DELAYED, int(due_ms), id)
    local first = redis.call('ZRANGE', DELAYED, 0, 0)
    if first[1] == id then wake() end
end

-- Queues job id (state `from`) to run now. prio: its priority, read when not given.
local function make_ready(id, fn, from, attempt, err, prio)
    prio = prio or tonumber(redis.call('HGET', job_key(id), 'priority') or '0') or 0
    zset_later(ready_key(fn), id, ready_score(prio))
    set_state(id, fn, from, 'queued', attempt, err, {'due_ms', now_s()})
    wake()
end

-- Makes job id (state `from`) due at due_ms: queued at once when that is not in the future.
local function schedule(id, fn, from, due_ms, state, attempt, err, prio)
    if due_ms <= now_ms() then return make_ready(id, fn, from, attempt, err, prio) end
    add_delayed(id, due_ms)
    set_state(id, fn, from, state, attempt, err, {'due_ms', int(due_ms)})
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
            zset_later(ready_key(f[3]), p, ready_score(tonumber(f[2]) or 0))
            free = free - 1
        end
    end
    if free < limit then wake() end
end

-- The record fields finish() reads, in order.
local FINISH_FIELDS = {'function', 'state', 'attempts', 'idem', 'watched', 'has_dependents',
                       'steps', 'first'}

-- Ends job id in terminal state `to`; its dependents follow their policy (a worklist, as a
-- failure may run down a whole graph). pre: the job's FINISH_FIELDS when the caller read them.
local function finish(id, to, err, pre)
    local work = {{id, to, err, pre}}
    local i = 1
    while i <= #work do
        local jid, st, e = work[i][1], work[i][2], work[i][3]
        local k = job_key(jid)
        local f = work[i][4] or redis.call('HMGET', k, unpack(FINISH_FIELDS))
        i = i + 1
        set_state(jid, f[1], f[2], st, tonumber(f[3]) or 0, e,
                  {'finished_ms', now_s(), 'error', e or '', 'ended_by', NODE})
        redis.call('PEXPIRE', k, RECORD_TTL_TEXT)
        if f[7] then redis.call('PEXPIRE', k .. ':history', RECORD_TTL_TEXT) end
        if f[4] and f[4] ~= '' then
            redis.call('PEXPIRE', S .. ':idem:' .. f[4], RECORD_TTL_TEXT)
        end
        if f[5] == '1' then
            redis.call('PUBLISH', EVENTS .. ':job:' .. jid, st)
        end
        -- (records without `first` come from before has_dependents was kept: looked up)
        local deps = {}
        if f[6] or not f[8] then
            deps = redis.call('SMEMBERS', k .. ':dependents')
            if #deps > 0 then redis.call('DEL', k .. ':dependents') end
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
    archive(id, attempts)
    local b = redis.call('HMGET', k, 'backoff', 'delay_ms', 'max_delay_ms', 'jitter')
    local due = now_ms() + backoff_ms(b, attempts, rand)
    if due <= now_ms() then
        make_ready(id, f[1], 'running', attempts, err)
        redis.call('HSET', k, 'error', err, 'x', 1)
        return
    end
    add_delayed(id, due)
    set_state(id, f[1], 'running', 'retrying', attempts, err,
              {'due_ms', int(due), 'error', err, 'x', 1})
end

-- Ends the hold of running job id (its lease, its concurrency slot in group g, of limit
-- limit: the record's `group` and `group_limit`).
local function release_hold(id, g, limit)
    zset_later(RUNNING, id, false)
    leave_group(id, g, tonumber(limit) or 0)
end

-- Adds fn to S:functions (once a call).
local known_functions = {}
local function note_function(fn)
    if not known_functions[fn] then
        known_functions[fn] = true
        redis.call('SADD', S .. ':functions', fn)
    end
end

-- Creates job id. fields: the option fields (name, value, ...); deps: ids it waits for.
-- Returns false and a message when it cannot.
-- fresh: id was made by the caller's random generator (no job can have it), so it is not
-- looked up.
local function create(id, fn, payload, due_ms, deps, dep_policy, fields, fresh)
    local k = job_key(id)
    local pending, failed_dep = 0, nil
    local dep_states = {}
    for _, d in ipairs(deps) do
        local st = redis.call('HGET', job_key(d), 'state')
        dep_states[d] = st
        if not st then return false, 'dependency ' .. d .. ' does not exist' end
        if st == 'failed' or st == 'cancelled' then
            if dep_policy ~= 'run' and not failed_dep then failed_dep = {d, st} end
        elseif st ~= 'succeeded' then
            pending = pending + 1
        end
    end
    if not fresh and redis.call('HSETNX', k, 'id', id) == 0 then
        return false, 'job ' .. id .. ' exists'
    end
    local now = now_ms()
    local state = 'queued'
    if failed_dep or pending > 0 then
        state = 'waiting'
    elseif due_ms > now then
        state = 'scheduled'
    else
        due_ms = now
    end
    local prio, plain = 0, #deps == 0
    for i = 1, #fields, 2 do
        if fields[i] == 'priority' then prio = tonumber(fields[i + 1]) or 0 end
    end
    if #fields > 0 and not (#fields == 4 and is_default_options(unpack(fields))) then
        plain = false
    end
    local rec = {'id', id, 'function', fn, 'payload', payload, 'state', state, 'first', state,
                 'created_ms', now_s(), 'created_by', NODE, 'x', plain and '0' or '1'}
    if due_ms ~= now then
        rec[#rec + 1] = 'due_ms'
        rec[#rec + 1] = int(due_ms)
    end
    if #deps > 0 then
        for _, v in ipairs({'pending', pending, 'dep_policy', dep_policy, 'depends_on',
                            table.concat(deps, ',')}) do
            rec[#rec + 1] = v
        end
    end
    if not plain then
        for _, v in ipairs(fields) do rec[#rec + 1] = v end
    end
    redis.call('HSET', k, unpack(rec))
    note_function(fn)
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
            if not ENDED[dep_states[d]] then
                redis.call('SADD', job_key(d) .. ':dependents', id)
                redis.call('HSET', job_key(d), 'has_dependents', 1, 'x', 1)
            end
        end
    elseif state == 'queued' then
        zset_later(ready_key(fn), id, ready_score(prio))
        wake()
    else
        add_delayed(id, due_ms)
    end
    return true
end

-- create() for a plain job (see 'x'): a fresh id, due now, no dependency or option field.
local function create_plain(id, fn, payload)
    local now = now_s()
    redis.call('HSET', job_key(id), 'id', id, 'function', fn, 'payload', payload, 'state',
               'queued', 'first', 'queued', 'created_ms', now, 'created_by', NODE, 'x', '0')
    note_function(fn)
    publish_step(id, fn, 'queued', 0, '')
    zset_later(ready_key(fn), id, ready_score(0))
    wake()
end

-- finish() for a plain job (x = 0) of function fn whose attempt `attempts` ran on this node
-- and ended `to` (succeeded or cancelled) with err, and stored a result when has_result: no
-- dependent, watcher, idempotency key or history list to see to; no error to clear, and
-- ended_by would be its node (see x).
local function finish_plain(id, fn, attempts, to, err, has_result)
    local k = job_key(id)
    index_move(id, fn, 'running', to)
    local now = now_s()
    if err and err ~= '' then
        if has_result then
            redis.call('HSET', k, 'state', to, 'finished_ms', now, 'has_result', 1, 'error', err)
        else
            redis.call('HSET', k, 'state', to, 'finished_ms', now, 'error', err)
        end
    elseif has_result then
        redis.call('HSET', k, 'state', to, 'finished_ms', now, 'has_result', 1)
    else
        redis.call('HSET', k, 'state', to, 'finished_ms', now)
    end
    publish_step(id, fn, to, attempts, err)
    redis.call('PEXPIRE', k, RECORD_TTL_TEXT)
end

-- Records the end of an attempt of job id when fence (its fencing token) still holds it:
-- outcome 'succeeded', 'failed' (retried while attempts are left), 'cancelled' or
-- 'interrupted' (handed back, the attempt not counted); has_result '1' when a result was
-- stored. Returns 1, or 0 when the attempt no longer holds the job.
local function end_attempt(id, fence, outcome, err, rand, has_result)
    local k = job_key(id)
    local q = redis.call('HMGET', k, 'fence', 'state', 'function', 'attempts', 'first', 'x')
    if q[2] ~= 'running' or q[1] ~= fence then return 0 end
    if q[6] == '0' and (outcome == 'succeeded' or outcome == 'cancelled') then
        -- (no group, idempotency key, watcher, dependent or history list: see x)
        zset_later(RUNNING, id, false)
        finish_plain(id, q[3], tonumber(q[4]) or 0, outcome, err, has_result == '1')
        return 1
    end
    local g, limit, pre = false, false, nil
    if q[6] ~= '0' then
        local f = redis.call('HMGET', k, 'group', 'group_limit', unpack(FINISH_FIELDS))
        g, limit = f[1], f[2]
        pre = {unpack(f, 3, 2 + #FINISH_FIELDS)}
    end
    release_hold(id, g, limit)
    if has_result == '1' then redis.call('HSET', k, 'has_result', 1) end
    if outcome == 'succeeded' or outcome == 'cancelled' then
        finish(id, outcome, err, pre)
    elseif outcome == 'interrupted' then
        local attempts = (tonumber(q[4]) or 0) - 1
        archive(id, attempts)
        redis.call('HSET', k, 'attempts', attempts)
        make_ready(id, q[3], 'running', attempts, err)
    else
        fail_attempt(id, err, rand)
    end
    return 1
end
