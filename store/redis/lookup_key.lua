-- Returns the record, in the keys hash KEYS[1], of the key whose hash is
-- ARGV[1] in the index KEYS[2]; the record must hold that hash (an index
-- entry can never lend another key's record).
local id = redis.call('HGET', KEYS[2], ARGV[1])
if not id then return false end
local rec = redis.call('HGET', KEYS[1], id)
if not rec or cjson.decode(rec)['hash'] ~= ARGV[1] then return false end
return rec
