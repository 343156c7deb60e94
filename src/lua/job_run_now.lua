-- Runs a job now: a failed or cancelled one again (attempts start over), a scheduled,
-- retrying or waiting one without waiting further. KEYS[1] = S; ARGV[1..4] as lib/jobs.lua;
-- ARGV[5] = id. Returns 1, or 0 when the job is in no such state (or does not exist).
--#include jobs.lua
local id = ARGV[5]
local k = job_key(id)
local f = redis.call('HMGET', k, 'state', 'function', 'attempts')
local st = f[1]
if st == 'failed' or st == 'cancelled' then
    archive(id, 0, st)
    redis.call('PERSIST', k)
    redis.call('PERSIST', k .. ':history')
    redis.call('HSET', k, 'attempts', 0, 'cancel', 0, 'error', '', 'finished_ms', 0)
    make_ready(id, f[2], st, 0, 'run again')
    flush()
    return 1
elseif st == 'scheduled' or st == 'retrying' or st == 'waiting' then
    redis.call('ZREM', S .. ':delayed', id)
    redis.call('HSET', k, 'pending', 0)
    make_ready(id, f[2], st, tonumber(f[3]) or 0, 'run now')
    flush()
    return 1
end
return 0
