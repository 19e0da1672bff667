-- Claims up to ARGV[2] outbox entries due at ARGV[1] (Unix ms) in the sorted
-- set KEYS[3], making them due at ARGV[3] instead, so that no other claim
-- takes them before. Returns each entry's record (hash KEYS[1]) and failed
-- attempts (hash KEYS[2]); a due entry without a record is dropped.
local out = {}
for _, field in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])) do
  local rec = redis.call('HGET', KEYS[1], field)
  if rec then
    redis.call('ZADD', KEYS[3], ARGV[3], field)
    out[#out + 1] = rec
    out[#out + 1] = tonumber(redis.call('HGET', KEYS[2], field)) or 0
  else
    redis.call('ZREM', KEYS[3], field)
  end
end
return out
