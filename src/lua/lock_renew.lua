-- Sets the TTL of the lock KEYS[1] (the string lock_ops.lua writes: "<#owner>:<owner> ...")
-- to ARGV[2] ms when ARGV[1] still holds it. Returns 1 when renewed, 0 when the lock is gone
-- or held by another.
local v = redis.call('GET', KEYS[1])
local head = #ARGV[1] .. ':' .. ARGV[1] .. ' '
if v and string.find(v, head, 1, true) == 1 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
end
return 0
