-- Fencing tokens from a counter that does not live forever (docs/locks.md, "Fencing tokens"):
-- a token is greater than the counter's last token and at least the server's clock in Unix
-- milliseconds, and the counter expires fence_retention_ms after its last token, on the same
-- clock. A renewal of a held lease moves that expiry later (keep_fence), never earlier. So
-- while the counter is missing, the clock is past every token it gave plus the retention, and
-- a new token (the clock) is greater than all of them.
local fence_retention_ms = 86400000

-- The server's clock in Unix milliseconds, read once per script call: a call is atomic, and
-- Redis judges expiry by the call's start, so a counter this call finds missing expired no
-- later than this time (and the tokens of one call still grow by the counter's last + 1).
local fence_clock_ms
local function fence_now_ms()
    if not fence_clock_ms then
        local t = redis.call('TIME')
        fence_clock_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    end
    return fence_clock_ms
end

-- Issues the next token of the counter `fence`.
local function next_fence(fence)
    local now = fence_now_ms()
    local last = tonumber(redis.call('GET', fence)) or 0
    local token = now
    if last >= now then token = last + 1 end
    redis.call('SET', fence, string.format('%d', token), 'PXAT',
               string.format('%d', token + fence_retention_ms))
    return token
end

-- The token of a lease still held (its counter's value), or a new one when the counter is gone
-- (deleted by hand or evicted): greater than any the holder could have, so never unsafe.
local function held_fence(fence)
    local v = tonumber(redis.call('GET', fence))
    if v then return v end
    return next_fence(fence)
end

-- Keeps the counter of a held lease at least fence_retention_ms from now.
local function keep_fence(fence)
    local pttl = redis.call('PTTL', fence)
    if pttl ~= -2 and pttl < fence_retention_ms then
        redis.call('PEXPIRE', fence, fence_retention_ms)
    end
end
