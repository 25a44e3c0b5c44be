-- subpipe_park.lua: a token of a sub-pipeline step (pipeline: in YAML)
-- submitted its child task: the token stays running, held by no worker
-- (its record's worker is "child:<child id>"), its stream entry is
-- acknowledged and deleted (so no reclaim re-submits it) and it joins the
-- partition's children set, where a sweep (dsat.Client.SettleChildren)
-- finds it and ends it with the child's outcome through complete or fail.
-- Its input is kept for that fail's retry. SEND names the child.
-- KEYS[1] -> task state hash              dsat:{T}:t:<task>
-- KEYS[2] -> task event log               dsat:{T}:t:<task>:log
-- KEYS[3] -> partition firehose           dsat:{T}:ev
-- KEYS[4] -> the step's stream            dsat:{T}:s:<step>
-- KEYS[5] -> partition children set       dsat:{T}:children
-- KEYS[6] -> the token's kept input       dsat:{T}:t:<task>:ci:<token>
-- KEYS[7] -> partition task index         dsat:{T}:ix (a task still
--             pending becomes running)
-- ARGV[1] -> task id
-- ARGV[2] -> token id
-- ARGV[3] -> attempt
-- ARGV[4] -> stream entry id of the token
-- ARGV[5] -> step name (also the consumer group)
-- ARGV[6] -> worker name
-- ARGV[7] -> now (ms)
-- ARGV[8] -> firehose cap, in events (approximate)
-- ARGV[9] -> the child task's id
-- ARGV[10] -> the child's pipeline
-- ARGV[11] -> the time the worker took the token (ms; "" for now): a token
--             not begun gets its ACK first, as in complete
-- ARGV[12] -> the token's input payload
-- Returns: 1 parked; 0 already parked, done, dead or stale (entry
-- acknowledged); -1 task not found (entry acknowledged); -2 task
-- cancelled (entry acknowledged: cancel the child).
local c = context(KEYS[3], ARGV[7], ARGV[8])
new_task(c, KEYS[1], KEYS[2], ARGV[1])
c.IX = KEYS[7]
local tok, att, id, step, worker, child = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[9]
if not load(c, tok) then
  ack(KEYS[4], step, id)
  return -1
end
if c.status == 'cancelled' then
  ack(KEYS[4], step, id)
  return -2
end
local st, tatt, tstep, tw = tok_parse(c.tokv)
local held = 'child:' .. child
if not st or tstep ~= step or tatt ~= att or st == 'd' or st == 'x' or (st == 'r' and tw == held) then
  ack(KEYS[4], step, id)
  return 0
end

-- All checks done: write.
if st ~= 'r' then ack_late(c, step, att, worker, ARGV[11]) end
tok_set(c, tok, 'r', att, step, held)
emit(c, 'SEND', step, att, worker, cjson.encode({child = child, pipeline = ARGV[10]}))
redis.call('SET', KEYS[6], ARGV[12])
redis.call('ZADD', KEYS[5], c.now, c.task .. '|' .. tok .. '|' .. att .. '|' .. step .. '|' .. child)
save(c)
publish(c)
ack(KEYS[4], step, id)
return 1
