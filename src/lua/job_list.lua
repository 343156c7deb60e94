-- A page of the jobs in a state. KEYS[1] = S; ARGV[1] = state, ARGV[2] = function ('' for
-- all), ARGV[3] = offset, ARGV[4] = count. Returns {total, {field, value, ...}...}, newest
-- first; records that expired are dropped from the index.
local S = KEYS[1]
local idx = S .. ':state:' .. ARGV[1]
if ARGV[2] ~= '' then idx = idx .. ':' .. ARGV[2] end
local offset, count = tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {0}
local ids = redis.call('ZREVRANGE', idx, offset, offset + count - 1)
for _, id in ipairs(ids) do
    local rec = redis.call('HGETALL', S .. ':job:' .. id)
    if #rec == 0 then
        redis.call('ZREM', idx, id)
    else
        out[#out + 1] = rec
    end
end
out[1] = redis.call('ZCARD', idx)
return out
