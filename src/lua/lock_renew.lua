-- Sets the TTL of the lock KEYS[1] to ARGV[2] ms when ARGV[1] still holds it.
-- Returns 1 when renewed, 0 when the lock is gone or held by another owner.
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
end
return 0
