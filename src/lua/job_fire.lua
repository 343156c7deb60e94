-- Fires occurrences of a recurring job, once across the cluster: every node calls it at each
-- occurrence; the first call for an occurrence wins. KEYS[1] = S; ARGV[1..4] as lib/jobs.lua;
-- ARGV[5] = the recurring job's name, ARGV[6] = the last fired occurrence the caller knows of
-- (Unix ms, '' for none), ARGV[7] = the occurrence to record as last fired, ARGV[8] =
-- function, ARGV[9] = payload, ARGV[10] = n, ARGV[11 .. 10+n] = the occurrences to enqueue,
-- then the option fields. Returns {1, last} when fired, {0, last} when the occurrence was
-- already fired, {-1, last} when the caller's last differs (it recomputes and calls again).
--#include jobs.lua
local name, known, t = ARGV[5], ARGV[6], tonumber(ARGV[7])
local last_key = S .. ':cron:' .. name
local last = redis.call('GET', last_key)
if last and tonumber(last) >= t then return {0, last} end
if (last or '') ~= known then return {-1, last or ''} end
local n = tonumber(ARGV[10])
local fields = {}
for i = 11 + n, #ARGV do fields[#fields + 1] = ARGV[i] end
fields[#fields + 1] = 'recurring'
fields[#fields + 1] = name
local base = #fields
for i = 11, 10 + n do
    fields[base + 1] = 'occurrence'
    fields[base + 2] = ARGV[i]
    create('cron:' .. name .. ':' .. ARGV[i], ARGV[8], ARGV[9], 0, {}, 'fail', fields)
end
redis.call('SET', last_key, ARGV[7], 'PX', RECORD_TTL)
flush()
return {1, ARGV[7]}
