-- Takes an item for worker ARGV[2] from the longest queue of the other workers. KEYS[1] = the
-- set of workers; ARGV[1] = the prefix of a worker's queue (the worker id follows). Takes the
-- newest item (the owner takes the oldest, from the other end). Returns {victim, item}, or an
-- empty array when the others have nothing.
local best, best_len = nil, 0
for _, w in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    if w ~= ARGV[2] then
        local n = redis.call('LLEN', ARGV[1] .. w)
        if n > best_len or (n == best_len and n > 0 and w < best) then
            best, best_len = w, n
        end
    end
end
if not best then
    return {}
end
return {best, redis.call('LPOP', ARGV[1] .. best)}
