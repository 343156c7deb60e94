-- Releases one hold of the lock KEYS[1] (the string lock_acquire.lua writes) by ARGV[1]; the
-- last hold deletes it and, when someone waits (the value's waiters flag) or ARGV[3] is "1",
-- publishes the releasing owner on channel ARGV[2], which wakes the waiters. Returns 0 when
-- ARGV[1] does not hold it, 1 when released, 2 when still held (reentrant).
-- (Byte positions instead of substrings where it can: Redis's Lua hashes every byte of each
-- string it creates.)
local v = redis.call('GET', KEYS[1])
local owner = ARGV[1]
local n = #owner
if not v or string.byte(v, n + 1) ~= 10 or string.sub(v, 1, n) ~= owner then
    return 0
end
-- <holds> ' ' <watchdog> ' ' <since> ' ' <waiters> ' ' <node>, from byte n + 2
local holds_end = string.find(v, ' ', n + 2, true) or (#v + 1)
if holds_end ~= n + 3 or string.byte(v, n + 2) ~= 49 then  -- holds is not "1"
    local holds = tonumber(string.sub(v, n + 2, holds_end - 1)) or 1
    if holds > 1 then
        redis.call('SET', KEYS[1], owner .. '\n' .. (holds - 1) .. string.sub(v, holds_end),
                   'KEEPTTL')
        return 2
    end
end
redis.call('DEL', KEYS[1])
local since_end = string.find(v, ' ', holds_end + 3, true)
if ARGV[3] == '1' or not since_end or string.byte(v, since_end + 1) ~= 48 then  -- waiters ~= "0"
    redis.call('PUBLISH', ARGV[2], owner)
end
return 1
