-- The operations on locks and leaderships one client sent together, run in the order given:
-- attempts to acquire and releases. The reply has one element per operation; an operation
-- that fails (e.g. a key of another type) gets an error element and the others still run.
--
-- A held lock KEYS[k] is a string with the lease's TTL:
--   <#owner> ":" <owner> " " <holds> " " <watchdog 0/1> " " <since, Unix ms> " " <waiters 0/1/2>
--   " " <session> " " <node>
-- The owner is length-prefixed, so it may hold any byte: the head "<#owner>:<owner> " of one
-- owner is never a prefix of another's. The session (the writing session's random id) and the
-- node are the rest of the value. "waiters" is set by an attempt that found the lock held, to 1
-- when it came from the holder's session and to 2 when from another ("another node" below:
-- another session, even one with the same node id): only then does the release publish (the
-- wake-up).
--
-- Attempt: ARGV "a", value (with one hold; the client's clock gives "since", for display
-- only), ttl_ms, mode ("-" or any of "r" reentrant, "f" fair, "k": this same value may have
-- been granted by an earlier attempt whose reply was lost, and "y": yield, i.e. do not take
-- the lock when a release earlier in this call found another node waiting for it), and in fair
-- mode waiter_ttl_ms.
-- KEYS: the lock, its fencing counter (lib/fence.lua: every grant issues a greater token; the
-- counter expires long after its last token, and while the lock is held it is the holder's
-- token, kept by the renewals), and in fair mode
-- the wait queue (a list of owners in arrival order) and a zset of their registration
-- deadlines in server milliseconds.
-- Replies the fence (an integer) when granted; {0, pttl_of_holder} when held by another or,
-- without "r", by the same owner (an owner holds a lock once unless it asks for reentrancy);
-- {0, -3} in fair mode when the lock is free but earlier waiters come first; {0, -4} with "y"
-- when the lock is free but another node waits for it (the release published: it gets a turn).
-- A grant to a leadership also records the new term (record_term below) in the companion
-- "terms" of the same slot, which is not among the KEYS.
--
-- Release of one hold: ARGV "r", owner, channel, always ("1": publish even when nobody waits,
-- for leaderships). KEYS: the lock. The last hold deletes it and, when someone waits (the
-- waiters flag) or always is "1", publishes the owner on the channel, which wakes the waiters.
-- Replies 0 when the owner does not hold it, 1 when released, 2 when still held (reentrant).
--
-- (Byte positions instead of substrings where it can: Redis's Lua hashes every byte of each
-- string it creates.)
--#include publish.lua

--#include fence.lua

-- The end of the head "<#owner>:<owner> " of a value written by this script, or nil.
local function head_end(v)
    local colon = string.find(v, ':', 1, true)
    if not colon or colon > 12 then return nil end
    local n = tonumber(string.sub(v, 1, colon - 1))
    if not n then return nil end
    local e = colon + n + 1
    if string.byte(v, e) ~= 32 then return nil end
    return e
end

-- The locks whose release in this call found another node waiting (waiters flag 2).
local others_waited = {}

