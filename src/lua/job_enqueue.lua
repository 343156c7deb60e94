-- Enqueues jobs, one or many in a call. KEYS[1] = S; ARGV[1..4] as lib/jobs.lua; ARGV[5] = m,
-- the number of jobs; then for each job its argument count c and c arguments: id, function,
-- payload, due (Unix ms, 0: now), idempotency key (may be empty), dependency policy, '1' when
-- the option fields are the caller's own (the job's, or its function's on the caller's node),
-- '0' when they are the defaults: then the function's options stored by a node that runs it
-- (S:fn:<function>) are taken if there are any; '1' when the id is a fresh random one (not
-- looked up), else '0'; n, then n dependencies, then the option
-- fields (name, value, ...). Returns one reply per job: {1, id} when enqueued, {0, id} when
-- its idempotency key named an existing job, {-1, message} naming what was wrong.
--#include jobs.lua
-- The options a node that runs fn stored for it (S:fn:<function>: name, value, ...), read once
-- a call.
local stored_options = {}
local function function_options(fn)
    local opts = stored_options[fn]
    if opts == nil then
        opts = redis.call('HGETALL', S .. ':fn:' .. fn)
        stored_options[fn] = opts
    end
    return opts
end
local out = {}
local at = 6
for _ = 1, tonumber(ARGV[5]) do
    local c = tonumber(ARGV[at])
    local a = at + 1
    at = a + c
    local id, fn, payload, idem = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 4]
    -- A plain job (lib/jobs.lua's x), the common case, is made in a few steps: no dependency,
    -- idempotency key or option but the defaults, due now, a fresh id.
    local plain = false
    if c >= 9 and idem == '' and ARGV[a + 3] == '0' and ARGV[a + 7] == '1' and
        ARGV[a + 8] == '0' then
        if ARGV[a + 6] == '1' then
            plain = c == 9 or (c == 13 and is_default_options(unpack(ARGV, a + 9, a + 12)))
        else
            local opts = function_options(fn)
            plain = #opts == 0 or (#opts == 4 and is_default_options(unpack(opts)))
        end
    end
    if plain then
        create_plain(id, fn, payload)
        out[#out + 1] = {1, id}
    else
        local due = tonumber(ARGV[a + 3]) or 0
        local n = tonumber(ARGV[a + 8])
        local deps, fields = {}, {}
        for i = a + 9, a + 8 + n do deps[#deps + 1] = ARGV[i] end
        for i = a + 9 + n, at - 1 do fields[#fields + 1] = ARGV[i] end
        if ARGV[a + 6] == '0' then
            local opts = function_options(fn)
            if #opts > 0 then
                fields = opts
                if idem ~= '' then fields = {unpack(fields)} end  -- (appended to below)
            end
        end
        local existing = false
        if idem ~= '' then
            existing = redis.call('GET', S .. ':idem:' .. idem)
            if existing and redis.call('EXISTS', job_key(existing)) == 0 then existing = false end
            fields[#fields + 1] = 'idem'
            fields[#fields + 1] = idem
        end
        if existing then
            out[#out + 1] = {0, existing}
        else
            local ok, err = create(id, fn, payload, due, deps, ARGV[a + 5], fields,
                                   ARGV[a + 7] == '1')
            if ok then
                if idem ~= '' then redis.call('SET', S .. ':idem:' .. idem, id) end
                out[#out + 1] = {1, id}
            else
                out[#out + 1] = {-1, 'ERR redcoord jobs: ' .. err}
            end
        end
    end
end
flush()
return out
