-- Records the end of an attempt, when the caller still holds the job (its fencing token).
-- KEYS[1] = S; ARGV[1..4] as lib/jobs.lua; ARGV[5] = id, ARGV[6] = fencing token, ARGV[7] =
-- outcome ('succeeded', 'failed', 'cancelled', 'interrupted': handed back, the attempt not
-- counted), ARGV[8] = error text, ARGV[9] = rand in [0, 1), ARGV[10] = '1' when a result was
-- stored. Returns 1, or 0 when the attempt no longer holds the job.
--#include jobs.lua
local id, fence, outcome, err, rand = ARGV[5], ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9])
local k = job_key(id)
local f = redis.call('HMGET', k, 'state', 'fence', 'function', 'attempts')
if f[1] ~= 'running' or f[2] ~= fence then return 0 end
release_hold(id)
if ARGV[10] == '1' then redis.call('HSET', k, 'has_result', 1) end
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
