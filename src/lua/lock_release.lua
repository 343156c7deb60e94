-- Releases one hold of the lock KEYS[1] by ARGV[1]; the last hold deletes it and publishes the
-- releasing owner on channel ARGV[2], which wakes the waiters.
-- Returns 0 when ARGV[1] does not hold it, 1 when released, 2 when still held (reentrant).
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
    return 0
end
if redis.call('HINCRBY', KEYS[1], 'count', -1) > 0 then
    return 2
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], ARGV[1])
return 1
