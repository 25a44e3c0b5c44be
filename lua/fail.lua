-- fail.lua: a handler failed (error, panic, timeout), asked to be snoozed,
-- or its token is poison. Schedules a retry, or dead-letters the token and
-- ends the task (DEAD) when nothing is left alive.
-- KEYS[1] -> task state hash              dsat:{T}:t:<task>
-- KEYS[2] -> task event log               dsat:{T}:t:<task>:log
-- KEYS[3] -> partition firehose           dsat:{T}:ev
-- KEYS[4] -> the step's stream            dsat:{T}:s:<step>
-- KEYS[5] -> retry set                    dsat:{T}:retry
-- KEYS[6] -> dead-letter stream           dsat:{T}:dead
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
-- KEYS[7] -> the failure handler's stream, when ARGV[18] names it
-- ARGV[18] -> the pipeline's on_failure step ("" or absent: none); a
--             task that ends failed runs it first (lib.lua, on_failure)
-- Returns: {1, mode} applied; {0} already applied (entry acknowledged);
-- {-1} task not found; {-2} task cancelled (entry acknowledged); {2} the
-- entry was delivered meanwhile ("u": nothing written).
local c = context(KEYS[3], ARGV[7], ARGV[8])
new_task(c, KEYS[1], KEYS[2], ARGV[1])
c.retention, c.v = ARGV[9], ARGV[10]
if (ARGV[18] or '') ~= '' then c.onf = {step = ARGV[18], stream = KEYS[7]} end
local tok, att, id, step, worker = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]
local ev, msg, mode, due, payload = ARGV[11], ARGV[12], ARGV[13], ARGV[14], ARGV[15]
local never = ARGV[17] or ''
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
if not st or tstep ~= step or tatt ~= atts or st == 'd' or st == 'x' then
  ack(KEYS[4], step, id)
  return {0}
end

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
  emit(c, ev, step, atts, worker, cjson.encode({error = msg}))
  redis.call('ZADD', KEYS[5], due, cjson.encode(token_fields(c, step, tok, att + 1, payload, due)))
  emit(c, 'RETRY', step, atts, worker, cjson.encode({attempt = att + 1, due = due}))
else
  tok_set(c, tok, 'x', atts, step, worker)
  c.error = step .. ': ' .. msg
  set(c, 's:' .. step .. ':err', msg); set(c, 'error', c.error)
  emit(c, ev, step, atts, worker, cjson.encode({error = msg, final = true}))
  local did = redis.call('XADD', KEYS[6], '*', 'task', c.task, 'pipeline', c.pipeline, 'step', step,
    'token', tok, 'attempts', atts, 'reason', msg, 'at', c.now)
  set(c, 'x:' .. tok, cjson.encode({did, step, payload}))
  local xl = redis.call('HGET', c.H, 'xl') or ''
  if xl ~= '' then xl = xl .. ',' end
  set(c, 'xl', xl .. tok)
  c.live = c.live - 1
  c.dead = c.dead + 1
  -- A dead token keeps every join from firing until a re-drive (retry.lua),
  -- so the task ends DEAD once the other tokens are done or parked.
  finish(c)
end
save(c)
expire(c)
publish(c)
ack(KEYS[4], step, id)
return {1, mode}
