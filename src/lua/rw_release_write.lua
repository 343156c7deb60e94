-- Releases the write hold of ARGV[1] (the writer hash KEYS[1] of a read-write lock) and
-- publishes the owner on channel ARGV[2], which wakes readers and writers.
-- Returns 0 when ARGV[1] does not hold it, 1 when released.
--#include publish.lua
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
    return 0
end
redis.call('DEL', KEYS[1])
publish(ARGV[2], ARGV[1])
return 1
