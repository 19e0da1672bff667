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

local floor, min, ceil = math.floor, math.min, math.ceil

-- num returns the number that an argument spells: most repeat from
-- decision to decision (rates, bursts, flags), and a table lookup of the
-- (interned) string costs a third of tonumber's parse.
local nums = {}
local function num(v)
  local x = nums[v]
  if not x then
    x = tonumber(v)
    nums[v] = x
  end
  return x
end

local clock -- Redis's clock, once read

-- redisNow returns Redis's clock in µs, read once per call.
local function redisNow()
  if not clock then
    local t = redis.call('TIME')
    clock = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return clock
end

-- The cache of the call's buckets, WAF windows and counters: each key is
-- read at most once, and written at most once, at the end (flush), with the
-- state the last decision left. Strings are parsed when read and formatted
-- when written, once each per call however many decisions use the key. The
-- call is one atomic step: no one sees the states between its decisions;
-- each decision sees what the ones before it left, as in calls of their own,
-- and the call leaves what those calls would have.
local strs, counters, dirty = {}, {}, {}

-- state returns the cache entry of the string at key, parsed by pattern into
-- a, b and c (nil: no key, or not of that form).
local function state(key, pattern)
  local e = strs[key]
  if not e then
    e = {}
    local v = redis.call('GET', key)
    if v then
      local a, b, c = string.match(v, pattern)
      e.a, e.b, e.c = tonumber(a), tonumber(b), tonumber(c)
    end
    strs[key] = e
  end
  return e
end

