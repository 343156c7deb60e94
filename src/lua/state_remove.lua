-- Deletes the shared state value KEYS[1] and, when there was one, announces the removal with an
-- empty message on the change channel ARGV[1]. Returns 1 when deleted, 0 when there was none.
if redis.call('DEL', KEYS[1]) == 1 then
    redis.call('PUBLISH', ARGV[1], '')
    return 1
end
return 0
