-- save_key.lua without the check of what it replaces and without the
-- announcement (the customer is ARGV[4]).
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local o = cjson.decode(old)
  redis.call('HDEL', KEYS[2], o['hash'])
  redis.call('ZREM', KEYS[5], o['customer'] .. '\0' .. ARGV[1])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[4], 0, ARGV[1])
redis.call('ZADD', KEYS[5], 0, ARGV[4] .. '\0' .. ARGV[1])
return 1
