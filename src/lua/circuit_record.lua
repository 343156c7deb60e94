-- Records the outcome of a call the circuit breaker KEYS[1] let through. KEYS[2]: a sorted set
-- of failure times (server ms), trimmed to the sampling window.
-- ARGV: outcome ('ok', 'fail' or 'abandon'), trial token ('' when the call was not the trial),
-- failure_threshold, sampling_ms, key_ttl_ms, member (unique per call).
-- Returns {state, failures}: state 0 closed, 1 open, 2 half-open.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local outcome, token = ARGV[1], ARGV[2]
local codes = {closed = 0, open = 1, half_open = 2}
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'

local function current()
    if state == 'closed' then
        return {0, redis.call('ZCOUNT', KEYS[2], '(' .. (now - tonumber(ARGV[4])), '+inf')}
    end
    return {codes[state] or 0, tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')}
end

local function open(failures)
    redis.call('DEL', KEYS[2])
    redis.call('HDEL', KEYS[1], 'trial', 'trial_until')
    redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now, 'failures', failures)
    redis.call('PEXPIRE', KEYS[1], ARGV[5])
    return {1, failures}
end

if token ~= '' then
    -- The trial's outcome counts only while it is still the trial (not timed out and handed on).
    if state ~= 'half_open' or redis.call('HGET', KEYS[1], 'trial') ~= token then
        return current()
    end
    if outcome == 'ok' then
        redis.call('DEL', KEYS[1], KEYS[2])
        return {0, 0}
    elseif outcome == 'fail' then
        return open(tonumber(redis.call('HGET', KEYS[1], 'failures') or '0'))
    end
    -- Abandoned (cancelled): the next caller gets the trial.
    redis.call('HSET', KEYS[1], 'trial_until', 0)
    return current()
end

-- A call let through while closed. Failures that end after the circuit opened are not counted
-- again; successes leave the window as it is.
if outcome ~= 'fail' or state ~= 'closed' then
    return current()
end
local sampling = tonumber(ARGV[4])
redis.call('ZADD', KEYS[2], now, ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - sampling)
redis.call('PEXPIRE', KEYS[2], sampling)
local n = redis.call('ZCARD', KEYS[2])
if n >= tonumber(ARGV[3]) then
    return open(n)
end
redis.call('HSET', KEYS[1], 'state', 'closed')
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {0, n}
