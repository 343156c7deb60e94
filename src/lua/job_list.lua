-- A page of the jobs in a state. KEYS[1] = S; ARGV[1] = state, ARGV[2] = function ('' for
-- all), ARGV[3] = offset, ARGV[4] = count. Returns {total, {field, value, ...}...}: queued jobs
-- in the order they run (their ready queues), running ones by lease deadline (S:running), the
-- other states newest first (their indexes, lib/jobs.lua); records that expired are left out
-- (and dropped from the sorted sets).
local S = KEYS[1]
local state, fn = ARGV[1], ARGV[2]
local offset, count = tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {0}
local ids, total = {}, 0

if state == 'queued' then
    -- every function's ready queue merged by score (priority, then enqueue order)
    local fns = fn ~= '' and {fn} or redis.call('SMEMBERS', S .. ':functions')
    local all = {}
    for _, f in ipairs(fns) do
        local q = S .. ':ready:' .. f
        total = total + redis.call('ZCARD', q)
        local r = redis.call('ZRANGE', q, 0, offset + count - 1, 'WITHSCORES')
        for i = 1, #r, 2 do all[#all + 1] = {tonumber(r[i + 1]), r[i]} end
    end
    table.sort(all, function(a, b) return a[1] < b[1] end)
    for i = offset + 1, math.min(offset + count, #all) do ids[#ids + 1] = all[i][2] end
elseif state == 'running' then
    -- as many as nodes run at once: read whole, filtered by function
    local matched = {}
    -- (below +inf: lib/jobs.lua's RUNNING_KEEPER is left out)
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', S .. ':running', '-inf', '(+inf')) do
        if fn == '' or redis.call('HGET', S .. ':job:' .. id, 'function') == fn then
            matched[#matched + 1] = id
        end
    end
    total = #matched
    for i = offset + 1, math.min(offset + count, #matched) do ids[#ids + 1] = matched[i] end
elseif state == 'succeeded' or state == 'failed' or state == 'cancelled' then
    -- lists, newest first (ids whose records expired are skipped; job_renew.lua trims them)
    local idx = S .. ':state:' .. state
    if fn ~= '' then idx = idx .. ':' .. fn end
    ids = redis.call('LRANGE', idx, offset, offset + count - 1)
    total = redis.call('LLEN', idx)
else
    local idx = S .. ':state:' .. state
    if fn ~= '' then idx = idx .. ':' .. fn end
    ids = redis.call('ZREVRANGE', idx, offset, offset + count - 1)
    for _, id in ipairs(ids) do
        if redis.call('EXISTS', S .. ':job:' .. id) == 0 then redis.call('ZREM', idx, id) end
    end
    total = redis.call('ZCARD', idx)
end

for _, id in ipairs(ids) do
    local rec = redis.call('HGETALL', S .. ':job:' .. id)
    if #rec > 0 then out[#out + 1] = rec end
end
out[1] = total
return out
