-- Cancels a job. KEYS[1] = S; ARGV[1..4] as lib/jobs.lua; ARGV[5] = id, ARGV[6] = the cancel
-- channel. Returns the state the job was in ('' when there is no such job). A running job is
-- marked and its node told on the cancel channel; it ends cancelled when its attempt stops.
--#include jobs.lua
local id = ARGV[5]
local k = job_key(id)
local f = redis.call('HMGET', k, 'state', 'group', 'function')
local st = f[1]
if not st then return '' end
if ENDED[st] then return st end
if st == 'running' then
    redis.call('HSET', k, 'cancel', 1, 'x', 1)
    redis.call('PUBLISH', ARGV[6], cjson.encode(id))
    return st
end
redis.call('ZREM', ready_key(f[3]), id)
redis.call('ZREM', S .. ':delayed', id)
if f[2] and f[2] ~= '' then redis.call('LREM', S .. ':parked:' .. f[2], 0, id) end
finish(id, 'cancelled', 'cancelled')
flush()
return st
