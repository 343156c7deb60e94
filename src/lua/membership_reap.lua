-- Releases the lock or leadership KEYS[1] (a hash written by lock_acquire.lua) when the node
-- ARGV[2] still holds it, and wakes its waiters on channel ARGV[1]. Checked here, atomically:
-- the lease may have lapsed and gone to a live node since the reaper looked.
-- Returns 1 when released, 0 when the key is gone or held by another node.
if redis.call('HGET', KEYS[1], 'node') == ARGV[2] then
    redis.call('DEL', KEYS[1])
    redis.call('PUBLISH', ARGV[1], '')
    return 1
end
return 0
