-- Asks the circuit breaker KEYS[1] (a hash: state, opened_at, failures, trial, trial_until) to
-- let a call through. KEYS[2]: the failure times (unused here; passed so that every circuit
-- script declares the same keys).
-- ARGV: token (unique per call), recovery_ms, trial_ms, key_ttl_ms.
-- Returns {1, 0, 0}: closed, go; {1, 1, 0}: this call is the half-open trial (the token is
-- recorded as the trial's); {0, 1, ms}: open, the trial is due in ms; {0, 2, ms}: half-open,
-- the trial under way times out in ms.
-- Time is the server's: every node sees the same deadlines.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'closed' then
    return {1, 0, 0}
end

local function hand_trial()
    redis.call('HSET', KEYS[1], 'state', 'half_open', 'trial', ARGV[1],
               'trial_until', now + tonumber(ARGV[3]))
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
    return {1, 1, 0}
end

if state == 'open' then
    local due = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0') + tonumber(ARGV[2])
    if now < due then
        return {0, 1, due - now}
    end
    return hand_trial()
end

-- half_open: one trial at a time; a trial that did not report in time is handed on.
local trial_until = tonumber(redis.call('HGET', KEYS[1], 'trial_until') or '0')
if now < trial_until then
    return {0, 2, trial_until - now}
end
return hand_trial()
