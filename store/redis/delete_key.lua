-- Removes the key ARGV[1] (KEYS as in save_key.lua, and announced as it
-- does, with the tag ARGV[2]); 1 when there was one.
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 0 end
local o = cjson.decode(old)
redis.call('HDEL', KEYS[2], o['hash'])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], o['customer'] .. '\0' .. ARGV[1])
if KEYS[6] and (not KEYS[7] or redis.call('EXISTS', KEYS[7], KEYS[8]) > 0) then
  redis.call('SADD', KEYS[6], ARGV[1] .. '\0' .. o['hash'])
end
if ARGV[2] ~= '' then redis.call('PUBLISH', KEYS[3], ARGV[2]) end
return 1
