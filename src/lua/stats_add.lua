-- Adds one session's lock statistics to the cluster-wide hash KEYS[1] (core/shared_stats.hpp):
-- ARGV[1] = the hash's TTL in ms (sliding), ARGV[2] = the longest wait seen in µs (-1: none),
-- then field, increment pairs.
local key = KEYS[1]
for i = 3, #ARGV, 2 do
    redis.call('HINCRBY', key, ARGV[i], ARGV[i + 1])
end
local max = tonumber(ARGV[2])
if max >= 0 and max > (tonumber(redis.call('HGET', key, 'wait_max_us')) or -1) then
    redis.call('HSET', key, 'wait_max_us', ARGV[2])
end
redis.call('PEXPIRE', key, ARGV[1])
return 1
