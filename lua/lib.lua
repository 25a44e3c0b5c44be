-- lib.lua: helpers shared by the task scripts. lua/embed.go prepends this
-- file to submit, begin, complete, fail, cancel and retry, so each script is
-- still one self-contained EVAL. The helpers only touch keys the calling
-- script received in KEYS:
--   KEYS[1] task state hash, KEYS[2] task event stream, KEYS[3] firehose.
--
-- Task hash fields (all values strings):
--   pipeline pv ct trace status created updated seq error result
--   live          tokens queued, running or waiting for a retry
--   dead          tokens that gave up (dead letters) since the last re-drive
--   ntok          token id counter
--   k:<tok>       token "<state>|<attempt>|<step>|<worker>", state one of
--                 q queued, r running, w waiting for retry, d done, x dead
--   s:<step>:st|at|w|err   per-step state, attempts, worker, last error
--   pk:<join>     tokens parked at a join;  jl:<join> its predecessors
--   j:<join>:<pred>        a parked predecessor's output
--   o:<step> / ol outputs of end steps, composed into the result
--   x:<tok> / xl  a dead token's [dead letter id, step, payload] / the list

local H, EV, FH = KEYS[1], KEYS[2], KEYS[3]

local function split(s)
  local out = {}
  if s == nil or s == false or s == '' then return out end
  for part in string.gmatch(s, '[^,]+') do out[#out + 1] = part end
  return out
end

local function hnum(field)
  return tonumber(redis.call('HGET', H, field) or '0') or 0
end

-- emit records one event: the id is made by the firehose XADD and reused
-- for the task's own stream, so both carry the same id.
local function emit(c, ev, step, attempt, worker, detail)
  local seq = redis.call('HINCRBY', H, 'seq', 1)
  local f = {'task', c.task, 'seq', tostring(seq), 'ev', ev, 'step', step or '',
             'att', tostring(attempt or 0), 'w', worker or '', 'at', c.now, 'd', detail or '{}'}
  local id = redis.call('XADD', FH, 'MAXLEN', '~', c.maxlen, '*', unpack(f))
  redis.call('XADD', EV, id, unpack(f))
  redis.call('HSET', H, 'updated', c.now)
  return id
end

-- token_fields is the envelope of a token (mirrors dsat.Envelope.Fields).
local function token_fields(c, step, tok, attempt, payload, ts)
  local f = {'task', c.task, 'step', step, 'token', tok, 'attempt', tostring(attempt),
             'v', c.v, 'pv', c.pv, 'ct', c.ct, 'payload', payload, 'ts', ts or c.now}
  if c.trace and c.trace ~= '' then
    f[#f + 1] = 'trace'; f[#f + 1] = c.trace
  end
  return f
end

local function tok_get(tok)
  local v = redis.call('HGET', H, 'k:' .. tok)
  if not v then return nil end
  local st, att, step, w = string.match(v, '^(%a)|(%d+)|([^|]*)|(.*)$')
  return {st = st, att = tonumber(att), step = step, w = w}
end

local function tok_set(tok, st, att, step, w)
  redis.call('HSET', H, 'k:' .. tok, st .. '|' .. tostring(att) .. '|' .. step .. '|' .. (w or ''))
end

-- new_token queues a fresh token for step on stream and records it.
local function new_token(c, stream, step, payload)
  local tok = tostring(redis.call('HINCRBY', H, 'ntok', 1))
  redis.call('XADD', stream, '*', unpack(token_fields(c, step, tok, 1, payload)))
  tok_set(tok, 'q', 1, step, '')
  redis.call('HSET', H, 's:' .. step .. ':st', 'queued')
  return tok
end

-- load reads what every task script needs; nil when the task is unknown.
local function load(c)
  local v = redis.call('HMGET', H, 'status', 'pv', 'ct', 'trace', 'pipeline')
  if not v[1] then return nil end
  c.status, c.pv, c.ct, c.trace, c.pipeline = v[1], v[2], v[3], v[4] or '', v[5]
  return c
end

local function is_final(status)
  return status == 'succeeded' or status == 'failed' or status == 'cancelled'
end

-- ack removes a token's stream entry: acknowledged and deleted.
local function ack(stream, group, id)
  if id ~= '' then
    redis.call('XACK', stream, group, id)
    redis.call('XDEL', stream, id)
  end
end

-- park records a token from pred arriving at join j.
local function park(j, pred, output)
  redis.call('HINCRBY', H, 'pk:' .. j, 1)
  local list = redis.call('HGET', H, 'jl:' .. j) or ''
  if not string.find(',' .. list .. ',', ',' .. pred .. ',', 1, true) then
    if list ~= '' then list = list .. ',' end
    redis.call('HSET', H, 'jl:' .. j, list .. pred)
  end
  redis.call('HSET', H, 'j:' .. j .. ':' .. pred, output, 's:' .. j .. ':st', 'waiting')
end

-- fire_joins: once no token is active (and none died), the first join (in
-- topological order) holding parked tokens fires once, with the input
-- {predecessor: output}. joins is a list of {name, stream key}.
local function fire_joins(c, joins, live)
  if live ~= 0 or hnum('dead') ~= 0 then return live end
  for _, j in ipairs(joins) do
    local pk = hnum('pk:' .. j[1])
    if pk > 0 then
      local preds = split(redis.call('HGET', H, 'jl:' .. j[1]))
      local parts = {}
      for i, p in ipairs(preds) do
        parts[i] = cjson.encode(p) .. ':' .. redis.call('HGET', H, 'j:' .. j[1] .. ':' .. p)
        redis.call('HDEL', H, 'j:' .. j[1] .. ':' .. p)
      end
      redis.call('HDEL', H, 'pk:' .. j[1], 'jl:' .. j[1])
      local tok = new_token(c, j[2], j[1], '{' .. table.concat(parts, ',') .. '}')
      emit(c, 'SEND', '', 0, '', cjson.encode({to = j[1], token = tok, join = preds}))
      return 1
    end
  end
  return live
end

-- finish ends the task when no token is left alive.
local function finish(c, live)
  redis.call('HSET', H, 'live', tostring(live))
  if live ~= 0 then return end
  local dead = hnum('dead')
  if dead > 0 then
    redis.call('HSET', H, 'status', 'failed')
    local err = redis.call('HGET', H, 'error') or ''
    emit(c, 'DEAD', '', 0, '', cjson.encode({dead = dead, error = err}))
  else
    local ends = split(redis.call('HGET', H, 'ol'))
    local result
    if #ends == 1 then
      result = redis.call('HGET', H, 'o:' .. ends[1])
    else
      local parts = {}
      for i, s in ipairs(ends) do
        parts[i] = cjson.encode(s) .. ':' .. redis.call('HGET', H, 'o:' .. s)
      end
      result = '{' .. table.concat(parts, ',') .. '}'
    end
    for _, s in ipairs(ends) do redis.call('HDEL', H, 'o:' .. s) end
    redis.call('HDEL', H, 'ol')
    redis.call('HSET', H, 'status', 'succeeded', 'result', result)
    emit(c, 'HAPPY_END', '', 0, '', '{}')
  end
  redis.call('PEXPIRE', H, c.retention)
  redis.call('PEXPIRE', EV, c.retention)
end

-- stream_map maps the step names of a list to KEYS[first], KEYS[first+1]...
local function stream_map(names, first)
  local m = {}
  for i, n in ipairs(names) do m[n] = KEYS[first + i - 1] end
  return m
end

-- join_list pairs join names (topological order) with their stream keys.
local function join_list(names, streams)
  local out = {}
  for i, n in ipairs(names) do out[i] = {n, streams[n]} end
  return out
end

-- End of lib.lua.
