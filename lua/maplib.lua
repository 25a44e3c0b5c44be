-- maplib.lua: map and join policies (issue 17), the helpers complete,
-- fail and retry share. lua/embed.go prepends it, after lib.lua, to the
-- task scripts. A pipeline with no map and only join: all never reaches
-- these helpers: dsat sends a plain join name and no extra argument.
--
-- Join specs (dsat/mapjoin.go, joinSpec): a join's name alone for join:
-- all, else "<name>|<kind>|<steps>": kind m after a map (all), ms after a
-- map (settled; steps: the mapped steps), s settled (steps: the join's
-- ancestors), a any (steps: its ancestors). join_spec makes
-- {name, stream, kind, steps as a set}.
--
-- Task hash fields of a map whose items end at join J (all strings):
--   mi:<tok>     a mapped token's item index (0-based); gone when it ends
--   mn:J         the map's number of items
--   pk:J         items arrived at J (as for any join);  me:J  items that
--                died, counted as settled (join: settled)
--   j:J:<i>      item i's output;  je:J:<i>  its error (settled)
--   mq:J         the next item to release (max_parallel);  mv:J:<i>  an
--                item not released yet
--   md           an item died under join: all: its join cannot fire, so
--                no waiting item is released until a retry (which clears
--                it; each re-driven item then releases the next on arrival)
-- A cancelled token (join: any) has the record state c.

local function join_spec(arg, stream)
  local name, kind, steps = string.match(arg, '^([^|]+)|?([^|]*)|?(.*)$')
  local set = {}
  for _, s in ipairs(split(steps)) do set[s] = true end
  return {name, stream, kind, set}
end

-- flush_sets writes the queued field writes now (in chunks: Lua's unpack
-- takes at most about 8000 values), so that the script may read them back
-- or queue many more; save writes the rest.
local function flush_sets(c)
  local n = c.nw
  for s = 1, n, 4000 do
    redis.call('HSET', c.H, unpack(c.W, s, math.min(s + 3999, n)))
  end
  c.nw = 0
end

