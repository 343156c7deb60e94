-- The wake-up of a script's resource: the publish command is the script's last argument,
-- 'PUBLISH', or 'SPUBLISH' on a Redis Cluster (the channel shares its resource's hash tag, so
-- the message stays on the resource's shard and reaches the waiters' SSUBSCRIBE there).
local publish_command = ARGV[#ARGV]
if publish_command ~= 'PUBLISH' and publish_command ~= 'SPUBLISH' then
    return redis.error_reply('ERR redcoord: the last argument must be PUBLISH or SPUBLISH')
end
local function publish(channel, message)
    redis.call(publish_command, channel, message)
end
