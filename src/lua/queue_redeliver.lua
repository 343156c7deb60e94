-- Gives back the items of dead consumers. KEYS[1] = the queue, KEYS[2] = its set of consumers.
-- ARGV[1] = the prefix of a processing list (the consumer id follows), ARGV[2] = the part of a
-- heartbeat key before the consumer id ("<prefix>hb:{", a "}" follows the id), ARGV[3] = the
-- queue's channel. For every consumer without heartbeat, moves
-- its processing list to the consumers' end of the queue, oldest item taken first, and forgets
-- the consumer. Returns the number of items moved.
local moved = 0
for _, consumer in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    if redis.call('EXISTS', ARGV[2] .. consumer .. '}') == 0 then
        local processing = ARGV[1] .. consumer
        while redis.call('LMOVE', processing, KEYS[1], 'LEFT', 'RIGHT') do
            moved = moved + 1
        end
        redis.call('SREM', KEYS[2], consumer)
    end
end
if moved > 0 then
    redis.call('PUBLISH', ARGV[3], '1')
end
return moved
