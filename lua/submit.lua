-- submit.lua: create a task and queue its entry token.
-- KEYS[1] -> task state hash              dsat:{T}:t:<task>
-- KEYS[2] -> task event log               dsat:{T}:t:<task>:log
-- KEYS[3] -> partition firehose           dsat:{T}:ev
-- KEYS[4] -> entry step stream            dsat:{T}:s:<entry>
-- KEYS[5] -> retry set (delayed tokens)   dsat:{T}:retry
-- KEYS[6] -> idempotency key (optional)   dsat:{T}:idem:<hash>
-- ARGV[1] -> task id
-- ARGV[2] -> now (ms)
-- ARGV[3] -> firehose cap, in events (approximate)
-- ARGV[4] -> envelope format version (X.Y)
-- ARGV[5] -> pipeline version (X.Y.Z)
-- ARGV[6] -> content type
-- ARGV[7] -> payload
-- ARGV[8] -> entry step name
-- ARGV[9] -> traceparent ("" for none)
-- ARGV[10] -> pipeline name
-- ARGV[11] -> idempotency TTL (ms)
-- ARGV[12] -> payload digest (for idempotency conflicts)
-- ARGV[13] -> run at (ms): later than now, the task is "scheduled" and its
--             entry token waits in the retry set until then (promote.lua
--             moves it to the entry stream); "" or not later: at once
-- Returns: {1, id} created; {0, id} already exists (same idempotency key and
-- payload, or this very call retried); {-5, id} idempotency key used with a
-- different payload (nothing written).
local c = context(KEYS[3], ARGV[2], ARGV[3])
new_task(c, KEYS[1], KEYS[2], ARGV[1])
c.v, c.pv, c.ct, c.trace = ARGV[4], ARGV[5], ARGV[6], ARGV[9]
local idem = KEYS[6]
if idem then
  local prev = redis.call('GET', idem)
  if prev then
    local id, digest = string.match(prev, '^(%S+) (%S+)$')
    if digest == ARGV[12] then return {0, id} end
    return {-5, id}
  end
end
if redis.call('EXISTS', c.H) == 1 then return {0, c.task} end

local entry = ARGV[8]
local run_at = ARGV[13] or ''
local status, tok = 'pending', '1'
if run_at ~= '' and tonumber(run_at) > tonumber(c.now) then
  status = 'scheduled'
  redis.call('ZADD', KEYS[5], run_at, cjson.encode(token_fields(c, entry, tok, 1, ARGV[7], run_at)))
  emit(c, 'INIT', '', '0', '', '{"entry":"' .. entry .. '","token":"1","run_at":' .. run_at .. '}')
else
  run_at = ''
  tok = new_token(c, KEYS[4], entry, ARGV[7])
  emit(c, 'INIT', '', '0', '', '{"entry":"' .. entry .. '","token":"' .. tok .. '"}') -- step names need no escaping
end
flush(c)
publish(c)
-- The fields every script reads first (see lib.lua).
redis.call('HSET', c.H, 'status', status, 'seq', c.seqs, 'updated', c.now, 'ntok', tok, 'live', '1', 'dead', '0',
  'pv', c.pv, 'ct', c.ct, 'trace', c.trace, 'k:' .. tok, 'q|1|' .. entry .. '|', 'pipeline', ARGV[10],
  'created', c.now)
if run_at ~= '' then redis.call('HSET', c.H, 'run_at', run_at) end
if idem then
  redis.call('SET', idem, c.task .. ' ' .. ARGV[12], 'PX', ARGV[11])
end
return {1, c.task}
