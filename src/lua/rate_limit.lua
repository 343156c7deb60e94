-- Takes ARGV[3] permits (all or none) of the rate limiter KEYS[1] (a sorted set of the times
-- its permits were taken) on the server's clock.
-- ARGV: limit, window_ms, permits, member (unique per call).
-- Returns {allowed (0 or 1), retry_ms, remaining, now_ms}.
--#include rate_window.lua
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local allowed, retry_ms, remaining =
    rate_window_take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), now, now .. ':' .. ARGV[4],
                     tonumber(ARGV[3]))
return {allowed and 1 or 0, retry_ms, remaining, now}
