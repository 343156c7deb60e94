-- Renews the filler's lease KEYS[1] (a string holding the owner token) to ARGV[2] ms when
-- ARGV[1] still holds it. Returns 1 when renewed, 0 when it is gone or held by another owner.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
end
return 0
