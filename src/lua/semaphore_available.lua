-- Permits of the semaphore KEYS[1] (a zset of holders scored by their expiry in server
-- milliseconds) that are free now, out of ARGV[1]: holders whose lease lapsed do not count.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held = redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
local free = tonumber(ARGV[1]) - held
if free < 0 then free = 0 end
return free
