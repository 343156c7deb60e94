-- Enqueues an item and wakes the consumers, in one step: LPUSH KEYS[1] ARGV[1], SADD KEYS[2]
-- ARGV[3] when ARGV[3] is not empty (the set of per-worker queues), PUBLISH on ARGV[2].
-- Returns the queue's length.
local n = redis.call('LPUSH', KEYS[1], ARGV[1])
if ARGV[3] ~= '' then
    redis.call('SADD', KEYS[2], ARGV[3])
end
redis.call('PUBLISH', ARGV[2], '1')
return n
