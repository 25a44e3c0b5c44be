-- limits.lua: a step's limits (limits: in YAML), shared by every
-- satellite. Its keys share one hash tag of their own per step, so the
-- limits hold over every partition of the step, also on a Redis Cluster.
-- Running permits are leases: a sorted set of lease ids (the token's
-- stream entry) scored by when the lease ends, so a dead satellite's
-- permits come back once their lease (the visibility timeout) runs out.
-- The rate is a sliding window: a sorted set of grants scored by when
-- they were made; a grant is made only while fewer than the rate's count
-- were made after (now - period), whatever the callers' order, so no
-- window of one period holds more grants than the count. The per-key
-- limits (a fairness key from the token's input) are the same, on a pair
-- of sorted sets per key, which expire once idle.
-- KEYS[1] -> running leases              dsat:{limits:<pipeline>/<step>}:running
-- KEYS[2] -> rate grants                  dsat:{limits:<pipeline>/<step>}:rate
-- KEYS[1+2k] -> key k's running leases    dsat:{limits:<pipeline>/<step>}:k:<key>:running
-- KEYS[2+2k] -> key k's rate grants       dsat:{limits:<pipeline>/<step>}:k:<key>:rate
-- KEYS[#KEYS] (an odd count of keys; only for a step with running_per_key)
--            -> the keys' index           dsat:{limits:<pipeline>/<step>}:keys
--            (sorted set: fairness key -> its running leases when last
--            counted, an upper bound: a lease that ends unreleased is not
--            counted off until the key is counted again; expires with the
--            last lease)
-- KEYS[3] (only for a step without a fairness key)
--            -> rate batches              dsat:{limits:<pipeline>/<step>}:batches
--            (a batch of the step's rate permits is one member
--            <tag>|<count>, scored at the end of its life: it counts
--            <count> grants in the rate's window)
-- ARGV[1] -> operation: acquire, batch, release, renew, usage or keys
-- ARGV[2] -> now (ms); empty: Redis's clock (TIME)
-- ARGV[3] -> running: the most leases at once (0: no running limit)
-- ARGV[4] -> rate: the most grants per period (0: no rate limit)
-- ARGV[5] -> the rate's period (ms)
-- ARGV[6] -> a lease's length (ms)
-- ARGV[7] -> running_per_key (0: none)
-- ARGV[8] -> rate_per_key: the most grants per period and key (0: none)
-- ARGV[9] -> rate_per_key's period (ms)
-- ARGV[10] -> m: how many fairness keys follow (0 without the index)
-- ARGV[11..10+m] -> the fairness key k's name, for k = 1..m (the index's members)
-- ARGV[11+m..] -> acquire, release, renew: pairs (lease id, k), k the index
--   of the id's key in KEYS (0: the step has no key), ids in the order wanted
-- batch (a step whose only limit is its rate; issue 16), m = 0: ARGV[11] ->
--   the holder (unique per call: satellite and sequence number), ARGV[12]
--   -> how many permits are wanted, ARGV[13] -> their life (ms): each may be
--   used for an ACK timed from the grant to the grant + life, so the batch
--   is scored (counted in the window) at the grant + life; ARGV[14..16] ->
--   a former batch's tag, its count and how many of its permits were used
--   (the others are given back; ARGV[14] empty: none). tag: <holder>@<now>.
-- Returns: acquire: {granted, free, wait, now}: granted is a string of
-- '1' (permit granted; an id that holds a lease already keeps it and
-- takes no new grant) or '0' per id: an id whose key is at its limits is
-- passed over, the others go on; at the step's own limits every id after
-- is refused. free: the step's permits left now (-1: no step limit);
-- wait: when free is 0, ms until a grant may be possible again (the rate
-- window's oldest grant leaving it; 100 for a running limit); now: the
-- grant's time (ms). Acquire with no id is a look. release, renew: the
-- number of ids; usage: {running leases, grants in the current window};
-- keys: the running leases of each key 1..m, counted now (the index is set
-- to them); batch: {granted count, free, wait, now, tag}.
local op, now = ARGV[1], tonumber(ARGV[2])
if not now then -- Redis's clock: a grant comes after every release before it
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local running, rate, per, lease = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local kRunning, kRate, kPer = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local nkeys = tonumber(ARGV[10])
local first = 11 + nkeys -- the first pair
local kidx = (kRunning > 0 and #KEYS % 2 == 1) and KEYS[#KEYS] or nil
local batches = (kRunning == 0 and kRate == 0) and KEYS[3] or nil

-- index(k, n): key k has n running leases now (in the index, if any).
local function index(k, n)
  if not kidx then return end
  if n > 0 then
    redis.call('ZADD', kidx, n, ARGV[10 + k])
  else
    redis.call('ZREM', kidx, ARGV[10 + k])
  end
end
-- The index lives as long as the longest lease.
local function keepIndex()
  if kidx and redis.call('PTTL', kidx) < lease then redis.call('PEXPIRE', kidx, lease) end
end

if op == 'keys' then
  local out = {}
  for k = 1, nkeys do
    redis.call('ZREMRANGEBYSCORE', KEYS[1 + 2 * k], '-inf', now)
    out[k] = redis.call('ZCARD', KEYS[1 + 2 * k])
    index(k, out[k])
  end
  return out
end

if op == 'release' or op == 'renew' then
  local n = 0
  local touched = {}
  for i = first, #ARGV, 2 do
    local id, k = ARGV[i], tonumber(ARGV[i + 1])
    local sets = {}
    if running > 0 then sets[#sets + 1] = KEYS[1] end
    if k > 0 and kRunning > 0 then
      sets[#sets + 1] = KEYS[1 + 2 * k]
      touched[k] = true
    end
    for _, key in ipairs(sets) do
      if op == 'release' then
        redis.call('ZREM', key, id)
      elseif redis.call('ZSCORE', key, id) then
        redis.call('ZADD', key, now + lease, id)
        if key ~= KEYS[1] then redis.call('PEXPIRE', key, lease) end
      end
    end
    n = n + 1
  end
  if op == 'release' then
    for k in pairs(touched) do index(k, redis.call('ZCARD', KEYS[1 + 2 * k])) end
  elseif next(touched) then
    keepIndex()
  end
  return n
end

if op == 'batch' and batches and ARGV[first + 3] ~= '' then -- unused permits come back first
  local old, used = ARGV[first + 3] .. '|' .. ARGV[first + 4], tonumber(ARGV[first + 5])
  local score = redis.call('ZSCORE', batches, old)
  if score then
    redis.call('ZREM', batches, old)
    if used > 0 then redis.call('ZADD', batches, score, ARGV[first + 3] .. '|' .. used) end
  end
end

local free, rfree = -1, -1
if running > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  free = running - redis.call('ZCARD', KEYS[1])
end
-- The oldest grant in the rate's window: when it leaves it, permits free.
local function oldest()
  local t = tonumber(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. (now - per), '+inf', 'WITHSCORES', 'LIMIT', 0, 1)[2] or math.huge)
  if batches then
    local b = redis.call('ZRANGEBYSCORE', batches, '(' .. (now - per), '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    t = math.min(t, tonumber(b[2] or math.huge))
  end
  return t == math.huge and now or t
end
if rate > 0 then
  -- Kept for two periods: a caller whose clock is behind still counts them.
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 2 * per)
  rfree = rate - redis.call('ZCOUNT', KEYS[2], '(' .. (now - per), '+inf')
  if batches then
    redis.call('ZREMRANGEBYSCORE', batches, '-inf', now - 2 * per)
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', batches, '(' .. (now - per), '+inf')) do
      rfree = rfree - tonumber(string.match(m, '|(%d+)$'))
    end
  end
end
if op == 'usage' then
  return {running > 0 and running - free or 0, rate > 0 and rate - rfree or 0}
end
if op == 'batch' then
  if not batches then return redis.error_reply('limits.lua: batch: the step has a fairness key') end
  local want, life = tonumber(ARGV[first + 1]), tonumber(ARGV[first + 2])
  local g = math.max(0, math.min(want, rfree))
  local tag = ARGV[first] .. '@' .. now
  if g > 0 then
    redis.call('ZADD', batches, now + life, tag .. '|' .. g)
    rfree = rfree - g
  end
  local wait = 0
  if rfree <= 0 then wait = math.max(1, oldest() + per - now) end
  return {g, math.max(0, rfree), wait, now, tag}
end
if op ~= 'acquire' then
  return redis.error_reply('limits.lua: unknown operation ' .. tostring(op))
end

-- The permits left of key k (running, rate), read on its first id.
local kfree = {}
local function keyFree(k)
  if not kfree[k] then
    local f = {-1, -1}
    if kRunning > 0 then
      redis.call('ZREMRANGEBYSCORE', KEYS[1 + 2 * k], '-inf', now)
      f[1] = kRunning - redis.call('ZCARD', KEYS[1 + 2 * k])
    end
    if kRate > 0 then
      redis.call('ZREMRANGEBYSCORE', KEYS[2 + 2 * k], '-inf', now - 2 * kPer)
      f[2] = kRate - redis.call('ZCOUNT', KEYS[2 + 2 * k], '(' .. (now - kPer), '+inf')
    end
    kfree[k] = f
  end
  return kfree[k]
end

local granted = {}
for i = first, #ARGV, 2 do
  local id, k = ARGV[i], tonumber(ARGV[i + 1])
  local ok = '0'
  if (running > 0 or (k > 0 and kRunning > 0)) and redis.call('ZSCORE', (running > 0) and KEYS[1] or KEYS[1 + 2 * k], id) then
    ok = '1' -- read again or reclaimed: keeps its permit
    if running > 0 then redis.call('ZADD', KEYS[1], now + lease, id) end
    if k > 0 and kRunning > 0 then redis.call('ZADD', KEYS[1 + 2 * k], now + lease, id) end
  else
    if (running > 0 and free <= 0) or (rate > 0 and rfree <= 0) then break end
    local f = k > 0 and keyFree(k) or {-1, -1}
    if f[1] ~= 0 and f[2] ~= 0 then
      ok = '1'
      if running > 0 then
        redis.call('ZADD', KEYS[1], now + lease, id)
        free = free - 1
      end
      if rate > 0 then
        redis.call('ZADD', KEYS[2], now, id .. '@' .. now)
        rfree = rfree - 1
      end
      if f[1] > 0 then
        redis.call('ZADD', KEYS[1 + 2 * k], now + lease, id)
        redis.call('PEXPIRE', KEYS[1 + 2 * k], lease)
        f[1] = f[1] - 1
      end
      if f[2] > 0 then
        redis.call('ZADD', KEYS[2 + 2 * k], now, id .. '@' .. now)
        redis.call('PEXPIRE', KEYS[2 + 2 * k], 2 * kPer)
        f[2] = f[2] - 1
      end
    end
  end
  granted[#granted + 1] = ok
end
for _ = #granted + 1, (#ARGV - first + 1) / 2 do granted[#granted + 1] = '0' end
if kidx and kRunning > 0 then
  for k, f in pairs(kfree) do index(k, kRunning - f[1]) end
  keepIndex()
end

local left = -1
if running > 0 then left = math.max(0, free) end
if rate > 0 and (left < 0 or rfree < left) then left = math.max(0, rfree) end
local wait = 0
if running > 0 and free <= 0 then wait = 100 end
if rate > 0 and rfree <= 0 then
  wait = math.max(wait, 1, oldest() + per - now)
end
return {table.concat(granted), left, wait, now}
