-- complete.lua: a handler returned; store its output, run the routers
-- (fan-out, switch, join), queue the next tokens and end the task when no
-- token is left.
-- KEYS[1] -> task state hash              dsat:{T}:t:<task>
-- KEYS[2] -> task event stream            dsat:{T}:t:<task>:ev
-- KEYS[3] -> partition firehose           dsat:{T}:ev
-- KEYS[4] -> the step's stream            dsat:{T}:s:<step>
-- KEYS[5..] -> streams of the steps listed in the routing spec's "streams",
--              in that order (the step's targets and every join)
-- ARGV[1] -> task id
-- ARGV[2] -> token id
-- ARGV[3] -> attempt
-- ARGV[4] -> stream entry id of the token
-- ARGV[5] -> step name (also the consumer group)
-- ARGV[6] -> worker name
-- ARGV[7] -> now (ms)
-- ARGV[8] -> firehose MAXLEN (approximate)
-- ARGV[9] -> retention of finished tasks (ms)
-- ARGV[10] -> envelope format version (X.Y)
-- ARGV[11] -> output (JSON)
-- ARGV[12] -> route label returned by the handler ("" for none)
-- ARGV[13] -> routing spec (JSON): {"next": [..]} or {"by": field,
--             "routes": {label: [..]}}, plus "joins": [..] in topological
--             order and "streams": [..] naming KEYS[5..]
-- Returns: {1, n} applied, n next tokens queued; {0} already applied (a
-- redelivery or a retried call; entry acknowledged); {-1} task not found;
-- {-2} task cancelled (entry acknowledged, token dropped); {-4, label} no
-- route for the label and no default: nothing written, the caller fails
-- the token instead.
local c = {task = ARGV[1], now = ARGV[7], maxlen = ARGV[8], retention = ARGV[9], v = ARGV[10]}
local tok, att, id, step, worker = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]
local output, label = ARGV[11], ARGV[12]
if not load(c) then
  ack(KEYS[4], step, id)
  return {-1}
end
if c.status == 'cancelled' then
  ack(KEYS[4], step, id)
  return {-2}
end
local t = tok_get(tok)
if not t or t.step ~= step or t.att ~= att or (t.st ~= 'r' and t.st ~= 'q') then
  ack(KEYS[4], step, id)
  return {0}
end

local spec = cjson.decode(ARGV[13])
local targets = spec.next or {}
if spec.routes then
  if label == '' then
    local ok, out = pcall(cjson.decode, output)
    if ok and type(out) == 'table' then
      local v = out[spec.by]
      if type(v) == 'string' or type(v) == 'number' or type(v) == 'boolean' then
        label = tostring(v)
      end
    end
  end
  targets = spec.routes[label] or spec.routes['default']
  if not targets then return {-4, label} end
end
local streams = stream_map(spec.streams, 5)
local joins = {}
for _, j in ipairs(spec.joins or {}) do joins[j] = true end

-- All checks done: write.
tok_set(tok, 'd', att, step, worker)
redis.call('HSET', H, 's:' .. step .. ':st', 'done', 's:' .. step .. ':w', worker,
  's:' .. step .. ':at', tostring(att))
emit(c, 'END', step, att, worker, '{}')
local live = hnum('live') - 1
if #targets == 0 then
  redis.call('HSET', H, 'o:' .. step, output)
  local ends = redis.call('HGET', H, 'ol') or ''
  if not string.find(',' .. ends .. ',', ',' .. step .. ',', 1, true) then
    if ends ~= '' then ends = ends .. ',' end
    redis.call('HSET', H, 'ol', ends .. step)
  end
end
local route = nil
if spec.routes then route = label end
for _, to in ipairs(targets) do
  if joins[to] then
    park(to, step, output)
    emit(c, 'SEND', step, att, worker, cjson.encode({to = to, parked = true, route = route}))
  else
    local nt = new_token(c, streams[to], to, output)
    live = live + 1
    emit(c, 'SEND', step, att, worker, cjson.encode({to = to, token = nt, route = route}))
  end
end
live = fire_joins(c, join_list(spec.joins or {}, streams), live)
finish(c, live)
ack(KEYS[4], step, id)
return {1, #targets}
