-- Returns, for each hash ARGV[i], the record in the keys hash KEYS[1] of the
-- key the index KEYS[2] gives for it, or false: none, or a record that does
-- not hold that hash (an index entry can never lend another key's record).
local out = {}
for i, hash in ipairs(ARGV) do
  out[i] = false
  local id = redis.call('HGET', KEYS[2], hash)
  if id then
    local rec = redis.call('HGET', KEYS[1], id)
    if rec and cjson.decode(rec)['hash'] == hash then out[i] = rec end
  end
end
return out
