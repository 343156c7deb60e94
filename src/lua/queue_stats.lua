-- The counts of one queue, read at once. KEYS[1] = the queue, KEYS[2] = its set of consumers,
-- KEYS[3] = its set of workers, KEYS[4] = its redelivery counter; ARGV[1] = the prefix of a
-- consumer's processing list, ARGV[2] = of a worker's queue (the id follows; same slot).
-- Returns {depth, redeliveries, {consumer, in flight, ...}, {worker, waiting, ...}}. A key of
-- another type (written by something else) counts as empty.
local function len(key)
    local n = redis.pcall('LLEN', key)
    if type(n) == 'number' then return n end
    return 0
end
local function members(key)
    local m = redis.pcall('SMEMBERS', key)
    if type(m) == 'table' and not m.err then return m end
    return {}
end
local consumers, workers = {}, {}
for _, c in ipairs(members(KEYS[2])) do
    consumers[#consumers + 1] = c
    consumers[#consumers + 1] = len(ARGV[1] .. c)
end
for _, w in ipairs(members(KEYS[3])) do
    workers[#workers + 1] = w
    workers[#workers + 1] = len(ARGV[2] .. w)
end
return {len(KEYS[1]), tonumber(redis.pcall('GET', KEYS[4])) or 0, consumers, workers}
