-- breaker.lua: a step's circuit breaker, shared by every satellite. The
-- state is a field of one hash: absent (closed), "o|<until ms>" (open: no
-- new token is begun until then) or "h|<owner>|<until ms>" (half open: the
-- owner runs one probe token, its lease ending then). Failed attempts are
-- counted in a string that expires after the window. Each transition is
-- counted in a third hash (for the metrics).
-- KEYS[1] -> breaker states               dsat:{breakers}:state
-- KEYS[2] -> the step's failure count     dsat:{breakers}:fails:<pipeline>/<step>
-- KEYS[3] -> transition counts            dsat:{breakers}:transitions
--            (field "<pipeline>/<step>|<to>", to: open, half_open or closed)
-- ARGV[1] -> operation: fail, ok or probe
-- ARGV[2] -> the step's field: <pipeline>/<step>
-- ARGV[3] -> now (ms)
-- ARGV[4] -> fail: failures that open it; probe: the prober's name
-- ARGV[5] -> fail: the window (ms); probe: the probe's lease (ms)
-- ARGV[6] -> fail: how long it stays open (ms)
-- Returns: fail: "opened" (it opened now), "open" (it was open or half
-- open: a failed probe opens it again, "opened") or "closed"; ok: "closed"
-- (a half-open breaker closed now) or "" (nothing changed); probe: 1 when
-- the caller may run one probe token now (2 when it was open until now:
-- the breaker went half open), else 0.
local op, field, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local st = redis.call('HGET', KEYS[1], field)
local kind, a, b = false, false, false
if st then kind, a, b = string.match(st, '^(%a)|([^|]*)|?(.*)$') end
local function moved(to) redis.call('HINCRBY', KEYS[3], field .. '|' .. to, 1) end

if op == 'fail' then
  local open_for = tonumber(ARGV[6])
  if kind == 'h' then
    redis.call('HSET', KEYS[1], field, 'o|' .. (now + open_for))
    redis.call('DEL', KEYS[2])
    moved('open')
    return 'opened'
  end
  if kind == 'o' then return 'open' end
  local n = redis.call('INCR', KEYS[2])
  if n == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[5]) end
  if n >= tonumber(ARGV[4]) then
    redis.call('HSET', KEYS[1], field, 'o|' .. (now + open_for))
    redis.call('DEL', KEYS[2])
    moved('open')
    return 'opened'
  end
  return 'closed'
elseif op == 'ok' then
  if kind == 'h' then
    redis.call('HDEL', KEYS[1], field)
    redis.call('DEL', KEYS[2])
    moved('closed')
    return 'closed'
  end
  return ''
elseif op == 'probe' then
  local due = false
  if kind == 'o' then due = tonumber(a) <= now end
  if kind == 'h' then due = tonumber(b) <= now end -- the last prober's lease ran out
  if not due then return 0 end
  redis.call('HSET', KEYS[1], field, 'h|' .. ARGV[4] .. '|' .. (now + tonumber(ARGV[5])))
  if kind == 'o' then
    moved('half_open')
    return 2
  end
  return 1 -- a takeover: it stays half open
end
return redis.error_reply('breaker.lua: unknown operation ' .. tostring(op))
