-- Makes the outbox entry ARGV[1] due at ARGV[2] (Unix ms; sorted set
-- KEYS[3]) with one more failed attempt (hash KEYS[2]), when it still has a
-- record (hash KEYS[1]).
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
return 1
