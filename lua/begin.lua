-- begin.lua: workers took tokens of one step and partition and their
-- handlers are about to run. One call takes a batch of tokens.
-- KEYS[1] -> partition firehose           dsat:{T}:ev
-- KEYS[2] -> the step's stream            dsat:{T}:s:<step>
-- KEYS[1+2i] -> token i's task state hash dsat:{T}:t:<task>   (i = 1..n)
-- KEYS[2+2i] -> token i's task events     dsat:{T}:t:<task>:ev
-- ARGV[1] -> now (ms)
-- ARGV[2] -> firehose MAXLEN (approximate)
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
  if not load(c, tok) then
    ack(KEYS[2], step, id)
    return -1
  end
  if c.status == 'cancelled' then
    ack(KEYS[2], step, id)
    return -2
  end
  local t = tok_parse(c.tokv)
  if not t or t.step ~= step or t.att ~= att or t.st == 'd' or t.st == 'x' then
    ack(KEYS[2], step, id)
    return 0
  end
  if t.st == 'r' and t.w == worker then return 2 end

  tok_set(c, tok, 'r', att, step, worker)
  if c.status == 'pending' then set(c, 'status', 'running') end
  set(c, 's:' .. step .. ':st', 'running'); set(c, 's:' .. step .. ':at', tostring(att)); set(c, 's:' .. step .. ':w', worker)
  emit(c, 'ACK', step, att, worker, '{}')
  save(c)
  return 1
end

local out = {}
for i = 1, (#KEYS - 2) / 2 do
  local a = 4 * i
  local c = {H = KEYS[1 + 2 * i], EV = KEYS[2 + 2 * i], FH = KEYS[1], task = ARGV[1 + a], now = ARGV[1], maxlen = ARGV[2]}
  out[i] = begin1(c, ARGV[2 + a], tonumber(ARGV[3 + a]), ARGV[4 + a])
end
return out
