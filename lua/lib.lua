-- lib.lua: helpers shared by the task scripts. lua/embed.go prepends this
-- file to submit, begin, complete, fail, cancel, retry, deadline and
-- progress, so each script is still one self-contained EVAL. The helpers work on a task context c that
-- names the keys the calling script received in KEYS: c.H the task state
-- hash, c.LOG the task's event log, c.FH the partition firehose, c.IX the
-- partition's task index (below, "Task index"). begin and
-- complete take a batch of tokens, one context per token.
--
-- Events: each event is one line "<seq>|<event>|<attempt>|<at ms>|<step>|
-- <worker>|<detail JSON>" (step and worker hold no "|", no line holds a
-- line break). A script appends a task's lines to its log (a string: one
-- APPEND per task and call) and, at its end, writes every line of the call,
-- each task's after a line "@<task>", as ONE firehose entry (publish): the
-- firehose is the live source, the log the history (dsat/events.go reads
-- both).
--
-- Task hash fields (all values strings), in the order submit creates them:
-- the fields every script reads come first, because Redis looks a field up
-- in a small hash by scanning it from the start.
--   status seq updated ntok live dead pv ct trace
--   status        pending, scheduled (its entry token waits for run_at),
--                 running, succeeded, failed, cancelled
--   live          tokens queued, running or waiting for a retry
--   dead          tokens that gave up (dead letters) since the last re-drive
--   ntok          token id counter
--   k:<tok>       token "<state>|<attempt>|<step>|<worker>", state one of
--                 q queued, r running, w waiting for a retry, s snoozed,
--                 d done, x dead; a step's state in the API is that of its
--                 latest token (dsat/state.go)
--   pipeline created error
--   run_at        a delayed task's run time (ms);  deadline  its deadline
--   s:<step>:err  the step's last error (written on failure only)
--   pk:<join>     tokens parked at a join;  jl:<join> its predecessors
--   j:<join>:<pred>        a parked predecessor's output
--   o:<step> / ol outputs of end steps while other tokens are alive,
--                 composed into the result (stored in the result key c.RES)
--   x:<tok> / xl  a dead token's [dead letter id, step, payload] / the list
--   p:<step>      the step's latest progress report "<value>|<at ms>|<message>"
--                 (progress.lua; complete removes it when the step's token ends)
--   pr            the task's priority, high or low (absent: normal); its
--                 tokens carry it (envelope field pr, c.pr) and wait in the
--                 level's step streams, which the caller passes in KEYS
--
-- Cost model: a script reads the hash once (load, or a leaner HMGET in
-- begin and complete), keeps seq, ntok, live and dead in locals, queues its
-- plain field writes (set) and writes them, with the counters that changed,
-- in one HSET at the end (save). Join and output fields, which a script may
-- read back, are written at once. Numbers are turned into strings only
-- where they change (Lua formats them with sprintf, which is costly).

-- num formats a counter. tostring is sprintf in Lua 5.1; counters repeat
-- across the tokens of a batch (seq 4, 5, ...), so each value is formatted
-- once per call.
local NUM = {}
local function num(n)
  local s = NUM[n]
  if not s then
    s = tostring(n)
    NUM[n] = s
  end
  return s
end

-- context makes the context of a script call with every field in place:
-- Lua grows a table by rehashing it, so the context is built at full size
-- once, and batch scripts reset it for each token (new_task) instead of
-- making a new one.
local function context(FH, now, maxlen)
  return {H = false, LOG = false, RES = false, FH = FH, IX = false, ix0 = false, task = false, now = now, maxlen = maxlen,
          retention = false, v = false, W = {}, nw = 0, status = false, seq = 0, seqs = false,
          ntok = 0, ntok0 = 0, ntoks = false, live = 0, live0 = 0, dead = 0, dead0 = 0,
          pv = false, ct = false, trace = '', ol = false, tokv = false, pipeline = false,
          out_step = false, out = false, expire = false, error = false, evs = {}, nev = 0, fh = {}, nfh = 0,
          pr = false, onf = false}
end

-- new_task points the context at a task and forgets the previous one.
local function new_task(c, H, LOG, task)
  c.H, c.LOG, c.task, c.ix0 = H, LOG, task, false
  c.nw, c.seqs, c.ntoks, c.out_step, c.out, c.expire, c.error = 0, false, false, false, false, false, false
  c.nev = 0
end

-- set queues a hash field write for save.
local function set(c, f, v)
  local n = c.nw
  c.W[n + 1], c.W[n + 2], c.nw = f, v, n + 2
end

local function split(s)
  local out = {}
  if s == nil or s == false or s == '' then return out end
  for part in string.gmatch(s, '[^,]+') do out[#out + 1] = part end
  return out
end

-- counters takes the task's counters as read (strings, nil when absent).
local function counters(c, seq, ntok, live, dead)
  c.seq, c.ntok = tonumber(seq) or 0, tonumber(ntok) or 0
  c.live, c.dead = tonumber(live) or 0, tonumber(dead) or 0
  c.ntok0, c.live0, c.dead0 = c.ntok, c.live, c.dead
end

-- load reads what every task script needs (and the token's record when
-- tok is given); nil when the task is unknown.
local function load(c, tok)
  local v = redis.call('HMGET', c.H, 'status', 'seq', 'ntok', 'live', 'dead', 'pv', 'ct', 'trace', 'ol',
    'k:' .. (tok or ''), 'pipeline')
  if not v[1] then return nil end
  c.status = v[1]
  counters(c, v[2], v[3], v[4], v[5])
  c.pv, c.ct, c.trace, c.ol, c.tokv, c.pipeline = v[6], v[7], v[8] or '', v[9], v[10], v[11]
  return c
end

-- emit records one event (att a string) in the context, at the call's
-- time or at (ms, a string) when given; flush writes the events of one task
-- and call to its log, publish those of the whole call to the firehose.
-- Step names hold no "|" and no line breaks, details (JSON) no line breaks.
local function emit(c, ev, step, att, worker, detail, at)
  c.seq = c.seq + 1
  local seq = num(c.seq)
  c.seqs = seq
  local n = c.nev + 1
  c.evs[n], c.nev = seq .. '|' .. ev .. '|' .. att .. '|' .. (at or c.now) .. '|' .. step .. '|' .. worker .. '|' .. detail, n
end

-- flush appends the emitted events of the current task to its log (one
-- APPEND) and keeps them, after a line "@<task>", for publish.
local function flush(c)
  local n = c.nev
  if n == 0 then return end
  local lines = c.evs[1]
  if n > 1 then lines = table.concat(c.evs, '\n', 1, n) end
  redis.call('APPEND', c.LOG, lines .. '\n')
  local m = c.nfh
  c.fh[m + 1], c.fh[m + 2], c.nfh = '@' .. c.task, lines, m + 2
  c.nev = 0
end

-- publish writes every event of the call as one firehose entry (field x:
-- for each task a line "@<task>", then its event lines), capped at about
-- maxlen events: the cap in entries is maxlen divided by the entry's
-- tasks (a few events each). Every task script ends with it.
local function publish(c)
  local n = c.nfh
  if n == 0 then return end
  local cap = math.max(1, math.floor(tonumber(c.maxlen) * 2 / n))
  redis.call('XADD', c.FH, 'MAXLEN', '~', cap, '*', 'x', table.concat(c.fh, '\n', 1, n))
  c.nfh = 0
end

-- Task index (issue 18: task search). Each partition keeps one sorted set
-- c.IX (dsat:{T}:ix), every score 0, one member per task: its status letter
-- then the 26 characters of its id that sort by creation time, so a status
-- and a time range are one lex range (ZRANGE BYLEX), newest first with REV.
-- A script moves a task's member only when its status changes (per task, not
-- per step). The member of a task whose keys expired is removed later by
-- index_prune.lua, which the time keepers run (dsat.Client.PruneIndex):
-- nothing here pays for expiry. The move is written once per task and
-- call, when the task is saved (index_flush), so a task that starts and
-- ends in one call (a one-step task whose handler returned within the begin
-- window) goes from pending to succeeded in one ZREM and one ZADD.
local IX_LETTER = {pending = 'p', scheduled = 'w', running = 'r', succeeded = 's', failed = 'f', cancelled = 'c'}

-- index_move records the task's new status (c.status is the old one, ""
-- or false for a new task) for index_flush, and sets c.status.
local function index_move(c, to)
  if c.ix0 == false then c.ix0 = c.status or '' end
  c.status = to
