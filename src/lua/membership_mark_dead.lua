-- Marks nodes dead once: KEYS[1] is a hash node -> time it was found dead, KEYS[2] the node
-- registry (same slot). The hash expires with the registry (its sliding TTL). ARGV[1] is the membership events channel, ARGV[2] the time (Unix ms),
-- ARGV[3..] the nodes found without a heartbeat. A node no longer in the registry left
-- gracefully meanwhile (a leave removes it from the registry before deleting its heartbeat)
-- and is skipped. Publishes {"event":"dead","node":id} for each node not marked before and
-- returns those nodes.
local newly = {}
for i = 3, #ARGV do
    local node = ARGV[i]
    if redis.call('SISMEMBER', KEYS[2], node) == 1 and
        redis.call('HSETNX', KEYS[1], node, ARGV[2]) == 1 then
        redis.call('PUBLISH', ARGV[1], cjson.encode({event = 'dead', node = node}))
        newly[#newly + 1] = node
    end
end
if #newly > 0 then
    local ttl = redis.call('PTTL', KEYS[2])
    if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
end
return newly
