-- The permits of the rate limiter KEYS[1] free now, out of ARGV[1] per ARGV[2] ms.
-- Returns {remaining, now_ms}.
--#include rate_window.lua
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {rate_window_peek(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), now), now}