-- set makes the entry's state a, b (and c: a WAF window), expiring px ms
-- after the flush (nil: never).
local function set(key, e, px, a, b, c)
  if not e.dirty then
    e.dirty = true
    dirty[#dirty + 1] = key
  end
  e.a, e.b, e.c, e.px = a, b, c, px
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
      local v
      if e.c then
        v = string.format('%d %d %d', e.a, e.b, e.c)
      else
        v = string.format('%d %d', e.a, e.b)
      end
      if e.px then
        redis.call('SET', d, v, 'PX', e.px)
      else
        redis.call('SET', d, v)
      end
    end
  end
end

-- The reply: each decision's, flat: its length, then its values; n is
-- the last index written.
local out, n = {}, 0

-- The ops of the decision being run, in arrays reused from decision to
-- decision (no table per op): the key, whether it is shadow, the tokens a
-- take takes, its kind ('b', 'c' or 'q'), whether it admits, and its state.
local opK, opShadow, opTake, opKind, opOK = {}, {}, {}, {}, {}
local opRate, opFull, opSt, opTokens, opLast, opLease, opExpire = {}, {}, {}, {}, {}, {}, {}

-- decide runs the decision whose keys follow KEYS[k] and whose arguments
-- begin at ARGV[a], appends its reply to out, and returns the k and a of
-- the next one.
local function decide(k, a)
  local now
  local first = a -- the decision's first argument: its instant, or ''
  if ARGV[a] ~= '' then
    now = num(ARGV[a])
  else
    now = redisNow()
  end
  local deadline = num(ARGV[a + 1]) -- µs on Redis's clock, 0: none
  local nh, no, flags = num(ARGV[a + 2]), num(ARGV[a + 3]), num(ARGV[a + 4])
  local usage = flags % 2 -- 1: the last key is the usage counter
  local denied = flags >= 2 -- a limit checked elsewhere denies: take nothing
  local usageAt = num(ARGV[a + 5]) -- Unix ms
  local leaseTTL = num(ARGV[a + 6]) -- µs
  local nextK, nextA = k + nh + no + usage, a + 7 + 2 * nh + 3 * no
  a = a + 7 -- next ARGV
  -- Its reply: out[base + 1] its length, set at the end; then the index
  -- of a WAF hit that blocked (-1: too late), whether it was admitted, the
  -- instant, and a value or two per hit and op.
  local base = n
  out[base + 1], out[base + 2], out[base + 3], out[base + 4] = 3, 0, 0, now
  n = base + 4

  -- 0. A decision that reaches Redis after its caller gave up on it takes
  -- nothing: its caller answered without it (and may have decided it
  -- locally).
  if deadline > 0 and redisNow() > deadline then
    out[base + 2] = -1
    return nextK, nextA
  end

  -- 1. WAF hits, in order, up to the first over its limit: sliding-window
  -- counters of two fixed windows, kept as "w c p" (the index of the current
  -- window, its count, the previous one's count).
  for i = 1, nh do
    local key, limit, win = KEYS[k + i], num(ARGV[a]), num(ARGV[a + 1])
    local watch = limit < 0 -- counted, never blocks
    a = a + 2
    local idx = floor(now / win)
    local elapsed = now - idx * win
    local st = state(key, '^(%d+) (%d+) (%d+)$')
    local w, c, p = st.a, st.b, st.c
    if w == nil or c == nil or p == nil or w < 0 then -- none (w < 0: as for the buckets)
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
      px = ceil(2 * win / 1000) + 1000
    end
    set(key, st, px, w, c, p)
    local count = c + floor(p * (win - elapsed) / win)
    n = n + 1
    out[n] = count
    if count > limit and not watch then
      out[base + 1], out[base + 2] = n - base - 1, i
      return nextK, nextA
    end
  end

  -- 2. Check every op; take only when all the enforced ones admit: from
  -- each of them, and from each shadow op (kind in upper case) that admits.
  -- A lease ("nN") takes up to N tokens of a bucket, at least one to
  -- admit; a negative N gives -N back.
  local all = not denied
  for i = 1, no do
    local key, kind = KEYS[k + nh + i], ARGV[a]
    local take, ok = 1, false
    opK[i], opShadow[i] = key, kind == 'B' or kind == 'Q'
    if string.byte(kind) == 110 then -- 'n'
      take, kind = tonumber(string.sub(kind, 2)), 'b'
    end
    if kind == 'b' or kind == 'B' then
      opKind[i] = 'b'
      local rate, burst = num(ARGV[a + 1]), num(ARGV[a + 2])
      local full = burst * 1000000000
      local st = state(key, '^(%d+) (%d+)$')
      local tokens, last = st.a, st.b
      -- policy.Throttle.At: a new bucket is full; a clock that goes back
      -- refills nothing and never moves last back.
      -- (A negative state, only ever cached by a decision on a caller's
      -- clock before 1970, is read as none, as its string would be.)
      if last == nil or tokens == nil or last < 0 or tokens < 0 then
        tokens, last = full, now
      elseif now > last then
        if tokens < full then
          -- add = rate * dt / 1000 nano-tokens, floored, in two exact parts.
          local dt = now - last
          local q = floor(dt / 1000)
          local add = rate * q
          if add < full - tokens then
            add = add + floor(rate * (dt - q * 1000) / 1000)
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
      opRate[i], opFull[i], opSt[i], opTokens[i], opLast[i] = rate, full, st, tokens, last
      ok = tokens >= 1000000000 or take < 0
      out[n + 1], out[n + 2] = tokens, last
    elseif kind == 'c' or kind == 'C' then
      -- A concurrency cap: a sorted set of leases scored by their expiry;
      -- those of holders that vanished without a release have run out.
      opKind[i] = 'c'
      local cap = num(ARGV[a + 1])
      opLease[i] = ARGV[a + 2]
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
      local held = redis.call('ZCARD', key)
      ok = held < cap
      out[n + 1], out[n + 2] = held, 0
    else
      opKind[i] = 'q'
      local quota = num(ARGV[a + 1])
      opExpire[i] = num(ARGV[a + 2])
      local st = counter(key, true)
      ok = st.u < quota + st.g
      out[n + 1], out[n + 2] = st.u, st.g
    end
    n = n + 2
    opTake[i], opOK[i] = take, ok
    all = all and (ok or opShadow[i])
    a = a + 3
  end

  if no > 0 and all then
    out[base + 3] = 1
    for i = 1, no do
      local kind = opKind[i]
      if not opOK[i] then
        -- a shadow op that would deny: takes nothing
      elseif kind == 'b' then
        local take, tokens, full, rate = opTake[i], opTokens[i], opFull[i], opRate[i]
        if take > 1 then
          take = min(take, floor(tokens / 1000000000))
        end
        local left = min(tokens - take * 1000000000, full)
        local px
        if rate > 0 and ARGV[first] == '' then
          -- Dropped once full: a full bucket carries no information.
          -- Not on a caller's clock (tests over fixed instants): Redis
          -- expires keys on its own clock, which that one does not follow.
          px = ceil((full - left) / rate) + 1000
        end
        set(opK[i], opSt[i], px, left, opLast[i])
      elseif kind == 'c' then
        redis.call('ZADD', opK[i], now + leaseTTL, opLease[i])
        redis.call('PEXPIRE', opK[i], ceil(leaseTTL / 1000) + 1000)
      else
        use(opK[i], opExpire[i])
      end
    end
  end

  -- 3. The usage-history counter of an admitted request.
  if usage == 1 and not denied and (no == 0 or all) then
    use(KEYS[k + nh + no + 1], usageAt)
  end
  out[base + 1] = n - base - 1
  return nextK, nextA
end

local k, a = 0, 1
while a <= #ARGV do
  k, a = decide(k, a)
end
flush()
return out
