-- Removes the waiting mark of writer ARGV[1] (the zset KEYS[1]) when it gives up, and wakes
-- the readers it kept out on channel ARGV[2]. Returns 1 when a mark was removed, else 0.
--#include publish.lua
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
if removed > 0 then
    publish(ARGV[2], '')
end
return removed
