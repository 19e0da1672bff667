-- One request's batch as one atomic step (policy.State.Apply); see apply.go
-- for the layout of KEYS and ARGV and the reply.
--
-- Times are microseconds: Redis's own clock (TIME) unless ARGV[1] gives one.
-- Bucket contents are nano-tokens and rates micro-requests per second, as in
-- policy.Throttle; numbers are Lua doubles, exact below 2^53, and written with
-- string.format('%d') (Lua's own number formatting keeps 14 digits only).
-- A bucket is a string "tokens last"; quota and usage counters are hashes
-- (u: used, g: granted). Each key costs the fewest commands: a read, and a
-- write only when it changes.

local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local nh, no, usage = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local leaseTTL = tonumber(ARGV[6]) -- µs
local a = 7 -- next ARGV
local reply = {0, 0, now}

-- 1. WAF hits, in order, up to the first over its limit: sliding-window
-- counters of two fixed windows, kept as "w c p" (the index of the current
-- window, its count, the previous one's count).
for i = 1, nh do
  local k, limit, win = KEYS[i], tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  local idx = math.floor(now / win)
  local elapsed = now - idx * win
  local w, c, p
  local st = redis.call('GET', k)
  if st then
    w, c, p = string.match(st, '^(%d+) (%d+) (%d+)$')
    w, c, p = tonumber(w), tonumber(c), tonumber(p)
  end
  if w == nil then
    w, c, p = idx, 0, 0
  elseif idx == w + 1 then
    w, c, p = idx, 0, c
  elseif idx > w + 1 then
    w, c, p = idx, 0, 0
  elseif idx < w then
    elapsed = 0 -- the clock went back: count into the current window
  end
  c = c + 1
  redis.call('SET', k, string.format('%d %d %d', w, c, p), 'PX', math.ceil(2 * win / 1000) + 1000)
  local count = c + math.floor(p * (win - elapsed) / win)
  reply[#reply + 1] = count
  if count > limit then
    reply[1] = i
    return reply
  end
end

-- 2. Check every op; take from each only when all admit.
local ops, all = {}, true
for i = 1, no do
  local k, kind = KEYS[nh + i], ARGV[a]
  local op = {k = k, kind = kind}
  if kind == 'b' then
    local rate, burst = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    local full = burst * 1000000000
    local tokens, last
    local st = redis.call('GET', k)
    if st then
      tokens, last = string.match(st, '^(%d+) (%d+)$')
      tokens, last = tonumber(tokens), tonumber(last)
    end
    -- policy.Throttle.At: a new bucket is full; a clock that goes back
    -- refills nothing and never moves last back.
    if last == nil then
      tokens, last = full, now
    elseif now > last then
      if tokens < full then
        -- add = rate * dt / 1000 nano-tokens, floored, in two exact parts.
        local dt = now - last
        local q = math.floor(dt / 1000)
        local add = rate * q
        if add < full - tokens then
          add = add + math.floor(rate * (dt - q * 1000) / 1000)
        end
        if add >= full - tokens then
          tokens = full
        else
          tokens = tokens + add
        end
      else
        tokens = full
      end
      last = now
    end
    op.rate, op.full, op.tokens, op.last = rate, full, tokens, last
    all = all and tokens >= 1000000000
    reply[#reply + 1] = tokens
    reply[#reply + 1] = last
  elseif kind == 'c' then
    -- A concurrency cap: a sorted set of leases scored by their expiry;
    -- those of holders that vanished without a release have run out.
    local cap = tonumber(ARGV[a + 1])
    op.lease = ARGV[a + 2]
    redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
    local held = redis.call('ZCARD', k)
    all = all and held < cap
    reply[#reply + 1] = held
    reply[#reply + 1] = 0
  else
    local quota, expireAt = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    local st = redis.call('HMGET', k, 'u', 'g')
    local used, granted = tonumber(st[1]) or 0, tonumber(st[2]) or 0
    op.expireAt = expireAt
    all = all and used < quota + granted
    reply[#reply + 1] = used
    reply[#reply + 1] = granted
  end
  ops[i] = op
  a = a + 3
end

if no > 0 and all then
  reply[2] = 1
  for i = 1, no do
    local op = ops[i]
    if op.kind == 'b' then
      local left = op.tokens - 1000000000
      local v = string.format('%d %d', left, op.last)
      if op.rate > 0 then
        -- Dropped once full: a full bucket carries no information.
        redis.call('SET', op.k, v, 'PX', math.ceil((op.full - left) / op.rate) + 1000)
      else
        redis.call('SET', op.k, v)
      end
    elseif op.kind == 'c' then
      redis.call('ZADD', op.k, now + leaseTTL, op.lease)
      redis.call('PEXPIRE', op.k, math.ceil(leaseTTL / 1000) + 1000)
    elseif redis.call('HINCRBY', op.k, 'u', 1) == 1 then
      redis.call('PEXPIREAT', op.k, op.expireAt) -- a new counter
    end
  end
end

-- 3. The usage-history counter of an admitted request.
if usage == 1 and (no == 0 or all) then
  local k = KEYS[nh + no + 1]
  if redis.call('HINCRBY', k, 'u', 1) == 1 then
    redis.call('PEXPIREAT', k, tonumber(ARGV[5]))
  end
end
return reply
