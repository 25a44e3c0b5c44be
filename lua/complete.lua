-- complete.lua: handlers of one step and partition returned; for each
-- token store its output, run the routers (fan-out, switch, join), queue the
-- next tokens and end the task when no token is left. One call takes a
-- batch of tokens.
-- KEYS[1] -> partition firehose           dsat:{T}:ev
-- KEYS[2] -> the step's stream            dsat:{T}:s:<step>
-- (KEYS[2] and every stream below are those of the priority level of the
-- call's tokens, dsat:{T}:s:<step>:hi or :lo for high or low: dsat groups
-- a batch by level; the next tokens take the level of KEYS[2], see
-- lib.lua, pr and stream_level)
-- KEYS[3..2+J] -> streams of the pipeline's joins named in ARGV[12..11+J]
-- KEYS[3+J..2+J+T] -> streams of the step's targets named in ARGV[12+J..]
-- KEYS[3+J+T] -> partition task index     dsat:{T}:ix
-- KEYS[3i+J+T+1] -> token i's task state hash  (i = 1..n)
-- KEYS[3i+J+T+2] -> token i's task event log
-- KEYS[3i+J+T+3] -> token i's task result key
-- ARGV[1] -> now (ms)
-- ARGV[2] -> firehose cap, in events (approximate)
-- ARGV[3] -> retention of finished tasks (ms)
-- ARGV[4] -> envelope format version (X.Y)
-- ARGV[5] -> step name (also the consumer group)
-- ARGV[6] -> worker name
-- ARGV[7] -> router: "next" (fan-out, one next step, or none) or "switch"
-- ARGV[8] -> switch: the output field that gives the label
-- ARGV[9] -> switch: routes as JSON {label: [steps]}
-- ARGV[10] -> J, the number of joins in the pipeline
-- ARGV[11] -> T, the number of targets; "<T>f" when the pipeline has a
--             failure handler (on_failure): then KEYS[3+J+T] is its
--             stream (the index key and the tokens' keys one later) and
--             ARGV[12+J+T] its name (the tokens' arguments one later)
-- ARGV[12..11+J] -> join names, topological order
-- ARGV[12+J..11+J+T] -> targets: next steps in order, or every switch target
-- ARGV[7i+5+J+T .. 11+J+T+7i] -> token i: task id, token id, attempt,
--             stream entry id, output (JSON), route label ("" for none),
--             the time its handler started (ms; "" for now)
-- A token not begun (no begin call: its handler returned within the
-- satellite's begin window) gets its ACK, at the time its handler started,
-- in the same entry as its END.
-- Returns: a flat list, two entries per token: code, label. Codes: 1
-- applied; 0 already applied (a redelivery or a retried call; entry
-- acknowledged); -1 task not found; -2 task cancelled (entry acknowledged,
-- token dropped); -4 no route for the label and no default: nothing
-- written for that token, the caller fails it instead.
local step, worker = ARGV[5], ARGV[6]
local nj = tonumber(ARGV[10])
local nt, nf = string.match(ARGV[11], '^(%d+)(f?)$')
nt = tonumber(nt)
local joins, isjoin, streams, next_steps = {}, {}, {}, {}
local policies = false -- a join other than all (maplib.lua)
for i = 1, nj do
  joins[i] = join_spec(ARGV[11 + i], KEYS[2 + i])
  isjoin[joins[i][1]] = joins[i]
  policies = policies or joins[i][3] ~= ''
end
for i = 1, nt do
  next_steps[i] = ARGV[11 + nj + i]
  streams[next_steps[i]] = KEYS[2 + nj + i]
end
local routes = nil
if ARGV[7] == 'switch' then routes = cjson.decode(ARGV[9]) end
-- A map step or a step running a map's items (maplib.lua): ARGV[7] "map"
-- or "item"; for an item step the last target is the release step.
local kind, mapstep, ijoin, irel = ARGV[7], false, false, ''
if kind == 'item' then
  mapstep = ARGV[8]
  ijoin, irel = string.match(ARGV[9], '^([^|]*)|(.*)$')
  if irel ~= '' then next_steps[#next_steps] = nil end
end

-- Entries to acknowledge and delete, all at once after the batch.
local acks = {}
local function queue_ack(id)
  if id ~= '' then acks[#acks + 1] = id end
end

local function complete1(c, tok, att, id, output, label, started)
  local v = redis.call('HMGET', c.H, 'status', 'seq', 'ntok', 'live', 'dead', 'pv', 'ct', 'trace', 'ol', 'k:' .. tok,
    'p:' .. step)
  if not v[1] then
    queue_ack(id)
    return -1
  end
  if v[1] == 'cancelled' then
    queue_ack(id)
    return -2
  end
  local st, tatt, tstep = tok_parse(v[10])
  -- A token not begun (q queued, w or s promoted from the retry set) may
  -- complete: its handler returned within the begin window.
  if not st or tstep ~= step or tatt ~= att or st == 'd' or st == 'x' or st == 'c' then
    queue_ack(id)
    return 0
  end
  local idx = false
  if mapstep then idx = redis.call('HGET', c.H, 'mi:' .. tok) end
  local targets, route = next_steps, nil
  if routes then
    if label == '' then
      local ok, out = pcall(cjson.decode, output)
      if ok and type(out) == 'table' then
        local lv = out[ARGV[8]]
        if type(lv) == 'string' or type(lv) == 'number' or type(lv) == 'boolean' then
          label = tostring(lv)
        end
      end
    end
    targets = routes[label] or routes['default']
    if not targets then return -4, label end
    route = label
  end

  -- All checks done: write.
  counters(c, v[2], v[3], v[4], v[5])
  c.status, c.pv, c.ct, c.trace, c.ol = v[1], v[6], v[7], v[8] or '', v[9]
  tok_set(c, tok, 'd', att, step, worker)
  -- A done step's progress report is dropped (it would only keep the hash
  -- out of its compact encoding).
  if v[11] then redis.call('HDEL', c.H, 'p:' .. step) end
  if st ~= 'r' then ack_late(c, step, att, worker, started) end
  emit(c, 'END', step, att, worker, '{}')
  c.live = c.live - 1
  if #targets == 0 then
    c.out_step, c.out = step, output
  end
  if kind == 'map' then
    map_emit(c, ARGV[9], step, att, worker, label, streams, joins)
    targets = {}
  elseif idx then
    item_next(c, tok, idx, step, att, worker, output, targets[1], isjoin[targets[1]], mapstep, irel, streams)
    targets = {}
  end
  for _, to in ipairs(targets) do
    if isjoin[to] and isjoin[to][3] == 'a' then
      fire_any(c, isjoin[to], step, att, worker, output, joins)
    elseif isjoin[to] then
      park(c, to, step, output)
      emit(c, 'SEND', step, att, worker, cjson.encode({to = to, parked = true, route = route}))
    else
      local tk = new_token(c, streams[to], to, output)
      local d
      if route then
        d = cjson.encode({to = to, token = tk, route = route})
      else
        d = '{"to":"' .. to .. '","token":"' .. tk .. '"}' -- step names need no escaping
      end
      emit(c, 'SEND', step, att, worker, d)
    end
  end
  if policies then fire_joins2(c, joins) else fire_joins(c, joins) end
  finish(c)
  save(c)
  expire(c)
  queue_ack(id)
  return 1, ''
end

local out = {}
local kb, ab = 3 + nj + nt, 11 + nj + nt
local c = context(KEYS[1], ARGV[1], ARGV[2])
c.pr = stream_level(KEYS[2]) -- priority (issue 16): the next tokens carry it
c.retention, c.v = ARGV[3], ARGV[4]
if nf == 'f' then
  c.onf = {step = ARGV[12 + nj + nt], stream = KEYS[3 + nj + nt]}
  kb, ab = kb + 1, ab + 1
end
c.IX = KEYS[kb]
for i = 1, (#KEYS - kb) / 3 do
  local a = ab + 7 * (i - 1)
  local k = kb + 3 * (i - 1)
  new_task(c, KEYS[k + 1], KEYS[k + 2], ARGV[a + 1])
  c.RES = KEYS[k + 3]
  local code, label = complete1(c, ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7])
  out[2 * i - 1] = code
  out[2 * i] = label or ''
end
publish(c)
ack_batch(KEYS[2], step, acks)
return out
