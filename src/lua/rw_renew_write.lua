-- Sets the TTL of the writer hash KEYS[1] of a read-write lock to ARGV[2] ms when ARGV[1]
-- still holds it. ARGV: owner, ttl_ms, channel (unused).
-- Returns 1 when renewed, 0 when gone or held by another owner.
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
end
return 0
