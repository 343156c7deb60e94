-- Enqueues a job. KEYS[1] = S; ARGV[1..4] as lib/jobs.lua; ARGV[5] = id, ARGV[6] = function,
-- ARGV[7] = payload, ARGV[8] = due (Unix ms, 0: now), ARGV[9] = idempotency key (may be
-- empty), ARGV[10] = dependency policy, ARGV[11] = n, ARGV[12 .. 11+n] = dependencies, then
-- the option fields (name, value, ...). Returns {1, id} when enqueued, {0, id} when the
-- idempotency key named an existing job, or an error naming what was wrong.
--#include jobs.lua
local id, fn, payload, idem = ARGV[5], ARGV[6], ARGV[7], ARGV[9]
local due = tonumber(ARGV[8]) or 0
local n = tonumber(ARGV[11])
local deps, fields = {}, {}
for i = 12, 11 + n do deps[#deps + 1] = ARGV[i] end
for i = 12 + n, #ARGV do fields[#fields + 1] = ARGV[i] end
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
