-- submit.lua: create tasks and queue their entry tokens. One call takes a
-- batch of tasks of one partition (one, with an idempotency key).
-- KEYS[1] -> partition firehose           dsat:{T}:ev
-- KEYS[2] -> entry step stream            dsat:{T}:s:<entry>
-- KEYS[3] -> retry set (delayed tokens)   dsat:{T}:retry
-- KEYS[4] -> deadline set                 dsat:{T}:deadlines
-- KEYS[5] -> partition task index         dsat:{T}:ix
-- KEYS[4+2i] -> task i's state hash       dsat:{T}:t:<task>        (i = 1..n)
-- KEYS[5+2i] -> task i's event log        dsat:{T}:t:<task>:log
-- KEYS[6+2n] -> idempotency key, when ARGV[2] is "1" (then n = 1)
-- ARGV[1] -> now (ms)
-- ARGV[2] -> "1" when the last key is an idempotency key, else "0"
-- ARGV[3] -> firehose cap, in events (approximate)
-- ARGV[4] -> envelope format version (X.Y)
-- ARGV[5] -> pipeline version (X.Y.Z)
-- ARGV[6] -> content type
-- ARGV[7] -> entry step name
-- ARGV[8] -> traceparent ("" for none)
-- ARGV[9] -> pipeline name
-- ARGV[10] -> idempotency TTL (ms)
-- ARGV[11] -> payload digest (for idempotency conflicts; "" without a key)
-- ARGV[12] -> run at (ms): later than now, the tasks are "scheduled" and
--             their entry tokens wait in the retry set until then
--             (promote.lua moves them to the entry stream); "" or not
--             later: at once
-- ARGV[13] -> deadline (ms; "" for none): the task is cancelled with the
--             reason "deadline" once it passes (deadline.lua)
-- ARGV[12+2i] -> task i's id
-- ARGV[13+2i] -> task i's payload
-- Returns: a flat list, two entries per task: code, id. Codes: 1 created;
-- 0 already exists (same idempotency key and payload, or this very call
-- retried); -5 idempotency key used with a different payload (nothing
-- written).
local c = context(KEYS[1], ARGV[1], ARGV[3])
c.v, c.pv, c.ct, c.trace = ARGV[4], ARGV[5], ARGV[6], ARGV[8]
c.IX = KEYS[5]
local entry, pipeline = ARGV[7], ARGV[9]
local run_at = ARGV[12]
if run_at ~= '' and tonumber(run_at) <= tonumber(c.now) then run_at = '' end
local status = 'pending'
if run_at ~= '' then status = 'scheduled' end
local deadline = ARGV[13]
local n = (#ARGV - 13) / 2
local idem = false
if ARGV[2] == '1' then idem = KEYS[6 + 2 * n] end

local function submit1(H, LOG, id, payload)
  new_task(c, H, LOG, id)
  c.seq, c.ntok, c.ntoks, c.live = 0, 0, false, 0
  if idem then
    local prev = redis.call('GET', idem)
    if prev then
      local pid, digest = string.match(prev, '^(%S+) (%S+)$')
      if digest == ARGV[11] then return 0, pid end
      return -5, pid
    end
  end
  if redis.call('EXISTS', H) == 1 then return 0, id end
  local tok = '1'
  if run_at ~= '' then
    redis.call('ZADD', KEYS[3], run_at, cjson.encode(token_fields(c, entry, tok, 1, payload, run_at)))
    emit(c, 'INIT', '', '0', '', '{"entry":"' .. entry .. '","token":"1","run_at":' .. run_at .. '}')
  else
    tok = new_token(c, KEYS[2], entry, payload)
    emit(c, 'INIT', '', '0', '', '{"entry":"' .. entry .. '","token":"' .. tok .. '"}') -- step names need no escaping
  end
  flush(c)
  -- The fields every script reads first (see lib.lua).
  redis.call('HSET', H, 'status', status, 'seq', c.seqs, 'updated', c.now, 'ntok', tok, 'live', '1', 'dead', '0',
    'pv', c.pv, 'ct', c.ct, 'trace', c.trace, 'k:' .. tok, 'q|1|' .. entry .. '|', 'pipeline', pipeline,
    'created', c.now)
  if run_at ~= '' then redis.call('HSET', H, 'run_at', run_at) end
  c.status = false
  index_move(c, status)
  index_flush(c)
  if deadline ~= '' then
    redis.call('HSET', H, 'deadline', deadline)
    redis.call('ZADD', KEYS[4], deadline, id)
  end
  if idem then
    redis.call('SET', idem, id .. ' ' .. ARGV[11], 'PX', ARGV[10])
  end
  return 1, id
end

local out = {}
for i = 1, n do
  local code, id = submit1(KEYS[4 + 2 * i], KEYS[5 + 2 * i], ARGV[12 + 2 * i], ARGV[13 + 2 * i])
  out[2 * i - 1], out[2 * i] = code, id
end
publish(c)
return out
