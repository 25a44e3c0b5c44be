-- lib.lua: helpers shared by the task scripts. lua/embed.go prepends this
-- file to submit, begin, complete, fail, cancel and retry, so each script is
-- still one self-contained EVAL. The helpers work on a task context c that
-- names the keys the calling script received in KEYS: c.H the task state
-- hash, c.EV the task event stream, c.FH the partition firehose. begin and
-- complete take a batch of tokens, one context per token.
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
--   o:<step> / ol outputs of end steps, composed into the result (stored
--                 in the result key c.RES, not in the hash)
--   x:<tok> / xl  a dead token's [dead letter id, step, payload] / the list
--
-- Cost model: a script reads the hash once (load), keeps seq, ntok, live and
-- dead in locals, queues its plain field writes (set) and writes them in one
-- HSET at the end (save). Join and result fields, which a script may read
-- back, are written at once.

-- set queues a hash field write for save.
local function set(c, f, v)
  local W = c.W
  W[#W + 1] = f
  W[#W + 1] = v
end

local function split(s)
  local out = {}
  if s == nil or s == false or s == '' then return out end
  for part in string.gmatch(s, '[^,]+') do out[#out + 1] = part end
  return out
end

-- load reads what every task script needs (and the token's record when
-- tok is given); nil when the task is unknown.
local function load(c, tok)
  c.W = {}
  local v = redis.call('HMGET', c.H, 'status', 'pv', 'ct', 'trace', 'pipeline', 'seq', 'ntok', 'live', 'dead',
    'k:' .. (tok or ''))
  if not v[1] then return nil end
  c.status, c.pv, c.ct, c.trace, c.pipeline = v[1], v[2], v[3], v[4] or '', v[5]
  c.seq, c.ntok = tonumber(v[6]) or 0, tonumber(v[7]) or 0
  c.live, c.dead = tonumber(v[8]) or 0, tonumber(v[9]) or 0
  c.tokv = v[10]
  return c
end

-- save writes the counters and every queued field in one HSET.
local function save(c)
  set(c, 'seq', tostring(c.seq))
  set(c, 'ntok', tostring(c.ntok))
  set(c, 'live', tostring(c.live))
  set(c, 'dead', tostring(c.dead))
  set(c, 'updated', c.now)
  redis.call('HSET', c.H, unpack(c.W))
end

-- emit records one event: the id is made by the firehose XADD and reused
-- for the task's own stream, so both carry the same id.
local function emit(c, ev, step, attempt, worker, detail)
  c.seq = c.seq + 1
  local seq, att = tostring(c.seq), tostring(attempt or 0)
  step, worker, detail = step or '', worker or '', detail or '{}'
  local id = redis.call('XADD', c.FH, 'MAXLEN', '~', c.maxlen, '*', 'task', c.task, 'seq', seq, 'ev', ev,
    'step', step, 'att', att, 'w', worker, 'at', c.now, 'd', detail)
  redis.call('XADD', c.EV, id, 'task', c.task, 'seq', seq, 'ev', ev, 'step', step, 'att', att, 'w', worker,
    'at', c.now, 'd', detail)
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

-- tok_parse decodes a token record.
local function tok_parse(v)
  if not v then return nil end
  local st, att, step, w = string.match(v, '^(%a)|(%d+)|([^|]*)|(.*)$')
  return {st = st, att = tonumber(att), step = step, w = w}
end

local function tok_set(c, tok, st, att, step, w)
  set(c, 'k:' .. tok, st .. '|' .. tostring(att) .. '|' .. step .. '|' .. (w or ''))
end

-- new_token queues a fresh token for step on stream and records it.
local function new_token(c, stream, step, payload)
  c.ntok = c.ntok + 1
  local tok = tostring(c.ntok)
  if c.trace == '' then
    redis.call('XADD', stream, '*', 'task', c.task, 'step', step, 'token', tok, 'attempt', '1', 'v', c.v,
      'pv', c.pv, 'ct', c.ct, 'payload', payload, 'ts', c.now)
  else
    redis.call('XADD', stream, '*', unpack(token_fields(c, step, tok, 1, payload)))
  end
  tok_set(c, tok, 'q', 1, step, '')
  set(c, 's:' .. step .. ':st', 'queued')
  c.live = c.live + 1
  return tok
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

-- park records a token from pred arriving at join j (written at once:
-- fire_joins reads it back).
local function park(c, j, pred, output)
  local H = c.H
  redis.call('HINCRBY', H, 'pk:' .. j, 1)
  local list = redis.call('HGET', H, 'jl:' .. j) or ''
  if not string.find(',' .. list .. ',', ',' .. pred .. ',', 1, true) then
    if list ~= '' then list = list .. ',' end
    redis.call('HSET', H, 'jl:' .. j, list .. pred)
  end
  redis.call('HSET', H, 'j:' .. j .. ':' .. pred, output)
  set(c, 's:' .. j .. ':st', 'waiting')
end

-- fire_joins: once no token is active (and none died), the first join (in
-- topological order) holding parked tokens fires once, with the input
-- {predecessor: output}. joins is a list of {name, stream key}.
local function fire_joins(c, joins)
  if c.live ~= 0 or c.dead ~= 0 then return end
  local H = c.H
  for _, j in ipairs(joins) do
    local pk = tonumber(redis.call('HGET', H, 'pk:' .. j[1]) or '0') or 0
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
      return
    end
  end
end

-- finish ends the task when no token is left alive.
local function finish(c)
  if c.live ~= 0 then return end
  local H = c.H
  if c.dead > 0 then
    set(c, 'status', 'failed')
    emit(c, 'DEAD', '', 0, '', cjson.encode({dead = c.dead, error = c.error or ''}))
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
    set(c, 'status', 'succeeded')
    redis.call('SET', c.RES, result, 'PX', c.retention)
    emit(c, 'HAPPY_END', '', 0, '', '{}')
  end
  c.expire = true
end

-- compact rewrites a finished task's key at its exact size with the
-- retention TTL: DUMP + RESTORE drops the room Redis preallocated (4 KB per
-- stream node in Redis 7.0) and re-encodes a hash compactly once its large
-- transient fields are gone. Where DUMP is not available for the type
-- (miniredis) it only sets the TTL.
local function compact(key, ttl)
  local d = redis.pcall('DUMP', key)
  if type(d) == 'string' then
    redis.call('DEL', key)
    redis.call('RESTORE', key, ttl, d)
  else
    redis.call('PEXPIRE', key, ttl)
  end
end

-- expire gives a finished task's keys the retention TTL (after save).
local function expire(c)
  if c.expire then
    compact(c.H, c.retention)
    compact(c.EV, c.retention)
  end
end

-- stream_map maps the step names of a list to KEYS[first], KEYS[first+1]...
local function stream_map(names, first)
  local m = {}
  for i, n in ipairs(names) do m[n] = KEYS[first + i - 1] end
  return m
end

-- End of lib.lua.
