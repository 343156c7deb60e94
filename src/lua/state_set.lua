-- Sets the shared state value KEYS[1] to the JSON text ARGV[1] for ARGV[2] ms and announces it
-- on the change channel ARGV[3], in one step: a watcher never misses a write it could read.
-- Returns 1.
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 1
