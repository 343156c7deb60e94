-- Sets the TTL of the lock KEYS[1] (the string lock_ops.lua writes) to ARGV[2] ms when
-- ARGV[1] still holds it. Returns 1 when renewed, 0 when the lock is gone or held by another.
local v = redis.call('GET', KEYS[1])
local head = ARGV[1] .. '\n'
if v and string.sub(v, 1, #head) == head then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
end
return 0
