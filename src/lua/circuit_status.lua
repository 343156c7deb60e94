-- Reads the circuit breaker KEYS[1] (hash) and KEYS[2] (failure times) without changing them.
-- ARGV: sampling_ms, recovery_ms.
-- Returns {state, failures, ms}: state 0 closed (failures: those in the sampling window),
-- 1 open (ms until the trial is due), 2 half-open (ms until the trial times out).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'open' then
    local due = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0') + tonumber(ARGV[2])
    return {1, tonumber(redis.call('HGET', KEYS[1], 'failures') or '0'), math.max(due - now, 0)}
elseif state == 'half_open' then
    local trial_until = tonumber(redis.call('HGET', KEYS[1], 'trial_until') or '0')
    return {2, tonumber(redis.call('HGET', KEYS[1], 'failures') or '0'),
            math.max(trial_until - now, 0)}
end
return {0, redis.call('ZCOUNT', KEYS[2], '(' .. (now - tonumber(ARGV[1])), '+inf'), 0}
