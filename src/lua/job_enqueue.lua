-- Enqueues a job. KEYS[1] = S; ARGV[1..4] as lib/jobs.lua; ARGV[5] = id, ARGV[6] = function,
-- ARGV[7] = payload, ARGV[8] = due (Unix ms, 0: now), ARGV[9] = idempotency key (may be
-- empty), ARGV[10] = dependency policy, ARGV[11] = '1' when the option fields are the caller's
-- own (the job's, or its function's on the caller's node), '0' when they are the defaults:
-- then the function's options stored by a node that runs it (S:fn:<function>) are taken if
-- there are any; ARGV[12] = n, ARGV[13 .. 12+n] = dependencies, then the option fields
-- (name, value, ...). Returns {1, id} when enqueued, {0, id} when the
-- idempotency key named an existing job, or an error naming what was wrong.
--#include jobs.lua
local id, fn, payload, idem = ARGV[5], ARGV[6], ARGV[7], ARGV[9]
local due = tonumber(ARGV[8]) or 0
local n = tonumber(ARGV[12])
local deps, fields = {}, {}
for i = 13, 12 + n do deps[#deps + 1] = ARGV[i] end
for i = 13 + n, #ARGV do fields[#fields + 1] = ARGV[i] end
if ARGV[11] == '0' then
    local stored = redis.call('HGETALL', S .. ':fn:' .. fn)
    if #stored > 0 then fields = stored end
end
if idem ~= '' then
    local existing = redis.call('GET', S .. ':idem:' .. idem)
    if existing and redis.call('EXISTS', job_key(existing)) == 1 then return {0, existing} end
    fields[#fields + 1] = 'idem'
    fields[#fields + 1] = idem
end
local ok, err = create(id, fn, payload, due, deps, ARGV[10], fields)
if not ok then return redis.error_reply('ERR redcoord jobs: ' .. err) end
if idem ~= '' then redis.call('SET', S .. ':idem:' .. idem, id) end
return {1, id}
