-- limits.lua: a step's limits (limits: in YAML), shared by every
-- satellite. Its two keys share one hash tag of their own per step, so the
-- limits hold over every partition of the step, also on a Redis Cluster.
-- Running permits are leases: a sorted set of lease ids (the token's
-- stream entry) scored by when the lease ends, so a dead satellite's
-- permits come back once their lease (the visibility timeout) runs out.
-- The rate is a sliding window: a sorted set of grants scored by when
-- they were made; a grant is made only while fewer than the rate's count
-- were made after (now - period), whatever the callers' order, so no
-- window of one period holds more grants than the count.
-- KEYS[1] -> running leases              dsat:{limits:<pipeline>/<step>}:running
-- KEYS[2] -> rate grants                  dsat:{limits:<pipeline>/<step>}:rate
-- ARGV[1] -> operation: acquire, release, renew or usage
-- ARGV[2] -> now (ms); empty: Redis's clock (TIME)
-- ARGV[3] -> running: the most leases at once (0: no running limit)
-- ARGV[4] -> rate: the most grants per period (0: no rate limit)
-- ARGV[5] -> the rate's period (ms)
-- ARGV[6] -> a lease's length (ms)
-- ARGV[7..] -> acquire, release, renew: lease ids, in the order wanted
-- Returns: acquire: {granted, free, wait, now}: the first `granted` ids got a
-- permit (an id that holds a lease already keeps it and takes no new
-- grant); free: the permits left now (-1: no limit); wait: when free is
-- 0, ms until a grant may be possible again (the rate window's oldest
-- grant leaving it; 100 for a running limit); now: the grant's time
-- (ms). Acquire with no id is a
-- look. release, renew: the number of leases removed or extended; usage:
-- {running leases, grants in the current window}.
local op, now = ARGV[1], tonumber(ARGV[2])
if not now then -- Redis's clock: a grant comes after every release before it
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local running, rate, per, lease = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])

if op == 'release' then
  if #ARGV < 7 then return 0 end
  return redis.call('ZREM', KEYS[1], unpack(ARGV, 7))
elseif op == 'renew' then
  local n = 0
  for i = 7, #ARGV do
    if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
      redis.call('ZADD', KEYS[1], now + lease, ARGV[i])
      n = n + 1
    end
  end
  return n
end

local free, rfree = -1, -1
if running > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  free = running - redis.call('ZCARD', KEYS[1])
end
if rate > 0 then
  -- Kept for two periods: a caller whose clock is behind still counts them.
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 2 * per)
  rfree = rate - redis.call('ZCOUNT', KEYS[2], '(' .. (now - per), '+inf')
end
if op == 'usage' then
  return {running > 0 and running - free or 0, rate > 0 and rate - rfree or 0}
end
if op ~= 'acquire' then
  return redis.error_reply('limits.lua: unknown operation ' .. tostring(op))
end

local granted = 0
for i = 7, #ARGV do
  local id = ARGV[i]
  if running > 0 and redis.call('ZSCORE', KEYS[1], id) then
    redis.call('ZADD', KEYS[1], now + lease, id) -- read again or reclaimed: keeps its permit
  else
    if (running > 0 and free <= 0) or (rate > 0 and rfree <= 0) then break end
    if running > 0 then
      redis.call('ZADD', KEYS[1], now + lease, id)
      free = free - 1
    end
    if rate > 0 then
      redis.call('ZADD', KEYS[2], now, id .. '@' .. now)
      rfree = rfree - 1
    end
  end
  granted = granted + 1
end

local left = -1
if running > 0 then left = math.max(0, free) end
if rate > 0 and (left < 0 or rfree < left) then left = math.max(0, rfree) end
local wait = 0
if running > 0 and free <= 0 then wait = 100 end
if rate > 0 and rfree <= 0 then
  local oldest = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. (now - per), '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  wait = math.max(wait, 1, tonumber(oldest[2] or now) + per - now)
end
return {granted, left, wait, now}