end

-- index_flush writes the index move of the task, if its status changed
-- since the first index_move of this call.
local function index_flush(c)
  if c.ix0 == false then return end
  local from, l = IX_LETTER[c.ix0], IX_LETTER[c.status]
  c.ix0 = false
  if from == l then return end
  local head = string.sub(c.task, 1, 26)
  if from then redis.call('ZREM', c.IX, from .. head) end
  redis.call('ZADD', c.IX, 0, l .. head)
end
-- End of the task index block.

-- ack_late records the ACK of a token whose handler ran without a begin
-- call (a handler that returned within the satellite's begin window): the
-- script that records its result writes the ACK first, with the time the
-- handler started (started, ms; "" for now), in the same entry.
local function ack_late(c, step, att, worker, started)
  if c.status == 'pending' or c.status == 'scheduled' then
    index_move(c, 'running')
    set(c, 'status', 'running')
  end
  if started == '' then started = nil end
  emit(c, 'ACK', step, att, worker, '{}', started)
end

-- save writes the queued fields and the counters that changed in one HSET,
-- the emitted events (flush) and the task's index move (index_flush).
local function save(c)
  flush(c)
  index_flush(c)
  if c.seqs then set(c, 'seq', c.seqs) end
  if c.ntok ~= c.ntok0 then set(c, 'ntok', c.ntoks or num(c.ntok)) end
  if c.live ~= c.live0 then set(c, 'live', num(c.live)) end
  if c.dead ~= c.dead0 then set(c, 'dead', num(c.dead)) end
  set(c, 'updated', c.now)
  redis.call('HSET', c.H, unpack(c.W, 1, c.nw))
end

-- Envelope (format 1.1, dsat.Envelope.Fields): a token's stream entry is
-- the packed header h = "<v>|<task>|<step>|<token>|<attempt>|<pv>|<ts>"
-- (none of these holds "|") and payload; ct only for a content type other
-- than DEFAULT_CT (dsat.DefaultContentType), trace only when there is one
-- (either may hold "|"). A retry set member is the JSON array of these
-- field/value pairs.
local DEFAULT_CT = 'application/json'

-- token_fields is the envelope of a token (mirrors dsat.Envelope.Fields).
-- stream_level is the priority level a step stream's key names (issue 16):
-- 'high' for <step>:hi, 'low' for <step>:lo, false for the normal stream
-- (a step name holds no ':'). A script that queues the next tokens of its
-- call's tokens takes their level from the stream it was given: no read.
local function stream_level(key)
  local s = string.sub(key, -3)
  if s == ':hi' then return 'high' elseif s == ':lo' then return 'low' end
  return false
end

local function token_fields(c, step, tok, attempt, payload, ts)
  local f = {'h', c.v .. '|' .. c.task .. '|' .. step .. '|' .. tok .. '|' .. attempt .. '|' .. c.pv .. '|' .. (ts or c.now),
             'payload', payload}
  if c.ct and c.ct ~= DEFAULT_CT then
    f[#f + 1] = 'ct'; f[#f + 1] = c.ct
  end
  if c.trace and c.trace ~= '' then
    f[#f + 1] = 'trace'; f[#f + 1] = c.trace
  end
  -- Priorities (issue 16): a high or low task's tokens carry pr.
  if c.pr then
    f[#f + 1] = 'pr'; f[#f + 1] = c.pr
  end
  return f
end

-- tok_parse decodes a token record: state, attempt (a string), step,
-- worker; nothing for a missing or malformed record.
local function tok_parse(v)
  if not v then return nil end
  return string.match(v, '^(%a)|(%d+)|([^|]*)|(.*)$')
end

-- tok_set queues a token record (att a string).
local function tok_set(c, tok, st, att, step, w)
  set(c, 'k:' .. tok, st .. '|' .. att .. '|' .. step .. '|' .. w)
end

-- new_token queues a fresh token for step on stream and records it.
local function new_token(c, stream, step, payload)
  c.ntok = c.ntok + 1
  local tok = num(c.ntok)
  c.ntoks = tok
  if c.trace == '' and c.ct == DEFAULT_CT and not c.pr then
    redis.call('XADD', stream, '*', 'h', c.v .. '|' .. c.task .. '|' .. step .. '|' .. tok .. '|1|' .. c.pv .. '|' .. c.now,
      'payload', payload)
  else
    redis.call('XADD', stream, '*', unpack(token_fields(c, step, tok, 1, payload)))
  end
  set(c, 'k:' .. tok, 'q|1|' .. step .. '|')
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

-- stream_id splits a stream entry id into its two numbers (nil for none).
local function stream_id(id)
  local ms, sq = string.match(id or '', '^(%d+)-?(%d*)$')
  return tonumber(ms), tonumber(sq) or 0
end

-- delivered reports whether stream entry id was delivered to the consumer
-- group (its last-delivered-id is at or past it; no group: not delivered).
local function delivered(stream, group, id)
  local ms, sq = stream_id(id)
  if not ms then return true end
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local f = {}
    for i = 1, 12, 2 do
      if g[i] then f[g[i]] = g[i + 1] end
    end
    if f['name'] == group then
      local lms, lsq = stream_id(f['last-delivered-id'])
      if not lms then return true end
      return lms > ms or (lms == ms and lsq >= sq)
    end
  end
  return false
end

-- ack_batch acknowledges and removes the stream entries ids of a batch,
-- each delivered to group, given in the order of their ids (dsat sorts a
-- complete call's tokens so), with fewer walks of the stream than XDEL's
-- one walk of a stream node per id. After the XACK, every entry below the
-- smaller of the group's first pending entry and the id after the batch's
-- last one has been delivered (ids only grow and a group delivers them in
-- order) and is no longer pending: acknowledged, so deleted already or
-- one of ids. One XTRIM MINID removes those (whole nodes at once, then one
-- pass over the node the bound is in); XDEL removes the ids at or past the
-- bound, which lie behind an entry still pending (a token still running).
-- Every id must have been pending (XACK counts them), else the call falls
-- back to XDEL. No pending and no undelivered entry is ever removed, and no
-- acknowledged one is left: the stream holds the tokens waiting or
-- running, as with XDEL alone. (Ids out of order would not make it remove
-- a wrong entry, only leave some acknowledged ones to a later trim. The
-- step's group must be its stream's only group, as dsat's layout has it.)
local function ack_batch(stream, group, ids)
  local n = #ids
  if n == 0 then return end
  if redis.call('XACK', stream, group, unpack(ids)) < n then
    -- Not every id was pending (a redelivered token's entry acknowledged
    -- before, or an id never delivered): the bound would not be proven.
    redis.call('XDEL', stream, unpack(ids))
    return
  end
  local hms, hsq = stream_id(ids[n])
  -- The bound: the id after the batch's last one, or the first pending.
  local bms, bsq = hms, hsq + 1
  local bound = string.match(ids[n], '^%d+') .. '-' .. num(bsq)
  local p = redis.call('XPENDING', stream, group, '-', '+', 1)[1]
  if p then
    local pms, psq = stream_id(p[1])
    if pms < bms or (pms == bms and psq < bsq) then bms, bsq, bound = pms, psq, p[1] end
  end
  -- The ids at or past the bound: the last ones.
  local k = n
  while k > 0 do
    local ms, sq = stream_id(ids[k])
    if ms < bms or (ms == bms and sq < bsq) then break end
    k = k - 1
  end
  if k > 0 then redis.call('XTRIM', stream, 'MINID', bound) end
  if k < n then redis.call('XDEL', stream, unpack(ids, k + 1, n)) end
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
      emit(c, 'SEND', '', '0', '', cjson.encode({to = j[1], token = tok, join = preds}))
      return
    end
  end
end

-- keep_output stores the output of an end step (c.out_step, c.out) in the
-- hash, for a task that does not end in this call: the result is composed
-- from every end step's output when it does.
local function keep_output(c)
  local step = c.out_step
  if not step then return end
  redis.call('HSET', c.H, 'o:' .. step, c.out)
  local ends = c.ol or ''
  if not string.find(',' .. ends .. ',', ',' .. step .. ',', 1, true) then
    if ends ~= '' then ends = ends .. ',' end
    c.ol = ends .. step
    redis.call('HSET', c.H, 'ol', c.ol)
  end
  c.out_step = nil
end

-- result composes the task's result: the one end step's output as it is,
-- or {step: output} for several. An output of this call (c.out_step) is
-- used without a round trip through the hash.
local function result(c)
  local ends = split(c.ol)
  if c.out_step then
    if #ends == 0 then return c.out end
    if not string.find(',' .. c.ol .. ',', ',' .. c.out_step .. ',', 1, true) then
      ends[#ends + 1] = c.out_step
    end
  end
  local outs = {}
  for i, s in ipairs(ends) do
    if s == c.out_step then outs[i] = c.out else outs[i] = redis.call('HGET', c.H, 'o:' .. s) end
  end
  if #ends == 1 then return outs[1] end
  local parts = {}
  for i, s in ipairs(ends) do parts[i] = cjson.encode(s) .. ':' .. outs[i] end
  return '{' .. table.concat(parts, ',') .. '}'
end

-- finish ends the task when no token is left alive; otherwise an output
-- of this call is kept for later.
local on_failure -- defined below (issue 17's block)
local function finish(c)
  if c.onf and on_failure(c) then return end
  if c.live ~= 0 then
    keep_output(c)
    return
  end
  if c.dead > 0 then
    keep_output(c)
    index_move(c, 'failed')
    set(c, 'status', 'failed')
    -- The error of a token that died in an earlier call is in the hash.
    local err = c.error
    if not err then err = redis.call('HGET', c.H, 'error') or '' end
    emit(c, 'DEAD', '', '0', '', cjson.encode({dead = c.dead, error = err}))
  else
    local res = result(c)
    for _, s in ipairs(split(c.ol)) do redis.call('HDEL', c.H, 'o:' .. s) end
    if c.ol then redis.call('HDEL', c.H, 'ol') end
    index_move(c, 'succeeded')
    set(c, 'status', 'succeeded')
    redis.call('SET', c.RES, res, 'PX', c.retention)
    emit(c, 'HAPPY_END', '', '0', '', '{}')
  end
  c.expire = true
end

-- expire gives a finished task's keys the retention TTL (after save). A
-- hash still in its compact encoding has no room to give back; one that
-- lost it (a long error, join inputs, several end steps) is rewritten at
-- its exact size (DUMP + RESTORE, where DUMP exists: not in miniredis). The
-- log, grown by APPEND (which doubles its room), is rewritten at its size.
local function expire(c)
  if c.expire then
    local enc = redis.pcall('OBJECT', 'ENCODING', c.H)
    local d = false
    if enc ~= 'listpack' and enc ~= 'ziplist' then d = redis.pcall('DUMP', c.H) end
    if type(d) == 'string' then
      redis.call('RESTORE', c.H, c.retention, d, 'REPLACE')
    else
      redis.call('PEXPIRE', c.H, c.retention)
    end
    redis.call('SET', c.LOG, redis.call('GET', c.LOG), 'PX', c.retention)
  end
end

-- cancel_task cancels the loaded task (final at once): queued tokens are
-- dropped by begin and complete, running handlers see their context
-- cancelled by the satellite. The caller checked that it is not final.
local function cancel_task(c, reason)
  index_move(c, 'cancelled')
  set(c, 'status', 'cancelled')
  c.live = 0
  local detail = '{}'
  if reason ~= '' then detail = cjson.encode({reason = reason}) end
  emit(c, 'CANCELLED', '', '0', '', detail)
  save(c)
  c.expire = true
  expire(c)
end

-- stream_map maps the step names of a list to KEYS[first], KEYS[first+1]...
local function stream_map(names, first)
  local m = {}
  for i, n in ipairs(names) do m[n] = KEYS[first + i - 1] end
  return m
end

-- Failure handlers (issue 17: the pipeline's on_failure). A script that
-- may end a task (complete, fail) sets c.onf = {step = name, stream = key}
-- when the pipeline has one; finish then calls on_failure first. Instead of
-- DEAD, the task's first failure queues one token for the handler step
-- (SEND with on_failure: true), its input {task, step, error, input} of the
-- first token that died, and marks the hash (field "of"); the task stays
-- running until that token ends, and DEAD, its one final event, follows it.
-- The handler's output is no result, its own death neither re-triggers it
-- nor joins the dead tokens a retry re-drives (retry.lua clears "of", so a
-- re-driven task that fails again runs the handler again: once per failure).

-- hget is a hash field as this call leaves it: a write queued by set wins
-- over the stored value.
local function hget(c, f)
  for i = c.nw - 1, 1, -2 do
    if c.W[i] == f then return c.W[i + 1] end
  end
  return redis.call('HGET', c.H, f)
end

-- on_failure returns true when it queued the failure handler, so that
-- finish writes nothing more (the task is not over).
on_failure = function(c)
  local f = c.onf
  if c.out_step == f.step then c.out_step = false end -- the handler's output is no result
  if c.live ~= 0 or c.dead == 0 then return false end
  local v = redis.call('HMGET', c.H, 'of', 'error', 'xl')
  if v[1] then
    -- The handler ended: the task keeps the error and the dead tokens the
    -- failure left (the handler's own dead token is not re-driven).
    if hget(c, 'xl') ~= v[3] then c.dead = c.dead - 1 end
    c.error = v[2] or ''
    set(c, 'error', c.error)
    set(c, 'xl', v[3] or '')
    return false
  end
  local first = split(hget(c, 'xl'))[1]
  local x = first and hget(c, 'x:' .. first)
  if not x then return false end
  x = cjson.decode(x)
  local step, input = x[2], x[3]
  if c.ct ~= DEFAULT_CT then input = cjson.encode(input) end
  local detail = '{"task":' .. cjson.encode(c.task) .. ',"step":' .. cjson.encode(step) .. ',"error":' ..
    cjson.encode(hget(c, 's:' .. step .. ':err') or '') .. ',"input":' .. input .. '}'
  local ct = c.ct
  c.ct = DEFAULT_CT -- the handler's input is JSON whatever the task's content type
  local tok = new_token(c, f.stream, f.step, detail)
  c.ct = ct
  set(c, 'of', '1')
  keep_output(c)
  emit(c, 'SEND', '', '0', '', cjson.encode({to = f.step, token = tok, on_failure = true}))
  return true
end

-- End of lib.lua.
