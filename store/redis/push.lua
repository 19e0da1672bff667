-- Adds ARGV[2], ARGV[4], ... to field u of the counters KEYS[2], KEYS[3],
-- ..., a counter without an expiry (a new one) expiring at ARGV[3],
-- ARGV[5], ... (Unix ms), unless the token KEYS[1] was seen (it is kept
-- ARGV[1] ms). A count never goes below 0, and a key that holds something
-- else than a counter is left alone. The reply: {0} when the token was seen,
-- else 1 and per counter its u and g after the push (-1 and 0: left alone).
local bad = {}
for i = 2, #KEYS do
  local t = redis.call('TYPE', KEYS[i])['ok']
  bad[i] = t ~= 'hash' and t ~= 'none'
end
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return {0} end
local out = {1}
for i = 2, #KEYS do
  if bad[i] then
    out[#out + 1] = -1
    out[#out + 1] = 0
  else
    local u = redis.call('HINCRBY', KEYS[i], 'u', ARGV[2 * i - 2])
    if u < 0 then
      redis.call('HSET', KEYS[i], 'u', 0)
      u = 0
    end
    if redis.call('PTTL', KEYS[i]) < 0 then
      redis.call('PEXPIREAT', KEYS[i], ARGV[2 * i - 1])
    end
    out[#out + 1] = u
    out[#out + 1] = tonumber(redis.call('HGET', KEYS[i], 'g')) or 0
  end
end
return out
