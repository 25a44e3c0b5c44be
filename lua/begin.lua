-- begin.lua: a worker took a token and its handler is about to run.
-- KEYS[1] -> task state hash              dsat:{T}:t:<task>
-- KEYS[2] -> task event stream            dsat:{T}:t:<task>:ev
-- KEYS[3] -> partition firehose           dsat:{T}:ev
-- KEYS[4] -> the step's stream            dsat:{T}:s:<step>
-- ARGV[1] -> task id
-- ARGV[2] -> token id
-- ARGV[3] -> attempt (from the envelope)
-- ARGV[4] -> stream entry id
-- ARGV[5] -> step name (also the consumer group)
-- ARGV[6] -> worker (consumer) name
-- ARGV[7] -> now (ms)
-- ARGV[8] -> firehose MAXLEN (approximate)
-- Returns: 1 begun (ACK emitted); 2 already begun by this worker (a retried
-- call: nothing written); 0 dropped: the token is done, dead, stale or
-- unknown (entry acknowledged); -1 task not found (entry acknowledged);
-- -2 task cancelled (entry acknowledged).
local c = {task = ARGV[1], now = ARGV[7], maxlen = ARGV[8]}
local tok, att, id, step, worker = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]
if not load(c) then
  ack(KEYS[4], step, id)
  return -1
end
if c.status == 'cancelled' then
  ack(KEYS[4], step, id)
  return -2
end
local t = tok_get(tok)
if not t or t.step ~= step or t.att ~= att or t.st == 'd' or t.st == 'x' then
  ack(KEYS[4], step, id)
  return 0
end
if t.st == 'r' and t.w == worker then return 2 end

tok_set(tok, 'r', att, step, worker)
if c.status == 'pending' then redis.call('HSET', H, 'status', 'running') end
redis.call('HSET', H, 's:' .. step .. ':st', 'running', 's:' .. step .. ':at', tostring(att),
  's:' .. step .. ':w', worker)
emit(c, 'ACK', step, att, worker, '{}')
return 1
