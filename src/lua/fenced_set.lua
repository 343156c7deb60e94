-- Sets KEYS[1] to ARGV[2] only when the fencing token ARGV[1] is at least the highest token
-- used on it before, which KEYS[2] (a companion key in the same slot) remembers.
-- Returns 1 when written, 0 when a newer token has been used (a stale holder).
local token = tonumber(ARGV[1])
local seen = tonumber(redis.call('GET', KEYS[2]) or '-1')
if token < seen then
    return 0
end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SET', KEYS[1], ARGV[2])
return 1
