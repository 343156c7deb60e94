-- Releases one hold of the lock KEYS[1] (the string lock_acquire.lua writes) by ARGV[1]; the
-- last hold deletes it and, when someone waits (the value's waiters flag) or ARGV[3] is "1",
-- publishes the releasing owner on channel ARGV[2], which wakes the waiters. Returns 0 when
-- ARGV[1] does not hold it, 1 when released, 2 when still held (reentrant).
local v = redis.call('GET', KEYS[1])
local head = ARGV[1] .. '\n'
if not v or string.sub(v, 1, #head) ~= head then
    return 0
end
if string.sub(v, #head + 1, #head + 2) ~= '1 ' then
    local holds_end = string.find(v, ' ', #head + 1, true) or (#v + 1)
    local n = tonumber(string.sub(v, #head + 1, holds_end - 1)) or 1
    if n > 1 then
        redis.call('SET', KEYS[1], head .. (n - 1) .. string.sub(v, holds_end), 'KEEPTTL')
        return 2
    end
end
redis.call('DEL', KEYS[1])
if ARGV[3] == '1' or string.match(v, '^%d+ %d %-?%d+ (%d)', #head + 1) ~= '0' then
    redis.call('PUBLISH', ARGV[2], ARGV[1])
end
return 1
