-- Adds outbox entries: for each i, the entry ARGV[2i+1] with record
-- ARGV[2i+2], unless its id was seen (the key KEYS[4+i], kept ARGV[2] ms).
-- KEYS[1] holds the records, KEYS[2] the failed attempts, KEYS[3] when each
-- entry is due and KEYS[4] when it was added (ARGV[1], Unix ms). Returns 1
-- when one entry was new.
local added = 0
for i = 1, #KEYS - 4 do
  local field = ARGV[2 * i + 1]
  if redis.call('SET', KEYS[4 + i], '1', 'NX', 'PX', ARGV[2]) then
    redis.call('HSET', KEYS[1], field, ARGV[2 * i + 2])
    redis.call('HDEL', KEYS[2], field)
    redis.call('ZADD', KEYS[3], ARGV[1], field)
    redis.call('ZADD', KEYS[4], ARGV[1], field)
    added = 1
  end
end
return added
