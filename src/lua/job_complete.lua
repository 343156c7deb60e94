-- Records a job's completion and announces it, in one step. KEYS[1] = the job's record (a
-- hash). ARGV[1] = 'succeeded' or 'failed', ARGV[2] = the reason (may be empty), ARGV[3] = now
-- (Unix ms), ARGV[4] = TTL (ms), ARGV[5] = the channel. Returns 1.
--#include publish.lua
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'reason', ARGV[2], 'completed_ms', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
publish(ARGV[5], ARGV[1])
return 1