-- A leadership keeps the history of its terms. A grant to a leadership key
-- (`<prefix>leader:{<name>}`: the text before the key's first '{' ends with "leader:"; a
-- lock's ends with "lock:") pushes "<term> <server time, Unix ms> <#owner>:<owner> <node>" on
-- the companion list "terms" (the fence key's sibling, so in the same slot), keeps the last
-- 100, and slides the list's TTL to 30 days.
local terms_kept, terms_ttl_ms = 100, 2592000000
local function record_term(key, fence, value, token)
    local brace = string.find(key, '{', 1, true)
    if not brace or brace < 8 or string.find(key, 'leader:{', brace - 7, true) ~= brace - 7 then
        return
    end
    local he = head_end(value)
    if not he then return end
    local _, fe = string.find(value, '^%d+ %d %-?%d+ %d [^ ]* ', he + 1)
    local terms = string.sub(fence, 1, #fence - 5) .. 'terms'
    redis.call('LPUSH', terms, string.format('%d %d ', token, fence_now_ms()) ..
               string.sub(value, 1, he) .. (fe and string.sub(value, fe + 1) or ''))
    redis.call('LTRIM', terms, 0, terms_kept - 1)
    redis.call('PEXPIRE', terms, terms_ttl_ms)
end

-- A new lease of key: its fencing token, the next of the counter.
local function grant(key, fence, value)
    local token = next_fence(fence)
    record_term(key, fence, value, token)
    return token
end

local function acquire(key, fence, queue, deadlines, value, ttl, mode, waiter_ttl)
    local fair = mode ~= '-' and string.find(mode, 'f', 1, true) ~= nil
    if others_waited[key] and mode ~= '-' and string.find(mode, 'y', 1, true) then
        return {0, -4}
    end
    local held
    if fair then
        held = redis.call('GET', key)
    else
        -- The fast path: one call takes a free lock, or reads its holder.
        held = redis.call('SET', key, value, 'NX', 'PX', ttl, 'GET')
        if not held then
            return grant(key, fence, value)
        end
    end
    local he = head_end(value)
    if not he then return redis.error_reply('lock_ops: malformed lock value') end
    local head = string.sub(value, 1, he)

    local server_now = fence_now_ms

    local owner
    local function enqueue()
        owner = owner or string.sub(head, string.find(head, ':', 1, true) + 1, he - 1)
        local wt = tonumber(waiter_ttl)
        if not redis.call('ZSCORE', deadlines, owner) then
            redis.call('RPUSH', queue, owner)
        end
        redis.call('ZADD', deadlines, server_now() + wt, owner)
        redis.call('PEXPIRE', queue, wt * 2)
        redis.call('PEXPIRE', deadlines, wt * 2)
    end

    if held then
        if string.find(held, head, 1, true) == 1 then
            if string.find(mode, 'r', 1, true) then
                -- Reentrant: one more hold.
                local holds_end = string.find(held, ' ', he + 1, true) or (#held + 1)
                local n = (tonumber(string.sub(held, he + 1, holds_end - 1)) or 1) + 1
                redis.call('SET', key, head .. n .. string.sub(held, holds_end), 'PX', ttl)
                return held_fence(fence)
            end
            if string.find(mode, 'k', 1, true) and #held == #value then
                -- This acquisition's own grant, whose reply was lost: the same value (but for
                -- the waiters flag, the 4th field after the head).
                local _, fields_end = string.find(value, '^%d+ %d %-?%d+ ', he + 1)
                if fields_end and string.sub(held, 1, fields_end) == string.sub(value, 1, fields_end)
                    and string.sub(held, fields_end + 2) == string.sub(value, fields_end + 2) then
                    redis.call('PEXPIRE', key, ttl)
                    return held_fence(fence)
                end
            end
        end
        -- Someone waits: the release must publish. 1: a waiter of the holder's session; 2: of
        -- another (a local handoff may then yield to it, with "y"). The rest of the value
        -- after the waiters flag is the session and the node.
        local hhe = head_end(held)
        local _, fields_end
        if hhe then _, fields_end = string.find(held, '^%d+ %d %-?%d+ ', hhe + 1) end
        local flag = fields_end and string.byte(held, fields_end + 1)
        if flag and flag ~= 50 then  -- not "2" already
            local _, vfe = string.find(value, '^%d+ %d %-?%d+ ', he + 1)
            local other = vfe and string.sub(value, vfe + 3) ~= string.sub(held, fields_end + 3)
            local want = other and '2' or '1'
            if string.char(flag) ~= want then
                redis.call('SET', key, string.sub(held, 1, fields_end) .. want ..
                           string.sub(held, fields_end + 2), 'KEEPTTL')
            end
        end
        if fair then enqueue() end
        return {0, redis.call('PTTL', key)}
    end

    -- Fair mode, and the lock is free: waiters that stopped refreshing their place (gone, or
    -- gave up) leave the head; then only the head may take it.
    owner = string.sub(head, string.find(head, ':', 1, true) + 1, he - 1)
    while true do
        local first = redis.call('LINDEX', queue, 0)
        if not first then break end
        local until_ms = tonumber(redis.call('ZSCORE', deadlines, first) or '0')
        if until_ms > server_now() then break end
        redis.call('LPOP', queue)
        redis.call('ZREM', deadlines, first)
    end
    local first = redis.call('LINDEX', queue, 0)
    if first and first ~= owner then
        enqueue()
        return {0, -3}
    end
    if first == owner then
        redis.call('LPOP', queue)
        redis.call('ZREM', deadlines, owner)
    end
    redis.call('SET', key, value, 'PX', ttl)
    return grant(key, fence, value)
end

local function release(key, owner, channel, always)
    local v = redis.call('GET', key)
    if not v then return 0 end
    -- The head "<#owner>:<owner> ", compared in place rather than built (a new string costs a
    -- hash of its bytes).
    local n = #owner
    local digits = tostring(n)
    local at = #digits + 2
    if string.byte(v, at - 1) ~= 58 or string.byte(v, at + n) ~= 32 or
        string.find(v, digits, 1, true) ~= 1 or string.find(v, owner, at, true) ~= at then
        return 0
    end
    -- <holds> ' ' <watchdog> ' ' <since> ' ' <waiters> ' ' <session> ' ' <node>, from byte
    -- at + n + 1
    local hs = at + n + 1
    local holds_end = string.find(v, ' ', hs, true) or (#v + 1)
    if holds_end ~= hs + 1 or string.byte(v, hs) ~= 49 then  -- holds is not "1"
        local holds = tonumber(string.sub(v, hs, holds_end - 1)) or 1
        if holds > 1 then
            redis.call('SET', key, string.sub(v, 1, hs - 1) .. (holds - 1) .. string.sub(v, holds_end),
                       'KEEPTTL')
            return 2
        end
    end
    redis.call('DEL', key)
    local since_end = string.find(v, ' ', holds_end + 3, true)
    local waiters = since_end and string.byte(v, since_end + 1)
    if waiters == 50 then others_waited[key] = true end  -- "2": another node waits
    if always == '1' or not since_end or waiters ~= 48 then  -- waiters ~= "0"
        publish(channel, owner)
    end
    return 1
end

-- The end of ARGV: n keys more, then n, then the publish command (lib/publish.lua). On a
-- Redis Cluster one call carries the operations of every slot its master serves, and only the
-- keys of one slot are declared (a call's declared keys must share a slot; a script without a
-- shebang may reach the undeclared keys of the other slots its node serves). A key of a slot
-- the node does not serve is refused at its first access, before its operation wrote anything:
-- that operation's element is the error, and the client sends it again.
local extra = tonumber(ARGV[#ARGV - 1])
local last = #ARGV - 2 - extra
local keys = KEYS
if extra > 0 then
    keys = {}
    for i = 1, #KEYS do keys[i] = KEYS[i] end
    for i = 1, extra do keys[#KEYS + i] = ARGV[last + i] end
end

local out, k, a = {}, 1, 1
while a <= last do
    local op, ok, r = ARGV[a]
    if op == 'r' then
        ok, r = pcall(release, keys[k], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3])
        k, a = k + 1, a + 4
    elseif op == 'a' then
        local mode = ARGV[a + 3]
        if mode ~= '-' and string.find(mode, 'f', 1, true) then
            ok, r = pcall(acquire, keys[k], keys[k + 1], keys[k + 2], keys[k + 3], ARGV[a + 1],
                          ARGV[a + 2], mode, ARGV[a + 4])
            k, a = k + 4, a + 5
        else
            ok, r = pcall(acquire, keys[k], keys[k + 1], nil, nil, ARGV[a + 1], ARGV[a + 2], mode)
            k, a = k + 2, a + 4
        end
    else
        return redis.error_reply('lock_ops: unknown operation ' .. tostring(op) .. ' at ARGV ' .. a)
    end
    if ok then
        out[#out + 1] = r
    elseif type(r) == 'table' and r.err then  -- the error of a redis.call
        out[#out + 1] = r
    else
        out[#out + 1] = redis.error_reply(tostring(r))
    end
end
return out
