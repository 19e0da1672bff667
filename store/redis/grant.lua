-- Adds ARGV[1] to the grant of counter KEYS[1], kept until ARGV[2] (Unix
-- milliseconds) at least.
redis.call('HINCRBY', KEYS[1], 'g', ARGV[1])
local at = tonumber(ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ttl < 0 or now + ttl < at then redis.call('PEXPIREAT', KEYS[1], at) end
return 1
