-- Replaces the key ARGV[1] (record ARGV[2], hash ARGV[3], customer ARGV[5])
-- in the keys hash KEYS[1], its hash index KEYS[2] and its orders KEYS[4]
-- (ids) and KEYS[5] (customer NUL id), when the record held is ARGV[4] ("":
-- none; "*": whatever it is, for imports); 0 when it is not. With a tag
-- ARGV[6], the change is announced on the channel KEYS[3] (keywatch.go);
-- an import announces once, after its keys. With a sixth key (a cluster),
-- the key's id and its old hash join that set: its lookup copy is to be
-- made (keycopies.go); with a seventh and an eighth (layout=one-slot), only
-- when one of those exists (copies were made, or their making began).
local old = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[4] ~= '*' and (old or '') ~= ARGV[4] then return 0 end
if old then
  local o = cjson.decode(old)
  redis.call('HDEL', KEYS[2], o['hash'])
  redis.call('ZREM', KEYS[5], o['customer'] .. '\0' .. ARGV[1])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[4], 0, ARGV[1])
redis.call('ZADD', KEYS[5], 0, ARGV[5] .. '\0' .. ARGV[1])
if KEYS[6] and (not KEYS[7] or redis.call('EXISTS', KEYS[7], KEYS[8]) > 0) then
  -- On a cluster (keycopies.go): the lookup copies to make.
  redis.call('SADD', KEYS[6], ARGV[1] .. '\0' .. (old and cjson.decode(old)['hash'] or ''))
end
if ARGV[6] ~= '' then redis.call('PUBLISH', KEYS[3], ARGV[6]) end
return 1
