-- Stores the value a filler made and announces it, in one step: SET KEYS[1] to the JSON text
-- ARGV[1] (PX ARGV[2] when it is above 0, else without expiry), then PUBLISH on channel ARGV[3]
-- "v:" followed by the text when it is at most ARGV[4] bytes, else "r" (the waiters read it:
-- a large value is not pushed to every subscriber). Returns 1.
--#include publish.lua
local px = tonumber(ARGV[2])
if px > 0 then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', px)
else
    redis.call('SET', KEYS[1], ARGV[1])
end
if #ARGV[1] <= tonumber(ARGV[4]) then
    publish(ARGV[3], 'v:' .. ARGV[1])
else
    publish(ARGV[3], 'r')
end
return 1
