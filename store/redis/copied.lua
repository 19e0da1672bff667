-- Removes the entry ARGV[3] from the set of lookup copies to make KEYS[2]
-- when the record of the key ARGV[1] in the keys hash KEYS[1] is still
-- ARGV[2] (the one copied; "": none): 1, else 0 (the key changed
-- meanwhile: the copy is made again).
if (redis.call('HGET', KEYS[1], ARGV[1]) or '') ~= ARGV[2] then return 0 end
redis.call('SREM', KEYS[2], ARGV[3])
return 1
