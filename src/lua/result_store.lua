-- Writes a task result and announces it, in one step. KEYS[1] = the result hash,
-- KEYS[2] = the value key. ARGV[1] = status, ARGV[2] = metadata JSON text ('' keeps the stored
-- metadata), ARGV[3] = '1' when a metadata is given, ARGV[4] = now (Unix ms), ARGV[5] = the
-- hash's TTL (ms), ARGV[6] = '1' when a value is given, ARGV[7] = the compressed value,
-- ARGV[8] = the value's TTL (ms), ARGV[9] = the channel. Publishes the status. Returns 1.
--#include publish.lua
if redis.call('HEXISTS', KEYS[1], 'created_ms') == 0 then
    redis.call('HSET', KEYS[1], 'created_ms', ARGV[4])
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'updated_ms', ARGV[4])
if ARGV[3] == '1' then
    redis.call('HSET', KEYS[1], 'metadata', ARGV[2])
end
if ARGV[6] == '1' then
    redis.call('SET', KEYS[2], ARGV[7], 'PX', ARGV[8])
    redis.call('HSET', KEYS[1], 'value_bytes', #ARGV[7])
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
publish(ARGV[9], ARGV[1])
return 1
