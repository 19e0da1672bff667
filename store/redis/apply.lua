-- Decisions, each one request's batch (policy.State.Apply), run in the order
-- given; see Apply in redis.go for the layout of KEYS and ARGV and the reply.
-- The call is one atomic step, so each decision in it is one too; a single
-- decision is a call of one.
--
-- Times are microseconds: Redis's own clock (TIME, read once per call: its
-- decisions arrived together) unless a decision's first argument gives one.
-- Bucket contents are nano-tokens and rates micro-requests per second, as in
-- policy.Throttle; numbers are Lua doubles, exact below 2^53, and written with
-- string.format('%d') (Lua's own number formatting keeps 14 digits only).
-- A bucket is a string "tokens last"; quota and usage counters are hashes
-- (u: used, g: granted). Each key costs the fewest commands: a read, and a
-- write only when it changes, once per call however many of its decisions
-- use the key (the cache below).

-- The keys and the arguments. On a cluster (spread.go) the call declares
-- one key, which routes it to its node, and passes all of them as ARGV,
-- after their count: this line is replaced there.
local KEYS, ARGV = KEYS, ARGV

local clock -- Redis's clock, once read

-- redisNow returns Redis's clock in µs, read once per call.
local function redisNow()
  if not clock then
    local t = redis.call('TIME')
    clock = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return clock
end

-- The cache of the call's strings and counters: each key is read at most
-- once, and written at most once, at the end (flush), with the value the last
-- decision left. The call is one atomic step: no one sees the states between
-- its decisions; each decision sees what the ones before it left, as in calls
-- of their own, and the call leaves what those calls would have.
local strs, counters, dirty = {}, {}, {}

-- get returns the string at key (false: none).
local function get(key)
  local e = strs[key]
  if not e then
    e = {v = redis.call('GET', key)}
    strs[key] = e
  end
  return e.v
end

-- set makes v the string at key, expiring px ms after the flush (nil:
-- never); get(key) came first.
local function set(key, v, px)
  local e = strs[key]
  if not e.dirty then
    e.dirty = true
    dirty[#dirty + 1] = key
  end
  e.v, e.px = v, px
end

-- counter returns the entry of the counter hash at key: u and g (read only
-- when read is true), the uses added by this call so far, and the expiry of
-- a new counter.
local function counter(key, read)
  local e = counters[key]
  if not e then
    e = {add = 0}
    counters[key] = e
    dirty[#dirty + 1] = e
    e.key = key
  end
  if read and not e.u then
    local st = redis.call('HMGET', key, 'u', 'g')
    e.u, e.g = (tonumber(st[1]) or 0) + e.add, tonumber(st[2]) or 0
  end
  return e
end

-- use adds one to the counter's u; a new counter (u was 0) expires at
-- expireAt (Unix ms).
local function use(key, expireAt)
  local e = counter(key, false)
  if e.u then
    e.u = e.u + 1
  end
  e.add = e.add + 1
  e.expireAt = e.expireAt or expireAt
end

-- flush writes what the call changed: each string once, each counter's uses
-- in one HINCRBY, which returns them all when the counter is new.
local function flush()
  for _, d in ipairs(dirty) do
    if type(d) == 'table' then
      if d.add > 0 and redis.call('HINCRBY', d.key, 'u', d.add) == d.add then
        redis.call('PEXPIREAT', d.key, d.expireAt) -- a new counter
      end
    else
      local e = strs[d]
      if e.px then
        redis.call('SET', d, e.v, 'PX', e.px)
      else
        redis.call('SET', d, e.v)
      end
    end
  end
end

-- decide runs the decision whose keys follow KEYS[k] and whose arguments
-- begin at ARGV[a]; it returns its reply and the k and a of the next one.
local function decide(k, a)
  local now
  local first = a -- the decision's first argument: its instant, or ''
  if ARGV[a] ~= '' then
    now = tonumber(ARGV[a])
  else
    now = redisNow()
  end
  local deadline = tonumber(ARGV[a + 1]) -- µs on Redis's clock, 0: none
  local nh, no, flags = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local usage = flags % 2 -- 1: the last key is the usage counter
  local denied = flags >= 2 -- a limit checked elsewhere denies: take nothing
  local usageAt = tonumber(ARGV[a + 5]) -- Unix ms
  local leaseTTL = tonumber(ARGV[a + 6]) -- µs
  local nextK, nextA = k + nh + no + usage, a + 7 + 2 * nh + 3 * no
  a = a + 7 -- next ARGV
  local reply = {0, 0, now}

  -- 0. A decision that reaches Redis after its caller gave up on it takes
  -- nothing: its caller answered without it (and may have decided it
  -- locally).
  if deadline > 0 and redisNow() > deadline then
    reply[1] = -1
    return reply, nextK, nextA
  end

  -- 1. WAF hits, in order, up to the first over its limit: sliding-window
  -- counters of two fixed windows, kept as "w c p" (the index of the current
  -- window, its count, the previous one's count).
  for i = 1, nh do
    local key, limit, win = KEYS[k + i], tonumber(ARGV[a]), tonumber(ARGV[a + 1])
    local watch = limit < 0 -- counted, never blocks
    a = a + 2
    local idx = math.floor(now / win)
    local elapsed = now - idx * win
    local w, c, p
    local st = get(key)
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
    local px -- two windows; none on a caller's clock (see the buckets)
    if ARGV[first] == '' then
      px = math.ceil(2 * win / 1000) + 1000
    end
    set(key, string.format('%d %d %d', w, c, p), px)
    local count = c + math.floor(p * (win - elapsed) / win)
    reply[#reply + 1] = count
    if count > limit and not watch then
      reply[1] = i
      return reply, nextK, nextA
    end
  end

  -- 2. Check every op; take only when all the enforced ones admit: from
  -- each of them, and from each shadow op (kind in upper case) that admits.
  -- A lease ("nN") takes up to N tokens of a bucket, at least one to
  -- admit; a negative N gives -N back.
  local ops, all = {}, not denied
  for i = 1, no do
    local key, kind = KEYS[k + nh + i], ARGV[a]
    local op = {k = key, shadow = kind == 'B' or kind == 'Q', take = 1}
    if string.sub(kind, 1, 1) == 'n' then
      op.take, kind = tonumber(string.sub(kind, 2)), 'b'
    end
    kind = string.lower(kind)
    op.kind = kind
    if kind == 'b' then
      local rate, burst = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
      local full = burst * 1000000000
      local tokens, last
      local st = get(key)
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
      op.ok = tokens >= 1000000000 or op.take < 0
      reply[#reply + 1] = tokens
      reply[#reply + 1] = last
    elseif kind == 'c' then
      -- A concurrency cap: a sorted set of leases scored by their expiry;
      -- those of holders that vanished without a release have run out.
      local cap = tonumber(ARGV[a + 1])
      op.lease = ARGV[a + 2]
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
      local held = redis.call('ZCARD', key)
      op.ok = held < cap
      reply[#reply + 1] = held
      reply[#reply + 1] = 0
    else
      local quota, expireAt = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
      local st = counter(key, true)
      local used, granted = st.u, st.g
      op.expireAt = expireAt
      op.ok = used < quota + granted
      reply[#reply + 1] = used
      reply[#reply + 1] = granted
    end
    all = all and (op.ok or op.shadow)
    ops[i] = op
    a = a + 3
  end

  if no > 0 and all then
    reply[2] = 1
    for i = 1, no do
      local op = ops[i]
      if not op.ok then
        -- a shadow op that would deny: takes nothing
      elseif op.kind == 'b' then
        local n = op.take
        if n > 1 then
          n = math.min(n, math.floor(op.tokens / 1000000000))
        end
        local left = math.min(op.tokens - n * 1000000000, op.full)
        local v = string.format('%d %d', left, op.last)
        if op.rate > 0 and ARGV[first] == '' then
          -- Dropped once full: a full bucket carries no information.
          -- Not on a caller's clock (tests over fixed instants): Redis
          -- expires keys on its own clock, which that one does not follow.
          set(op.k, v, math.ceil((op.full - left) / op.rate) + 1000)
        else
          set(op.k, v)
        end
      elseif op.kind == 'c' then
        redis.call('ZADD', op.k, now + leaseTTL, op.lease)
        redis.call('PEXPIRE', op.k, math.ceil(leaseTTL / 1000) + 1000)
      else
        use(op.k, op.expireAt)
      end
    end
  end

  -- 3. The usage-history counter of an admitted request.
  if usage == 1 and not denied and (no == 0 or all) then
    use(KEYS[k + nh + no + 1], usageAt)
  end
  return reply, nextK, nextA
end

-- Each decision's reply, flat: its length, then its values.
local out, n, k, a = {}, 0, 0, 1
while a <= #ARGV do
  local reply
  reply, k, a = decide(k, a)
  n = n + 1
  out[n] = #reply
  for i = 1, #reply do
    out[n + i] = reply[i]
  end
  n = n + #reply
end
flush()
return out
