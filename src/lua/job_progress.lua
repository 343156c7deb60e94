-- Stores a running job's progress. KEYS[1] = S; ARGV[1..4] as lib/jobs.lua; ARGV[5] = id,
-- ARGV[6] = fencing token, ARGV[7] = progress. Returns 1, or 0 when the attempt no longer
-- holds the job.
--#include jobs.lua
local id = ARGV[5]
local f = redis.call('HMGET', job_key(id), 'state', 'fence', 'function', 'attempts')
if f[1] ~= 'running' or f[2] ~= ARGV[6] then return 0 end
redis.call('HSET', job_key(id), 'progress', ARGV[7])
redis.call('PUBLISH', EVENTS, cjson.encode({{id = id, ['function'] = f[3], state = 'running',
    attempt = tonumber(f[4]) or 0, node = NODE, progress = ARGV[7], at = now_ms()}}))
return 1
