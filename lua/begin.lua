-- begin.lua: workers took tokens of one step and partition and their
-- handlers are about to run. One call takes a batch of tokens.
-- KEYS[1] -> partition firehose           dsat:{T}:ev
-- KEYS[2] -> the step's stream            dsat:{T}:s:<step>
-- KEYS[3] -> partition task index         dsat:{T}:ix
-- KEYS[2+2i] -> token i's task state hash dsat:{T}:t:<task>   (i = 1..n)
-- KEYS[3+2i] -> token i's task event log  dsat:{T}:t:<task>:log
-- ARGV[1] -> now (ms)
-- ARGV[2] -> firehose cap, in events (approximate)
-- ARGV[3] -> step name (also the consumer group)
-- ARGV[4] -> worker (consumer) name
-- ARGV[1+4i] -> token i's task id
-- ARGV[2+4i] -> token i's token id
-- ARGV[3+4i] -> token i's attempt (from the envelope)
-- ARGV[4+4i] -> token i's stream entry id
-- Returns: a list with one code per token: 1 begun (ACK emitted); 2
-- already begun by this worker (a retried call: nothing written); 0
-- dropped: the token is done, dead, stale or unknown (entry acknowledged);
-- -1 task not found (entry acknowledged); -2 task cancelled (entry
-- acknowledged).
local step, worker = ARGV[3], ARGV[4]

local function begin1(c, tok, att, id)
  local v = redis.call('HMGET', c.H, 'status', 'seq', 'k:' .. tok)
  if not v[1] then
    ack(KEYS[2], step, id)
    return -1
  end
  if v[1] == 'cancelled' then
    ack(KEYS[2], step, id)
    return -2
  end
  local st, tatt, tstep, tw = tok_parse(v[3])
  if not st or tstep ~= step or tatt ~= att or st == 'd' or st == 'x' or st == 'c' then
    ack(KEYS[2], step, id)
    return 0
  end
  if st == 'r' and tw == worker then return 2 end

  c.seq = tonumber(v[2]) or 0
  tok_set(c, tok, 'r', att, step, worker)
  if v[1] == 'pending' or v[1] == 'scheduled' then
    c.status = v[1]
    index_move(c, 'running')
    set(c, 'status', 'running')
  end
  emit(c, 'ACK', step, att, worker, '{}')
  save(c)
  return 1
end

local out = {}
local c = context(KEYS[1], ARGV[1], ARGV[2])
c.IX = KEYS[3]
for i = 1, (#KEYS - 3) / 2 do
  local a = 4 * i
  new_task(c, KEYS[2 + 2 * i], KEYS[3 + 2 * i], ARGV[1 + a])
  out[i] = begin1(c, ARGV[2 + a], ARGV[3 + a], ARGV[4 + a])
end
publish(c)
return out
