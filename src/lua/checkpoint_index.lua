-- Adds sequence ARGV[1] to the checkpoint index KEYS[1] (a sorted set of a task's sequences,
-- scored by sequence), keeps the index ARGV[2] ms, and drops all but the ARGV[3] largest.
-- Returns the dropped sequences (their checkpoints are for the caller to delete: they live in
-- keys of their own, which may be in other cluster slots).
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3])
if excess <= 0 then
    return {}
end
local dropped = redis.call('ZRANGE', KEYS[1], 0, excess - 1)
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1)
return dropped
