-- Releases the lock or leadership KEYS[1] when the node ARGV[2] still holds it, and wakes its
-- waiters on channel ARGV[1]. The key is a lock's string (lock_ops.lua: the node is what
-- follows the fifth space after the length-prefixed owner, after the session) or a read-write lock's writer hash
-- (field node).
-- Checked here, atomically: the lease may have lapsed and gone to a live node since the
-- reaper looked. Returns 1 when released, 0 when the key is gone or held by another node.
--#include publish.lua
local kind = redis.call('TYPE', KEYS[1])['ok']
local node
if kind == 'string' then
    local v = redis.call('GET', KEYS[1])
    local colon = string.find(v, ':', 1, true)
    local n = colon and tonumber(string.sub(v, 1, colon - 1))
    if n and string.byte(v, colon + n + 1) == 32 then
        node = string.match(v, '^%d+ %d %-?%d+ %d %S+ (.*)$', colon + n + 2)
    end
elseif kind == 'hash' then
    node = redis.call('HGET', KEYS[1], 'node')
end
if node == ARGV[2] then
    redis.call('DEL', KEYS[1])
    publish(ARGV[1], '')
    return 1
end
return 0
