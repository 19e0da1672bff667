-- Returns the members of the order KEYS[1] from the lex bound ARGV[1] on, at
-- most ARGV[2], and the records of their ids in the keys hash KEYS[2] (false
-- for none); with ARGV[3] = "1" the members are customer NUL id.
local members = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], '+', 'LIMIT', 0, tonumber(ARGV[2]))
if #members == 0 then return {{}, {}} end
local ids = members
if ARGV[3] == '1' then
  ids = {}
  for i, m in ipairs(members) do ids[i] = string.sub(m, string.find(m, '\0', 1, true) + 1) end
end
return {members, redis.call('HMGET', KEYS[2], unpack(ids))}
