-- Sets the TTL of the lock KEYS[1] (the string lock_ops.lua writes: "<#owner>:<owner> ...")
-- to ARGV[2] ms when ARGV[1] still holds it, and keeps its fencing counter KEYS[2] (when given)
-- from expiring while it is held. Returns 1 when renewed, 0 when the lock is gone or held by
-- another.
--#include fence.lua

local v = redis.call('GET', KEYS[1])
local head = #ARGV[1] .. ':' .. ARGV[1] .. ' '
if v and string.find(v, head, 1, true) == 1 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    if KEYS[2] then keep_fence(KEYS[2]) end
    return 1
end
return 0
