-- An exact sliding-window log on the sorted set `key`: one member per permit taken, scored by
-- the time it was taken (Unix ms on the server's clock). A permit taken at t counts while
-- now_ms - t < window_ms, so no span of window_ms ever holds more than `limit` of them.
-- Shared by the rate limiter's scripts and the job scheduler's claim script; times come from
-- the caller (redis.call('TIME') once per script call), so one call decides on one clock.

-- Takes `permits` (default 1) permits of `key` at now_ms, all or none. `member` is unique per
-- take (e.g. now_ms .. ':' .. an id); with several permits, member .. ':' .. i for each.
-- Returns allowed, retry_ms, remaining:
--   allowed: true, 0, permits left in the window after this take (the key then expires
--            window_ms after its last take: everything in it is stale by then);
--   refused: false, ms until enough permits leave the window (at least 1), 0.
local function rate_window_take(key, limit, window_ms, now_ms, member, permits)
    permits = permits or 1
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms - window_ms)
    local count = redis.call('ZCARD', key)
    if count + permits <= limit then
        if permits == 1 then
            redis.call('ZADD', key, now_ms, member)
        else
            -- In batches: unpack of a long list would overflow Lua's C stack.
            local args = {}
            for i = 1, permits do
                args[#args + 1] = now_ms
                args[#args + 1] = member .. ':' .. i
                if #args == 1000 or i == permits then
                    redis.call('ZADD', key, unpack(args))
                    args = {}
                end
            end
        end
        redis.call('PEXPIRE', key, window_ms)
        return true, 0, limit - count - permits
    end
    -- Enough permits are free once the (count - limit + permits)-th oldest has left.
    local retry_ms = 1
    if permits <= limit then
        local nth = count - limit + permits - 1
        local entry = redis.call('ZRANGE', key, nth, nth, 'WITHSCORES')
        if entry[2] then
            retry_ms = tonumber(entry[2]) + window_ms - now_ms
            if retry_ms < 1 then retry_ms = 1 end
        end
    else
        retry_ms = window_ms
    end
    return false, retry_ms, 0
end

-- The permits of `key` free at now_ms, without taking one (and without writing: stale
-- entries are not counted, and left to the next take).
local function rate_window_peek(key, limit, window_ms, now_ms)
    local count = redis.call('ZCOUNT', key, '(' .. (now_ms - window_ms), '+inf')
    if count >= limit then return 0 end
    return limit - count
end
