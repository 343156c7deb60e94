-- What a monitor shows of a lease kept in a zset of owners scored by their expiry (semaphore
-- permits, read holds): a hash beside the zset, owner -> "<fence> <since, server ms> <node>",
-- written on grant, dropped on release and when a lapsed holder leaves the zset, and expiring
-- no sooner than the zset. A script given no hash (nil) keeps none.

-- Keeps the hash at least `ttl` ms (a grant or a renewal of one of its holders).
local function holder_keep(info, ttl)
    if info and redis.call('PTTL', info) < ttl then
        redis.call('PEXPIRE', info, ttl)
    end
end

-- Records the grant of `owner`.
local function holder_add(info, owner, fence, since, node, ttl)
    if not info then return end
    redis.call('HSET', info, owner, string.format('%d %d ', fence, since) .. node)
    holder_keep(info, ttl)
end

-- Drops `owner`'s record.
local function holder_drop(info, owner)
    if info then redis.call('HDEL', info, owner) end
end

-- Removes the holders of `zset` whose lease lapsed by `now`, and their records.
local function holders_lapse(zset, info, now)
    local gone = redis.call('ZRANGEBYSCORE', zset, '-inf', now)
    if #gone == 0 then return end
    redis.call('ZREMRANGEBYSCORE', zset, '-inf', now)
    if info then
        for i = 1, #gone, 500 do
            redis.call('HDEL', info, unpack(gone, i, math.min(i + 499, #gone)))
        end
    end
end
