-- Deletes the lock KEYS[1] whoever holds it and wakes its waiters on channel ARGV[1].
-- Returns 1 when a lock was deleted, 0 when there was none.
--#include publish.lua
if redis.call('DEL', KEYS[1]) == 1 then
    publish(ARGV[1], '')
    return 1
end
return 0
