-- Gives back the items of dead consumers. KEYS[1] = the queue, KEYS[2] = its set of consumers,
-- KEYS[3] = its redelivery counter, KEYS[4..] = the processing lists of the consumers ARGV[2..]
-- (in that order), found without a heartbeat by the caller (heartbeats live in the node
-- registry's slot, so a Redis Cluster cannot read them here). ARGV[1] = the queue's channel.
-- Moves each processing list to the consumers' end of the queue, oldest item taken first, and
-- forgets the consumer; adds the items moved to the counter (kept 30 days after the last
-- redelivery). Returns the number of items moved.
local moved = 0
for i = 4, #KEYS do
    while redis.call('LMOVE', KEYS[i], KEYS[1], 'LEFT', 'RIGHT') do
        moved = moved + 1
    end
    redis.call('SREM', KEYS[2], ARGV[i - 2])
end
if moved > 0 then
    redis.call('INCRBY', KEYS[3], moved)
    redis.call('PEXPIRE', KEYS[3], 2592000000)
    redis.call('PUBLISH', ARGV[1], '1')
end
return moved