-- hdel_chunks deletes the fields of a list, in chunks.
local function hdel_chunks(H, fields)
  for s = 1, #fields, 1000 do
    redis.call('HDEL', H, unpack(fields, s, math.min(s + 999, #fields)))
  end
end

-- fire_map_join fires join J after its map's n items all arrived (or,
-- settled, arrived or died): the input is the outputs as a JSON array in
-- item order (settled: {"outputs": [...], "errors": {"<i>": reason}}).
local function fire_map_join(c, J, stream, n, settled, nerr)
  local H = c.H
  local parts, errs, fields = {}, {}, {}
  for s = 0, n - 1, 1000 do
    local fs = {}
    for i = s, math.min(s + 999, n - 1) do fs[#fs + 1] = 'j:' .. J .. ':' .. num(i) end
    local vs = redis.call('HMGET', H, unpack(fs))
    for k = 1, #fs do
      parts[s + k] = vs[k] or 'null'
      fields[#fields + 1] = fs[k]
    end
    if settled and nerr > 0 then
      for k = 1, #fs do fs[k] = 'je:' .. J .. ':' .. num(s + k - 1) end
      vs = redis.call('HMGET', H, unpack(fs))
      for k = 1, #fs do
        if vs[k] then
          errs[#errs + 1] = '"' .. num(s + k - 1) .. '":' .. cjson.encode(vs[k])
          fields[#fields + 1] = fs[k]
        end
      end
    end
  end
  hdel_chunks(H, fields)
  redis.call('HDEL', H, 'pk:' .. J, 'mn:' .. J, 'me:' .. J)
  local input = '[' .. table.concat(parts, ',') .. ']'
  local extra = ''
  if settled then
    input = '{"outputs":' .. input .. ',"errors":{' .. table.concat(errs, ',') .. '}}'
    extra = ',"errors":' .. num(#errs)
  end
  local tk = new_token(c, stream, J, input)
  emit(c, 'SEND', '', '0', '', '{"to":"' .. J .. '","token":"' .. tk .. '","items":' .. num(n) .. extra .. '}')
end

-- map_join_check fires join J once every item of its map has arrived
-- (or died, for settled).
local function map_join_check(c, J, stream, settled)
  local v = redis.call('HMGET', c.H, 'mn:' .. J, 'pk:' .. J, 'me:' .. J)
  local n, pk, me = tonumber(v[1]), tonumber(v[2]) or 0, tonumber(v[3]) or 0
  if n and pk + me >= n then fire_map_join(c, J, stream, n, settled, me) end
end

-- release queues the next item not released yet (max_parallel) for step
-- W: an item left the map's steps (arrived at J, or died with settled).
local function release(c, msg_step, J, W, stream)
  local v = redis.call('HMGET', c.H, 'mq:' .. J, 'md')
  local q = v[1]
  if not q or v[2] then return end
  local f = 'mv:' .. J .. ':' .. q
  local payload = redis.call('HGET', c.H, f)
  local i = tonumber(q) + 1
  if redis.call('HEXISTS', c.H, 'mv:' .. J .. ':' .. num(i)) == 1 then
    redis.call('HSET', c.H, 'mq:' .. J, num(i))
  else
    redis.call('HDEL', c.H, 'mq:' .. J)
  end
  redis.call('HDEL', c.H, f)
  local tk = new_token(c, stream, W, payload)
  set(c, 'mi:' .. tk, q)
  emit(c, 'SEND', msg_step, '0', '', '{"to":"' .. W .. '","token":"' .. tk .. '","item":' .. q .. ',"released":true}')
end

-- map_emit: a map step's items (lines of items; "" for none) each become
-- a token for W, the first mapped step, at most max_parallel at once (the
-- rest wait in the hash). cfg is "<max_items>|<max_parallel>|<join>|<W>".
-- No item: the join fires at once with an empty array.
local function map_emit(c, cfg, step, att, worker, items, streams, joins)
  local mp, J, W = string.match(cfg, '^%d+|(%d+)|([^|]+)|(.+)$')
  mp = tonumber(mp)
  local list, n = {}, 0
  if items ~= '' then
    for it in string.gmatch(items, '[^\n]+') do
      n = n + 1
      list[n] = it
    end
  end
  local jspec
  for _, j in ipairs(joins) do
    if j[1] == J then jspec = j end
  end
  if n == 0 then
    emit(c, 'SEND', step, att, worker, '{"to":"' .. W .. '","items":0}')
    fire_map_join(c, J, jspec[2], 0, jspec[3] == 'ms', 0)
    return
  end
  local lim = n
  if mp > 0 and mp < n then lim = mp end
  local wstream = streams[W]
  for i = 1, lim do
    local tk = new_token(c, wstream, W, list[i])
    local si = num(i - 1)
    set(c, 'mi:' .. tk, si)
    emit(c, 'SEND', step, att, worker, '{"to":"' .. W .. '","token":"' .. tk .. '","item":' .. si .. '}')
    if c.nw > 4000 then flush_sets(c) end
  end
  for i = lim + 1, n do
    set(c, 'mv:' .. J .. ':' .. num(i - 1), list[i])
    if c.nw > 4000 then flush_sets(c) end
  end
  if lim < n then set(c, 'mq:' .. J, num(lim)) end
  set(c, 'mn:' .. J, num(n))
  flush_sets(c)
end

-- item_next: a mapped token tok (item idx) of step ended with output:
-- to the next mapped step, or it arrives at the join (then releases the
-- next waiting item and fires the join when it was the last).
local function item_next(c, tok, idx, step, att, worker, output, to, jspec, mapstep, rel, streams)
  redis.call('HDEL', c.H, 'mi:' .. tok)
  if not jspec then
    local tk = new_token(c, streams[to], to, output)
    set(c, 'mi:' .. tk, idx)
    emit(c, 'SEND', step, att, worker, '{"to":"' .. to .. '","token":"' .. tk .. '","item":' .. idx .. '}')
    return
  end
  redis.call('HSET', c.H, 'j:' .. to .. ':' .. idx, output)
  redis.call('HINCRBY', c.H, 'pk:' .. to, 1)
  emit(c, 'SEND', step, att, worker, '{"to":"' .. to .. '","parked":true,"item":' .. idx .. '}')
  if rel ~= '' then release(c, mapstep, to, rel, streams[rel]) end
  map_join_check(c, to, jspec[2], jspec[3] == 'ms')
end

-- dead_in takes the dead tokens (xl) whose step is in the set steps out of
-- the dead list: returns {step, reason} for each (the step's last error).
local function dead_in(c, steps)
  local H = c.H
  flush_sets(c)
  local out, keep, seen = {}, {}, {}
  for _, t in ipairs(split(redis.call('HGET', H, 'xl'))) do
    local x = cjson.decode(redis.call('HGET', H, 'x:' .. t))
    if steps[x[2]] then
      redis.call('HDEL', H, 'x:' .. t)
      c.dead = c.dead - 1
      if not seen[x[2]] then
        seen[x[2]] = true
        out[#out + 1] = {x[2], redis.call('HGET', H, 's:' .. x[2] .. ':err') or ''}
      end
    else
      keep[#keep + 1] = t
    end
  end
  if #keep > 0 then
    redis.call('HSET', H, 'xl', table.concat(keep, ','))
  else
    redis.call('HDEL', H, 'xl')
  end
  if c.dead == 0 then
    c.error = false
    set(c, 'error', '')
  end
  return out
end

-- parked_outputs takes the outputs parked at join J: {pred: output}
-- members, and the predecessors.
local function parked_outputs(c, J)
  local H = c.H
  local preds = split(redis.call('HGET', H, 'jl:' .. J))
  local parts = {}
  for i, p in ipairs(preds) do
    parts[i] = cjson.encode(p) .. ':' .. redis.call('HGET', H, 'j:' .. J .. ':' .. p)
    redis.call('HDEL', H, 'j:' .. J .. ':' .. p)
  end
  redis.call('HDEL', H, 'pk:' .. J, 'jl:' .. J)
  return parts, preds
end

-- fire_settled fires settled join j when tokens are parked at it or a
-- token of its branches died: input {"outputs": {pred: output}, "errors":
-- {step: reason}}; the deaths are handled (no longer count as dead).
local function fire_settled(c, j)
  local pk = tonumber(redis.call('HGET', c.H, 'pk:' .. j[1]) or '0') or 0
  local errs = {}
  if c.dead > 0 then errs = dead_in(c, j[4]) end
  if pk == 0 and #errs == 0 then return false end
  local parts, preds = parked_outputs(c, j[1])
  local ep, names = {}, {}
  for i, e in ipairs(errs) do
    ep[i] = cjson.encode(e[1]) .. ':' .. cjson.encode(e[2])
    names[i] = e[1]
  end
  local tok = new_token(c, j[2], j[1], '{"outputs":{' .. table.concat(parts, ',') .. '},"errors":{' .. table.concat(ep, ',') .. '}}')
  emit(c, 'SEND', '', '0', '', cjson.encode({to = j[1], token = tok, join = preds, errors = names}))
  return true
end

-- fire_joins2 is fire_joins with policies: once no token is active, the
-- first join (topological order) that can fire does: all with parked
-- tokens and no dead one, settled with parked tokens or dead ones in its
-- branches. Map joins fire on their items (map_join_check), any on its
-- first arrival (fire_any).
local function fire_joins2(c, joins)
  if c.live ~= 0 then return end
  for _, j in ipairs(joins) do
    local kind = j[3]
    if kind == '' then
      local pk = tonumber(redis.call('HGET', c.H, 'pk:' .. j[1]) or '0') or 0
      if pk > 0 then
        if c.dead == 0 then fire_joins(c, {j}) end
        return
      end
    elseif kind == 's' then
      if fire_settled(c, j) then return end
    end
  end
end

-- fire_any: the first token from pred reaches any-join j: j fires with
-- {pred: output} and every other live token of its branches is cancelled
-- (state c: begin, complete and fail drop it; a satellite cancels its
-- running handler), its branches' dead tokens and parked inputs dropped.
local function fire_any(c, j, step, att, worker, output, joins)
  local H = c.H
  flush_sets(c)
  local anc = j[4]
  local all = redis.call('HGETALL', H)
  local cancelled = {}
  for i = 1, #all, 2 do
    local f = all[i]
    if string.sub(f, 1, 2) == 'k:' then
      local st, a, s, w = tok_parse(all[i + 1])
      if anc[s] and (st == 'q' or st == 'r' or st == 'w' or st == 's') then
        local t = string.sub(f, 3)
        tok_set(c, t, 'c', a, s, w)
        c.live = c.live - 1
        cancelled[#cancelled + 1] = t
      end
    end
  end
  for _, jj in ipairs(joins) do
    if anc[jj[1]] then parked_outputs(c, jj[1]) end
  end
  if c.dead > 0 then dead_in(c, anc) end
  local tok = new_token(c, j[2], j[1], '{' .. cjson.encode(step) .. ':' .. output .. '}')
  local d = {to = j[1], token = tok, join = {step}, any = true}
  if #cancelled > 0 then d.cancelled = cancelled end
  emit(c, 'SEND', step, att, worker, cjson.encode(d))
end

-- fail_mapjoin reads what fail.lua gets after its own arguments (from
-- ARGV[a0] and KEYS[k0]: 18 and 8, one later after a failure handler's)
-- when the pipeline has a map or a join policy: ARGV[a0] the step's item
-- spec "<map step>|<join>|<release step>" ("" for a step that runs no
-- map's items), ARGV[a0+1..] the join specs, KEYS[k0..] their streams,
-- then the release step's stream. nil without them.
local function fail_mapjoin(a0, k0)
  if not ARGV[a0] then return nil end
  local joins = {}
  for i = a0 + 1, #ARGV do joins[#joins + 1] = join_spec(ARGV[i], KEYS[k0 + i - a0 - 1]) end
  local r = {joins = joins}
  if ARGV[a0] ~= '' then
    local m, J, rel = string.match(ARGV[a0], '^([^|]*)|([^|]*)|(.*)$')
    r.item = {map = m, join = J, release = rel, rstream = KEYS[k0 + #joins]}
    for _, j in ipairs(joins) do
      if j[1] == J then r.item.jspec = j end
    end
  end
  return r
end

-- item_settle: mapped token tok (item idx) died and its join is settled:
-- it is dead-lettered but does not count as dead; its error waits for the
-- join, the next waiting item is released, and the join fires when it was
-- the last.
local function item_settle(c, it, tok, atts, step, worker, ev, msg, idx, deadkey)
  tok_set(c, tok, 'x', atts, step, worker)
  set(c, 's:' .. step .. ':err', msg)
  emit(c, ev, step, atts, worker, cjson.encode({error = msg, final = true, item = tonumber(idx)}))
  redis.call('XADD', deadkey, '*', 'task', c.task, 'pipeline', c.pipeline, 'step', step,
    'token', tok, 'attempts', atts, 'reason', msg, 'at', c.now, 'item', idx)
  redis.call('HDEL', c.H, 'mi:' .. tok)
  redis.call('HSET', c.H, 'je:' .. it.join .. ':' .. idx, msg)
  redis.call('HINCRBY', c.H, 'me:' .. it.join, 1)
  c.live = c.live - 1
  if it.release ~= '' then release(c, it.map, it.join, it.release, it.rstream) end
  map_join_check(c, it.join, it.jspec[2], true)
  finish(c)
end

-- End of maplib.lua.
