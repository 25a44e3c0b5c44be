-- fail.lua: a handler failed (error, panic, timeout), asked to be snoozed,
-- or its token is poison. Schedules a retry, or dead-letters the token and
-- ends the task (DEAD) when nothing is left alive.
-- KEYS[1] -> task state hash              dsat:{T}:t:<task>
-- KEYS[2] -> task event log               dsat:{T}:t:<task>:log
-- KEYS[3] -> partition firehose           dsat:{T}:ev
-- KEYS[4] -> the step's stream of the token's priority level
--             dsat:{T}:s:<step> (normal), ...:hi or ...:lo
-- KEYS[5] -> retry set                    dsat:{T}:retry
-- KEYS[6] -> dead-letter stream           dsat:{T}:dead
-- KEYS[7] -> partition task index         dsat:{T}:ix
-- ARGV[1] -> task id
-- ARGV[2] -> token id
-- ARGV[3] -> attempt ("0": the token's current one)
-- ARGV[4] -> stream entry id of the token ("" when not from a stream)
-- ARGV[5] -> step name (also the consumer group)
-- ARGV[6] -> worker name
-- ARGV[7] -> now (ms)
-- ARGV[8] -> firehose cap, in events (approximate)
-- ARGV[9] -> retention of finished tasks (ms)
-- ARGV[10] -> envelope format version (X.Y)
-- ARGV[11] -> event: ERROR or TIMEOUT
-- ARGV[12] -> error message
-- ARGV[13] -> mode: retry | snooze | dead
-- ARGV[14] -> due time of the retry (ms; ignored for dead)
-- ARGV[15] -> the token's input payload (kept for a retry or a re-drive)
-- ARGV[16] -> the time the handler started (ms; "" for now): a token still
--             not begun (no begin call) gets its ACK first, as in complete
-- ARGV[17] -> "" a handler ran; "q" the token never reached a handler (a
--             queue timeout seen by the worker that read it): no ACK; "u"
--             the same for a token no worker has read yet (the time
--             keeper): nothing is done ({2}) unless the entry is still
--             undelivered to the step's consumer group
-- ARGV[18], KEYS[8] -> only for a pipeline with a failure handler
--             (on_failure): "f:<its step>" and its stream; a task that
--             ends failed runs it first (lib.lua, on_failure). The map and
--             join arguments below then start one later (ARGV[19], KEYS[9])
-- ARGV[18..], KEYS[8..] -> only for a pipeline with a map or a join
--             policy: the step's item spec, the join specs, their streams
--             and the release step's stream (maplib.lua, fail_mapjoin)
-- Returns: {1, mode} applied; {0} already applied (entry acknowledged);
-- {-1} task not found; {-2} task cancelled (entry acknowledged); {2} the
-- entry was delivered meanwhile ("u": nothing written).
local c = context(KEYS[3], ARGV[7], ARGV[8])
new_task(c, KEYS[1], KEYS[2], ARGV[1])
c.retention, c.v = ARGV[9], ARGV[10]
c.IX = KEYS[7]
local a0, k0 = 18, 8 -- where the map and join arguments start
if string.sub(ARGV[18] or '', 1, 2) == 'f:' then
  c.onf = {step = string.sub(ARGV[18], 3), stream = KEYS[8]}
  a0, k0 = 19, 9
end
local tok, att, id, step, worker = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]
local ev, msg, mode, due, payload = ARGV[11], ARGV[12], ARGV[13], ARGV[14], ARGV[15]
local never = ARGV[17] or ''
c.pr = stream_level(KEYS[4]) -- a retried or snoozed token keeps its level (issue 16)
if never == 'u' and delivered(KEYS[4], step, id) then return {2} end
if not load(c, tok) then
  ack(KEYS[4], step, id)
  return {-1}
end
if c.status == 'cancelled' then
  ack(KEYS[4], step, id)
  return {-2}
end
local st, tatt, tstep = tok_parse(c.tokv)
-- Attempt "0": a rejected stream entry whose attempt could not be read
-- (dsat.DeadLetterEntry) ends the token at its current attempt.
local atts = ARGV[3]
if atts == '0' and tatt then atts = tatt end
if not st or tstep ~= step or tatt ~= atts or st == 'd' or st == 'x' or st == 'c' then
  ack(KEYS[4], step, id)
  return {0}
end

-- Map and join policies (issue 17, maplib.lua): only when dsat passes them.
local mj, idx = fail_mapjoin(a0, k0), nil
if mj and mj.item then idx = redis.call('HGET', c.H, 'mi:' .. tok) end

-- All checks done: write.
att = tonumber(atts)
if st ~= 'r' and never == '' then ack_late(c, step, atts, worker, ARGV[16] or '') end
if mode == 'snooze' then
  tok_set(c, tok, 's', atts, step, worker)
  redis.call('ZADD', KEYS[5], due, cjson.encode(token_fields(c, step, tok, atts, payload, due)))
  emit(c, 'RETRY', step, atts, worker, cjson.encode({snooze = true, due = due}))
elseif mode == 'retry' then
  tok_set(c, tok, 'w', tostring(att + 1), step, worker)
  set(c, 's:' .. step .. ':err', msg)
  emit(c, ev, step, atts, worker, cjson.encode({error = msg, item = tonumber(idx)})) -- item: a map's (nil drops it)
  redis.call('ZADD', KEYS[5], due, cjson.encode(token_fields(c, step, tok, att + 1, payload, due)))
  emit(c, 'RETRY', step, atts, worker, cjson.encode({attempt = att + 1, due = due, item = tonumber(idx)}))
elseif idx and mj.item.jspec[3] == 'ms' then
  item_settle(c, mj.item, tok, atts, step, worker, ev, msg, idx, KEYS[6])
else
  tok_set(c, tok, 'x', atts, step, worker)
  c.error = step .. ': ' .. msg
  set(c, 's:' .. step .. ':err', msg); set(c, 'error', c.error)
  emit(c, ev, step, atts, worker, cjson.encode({error = msg, final = true, item = tonumber(idx)}))
  local did = redis.call('XADD', KEYS[6], '*', 'task', c.task, 'pipeline', c.pipeline, 'step', step,
    'token', tok, 'attempts', atts, 'reason', msg, 'at', c.now)
  set(c, 'x:' .. tok, cjson.encode({did, step, payload, idx})) -- idx: a map's item (retry.lua)
  local xl = redis.call('HGET', c.H, 'xl') or ''
  if xl ~= '' then xl = xl .. ',' end
  set(c, 'xl', xl .. tok)
  c.live = c.live - 1
  c.dead = c.dead + 1
  -- An item dead under join: all: its join cannot fire, release no more.
  if idx and mj.item.jspec[3] == 'm' then set(c, 'md', '1') end
  -- A dead token keeps every join from firing until a re-drive (retry.lua),
  -- so the task ends DEAD once the other tokens are done or parked.
  if mj then fire_joins2(c, mj.joins) end -- a settled join takes the death
  finish(c)
end
save(c)
expire(c)
publish(c)
ack(KEYS[4], step, id)
return {1, mode}
