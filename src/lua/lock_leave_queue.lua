-- Removes ARGV[1] from the fair-mode wait queue (KEYS[1] list, KEYS[2] zset) of a lock and,
-- when it was there, wakes the other waiters on channel ARGV[2]: the next one may now go.
--#include publish.lua
local removed = redis.call('LREM', KEYS[1], 0, ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if removed > 0 then
    publish(ARGV[2], '')
end
return removed
