-- retry.lua: re-drive a failed task: every dead token is queued again at the
-- step where it died, with fresh attempts (a new token id each).
-- KEYS[1] -> task state hash              dsat:{T}:t:<task>
-- KEYS[2] -> task event log               dsat:{T}:t:<task>:log
-- KEYS[3] -> partition firehose           dsat:{T}:ev
-- KEYS[4] -> dead-letter stream           dsat:{T}:dead
-- KEYS[5] -> partition task index         dsat:{T}:ix
-- KEYS[6..5+S] -> streams of the steps named in ARGV[5..], in that order
--             (S steps; the normal level)
-- KEYS[6+S..5+2S] -> the same steps' high streams   dsat:{T}:s:<step>:hi
-- KEYS[6+2S..5+3S] -> the same steps' low streams   dsat:{T}:s:<step>:lo
-- ARGV[1] -> task id
-- ARGV[2] -> now (ms)
-- ARGV[3] -> firehose cap, in events (approximate)
-- ARGV[4] -> envelope format version (X.Y)
-- ARGV[5..] -> step names of the pipeline
-- The tokens go to the streams of the task's priority (hash field pr).
-- Returns: {1, n} re-driven n tokens; {-1} task not found; {-3} not failed
-- (nothing written); {-6, step} a dead token's step is not in this
-- pipeline version (nothing written).
local c = context(KEYS[3], ARGV[2], ARGV[3])
new_task(c, KEYS[1], KEYS[2], ARGV[1])
c.v = ARGV[4]
c.IX = KEYS[5]
if not load(c) then return {-1} end
if c.status ~= 'failed' then return {-3} end
local streams = {}
local ns, shift = #ARGV - 4, 0
c.pr = redis.call('HGET', c.H, 'pr')
if c.pr == 'high' then shift = ns elseif c.pr == 'low' then shift = 2 * ns else c.pr = false end
for i = 5, #ARGV do streams[ARGV[i]] = KEYS[i + 1 + shift] end
local toks = split(redis.call('HGET', c.H, 'xl'))
local dead = {}
for i, t in ipairs(toks) do
  dead[i] = cjson.decode(redis.call('HGET', c.H, 'x:' .. t))
  if not streams[dead[i][2]] then return {-6, dead[i][2]} end
end

-- All checks done: write.
local steps = {}
for i, t in ipairs(toks) do
  local did, step, payload = dead[i][1], dead[i][2], dead[i][3]
  local tk = new_token(c, streams[step], step, payload)
  if dead[i][4] then
    set(c, 'mi:' .. tk, dead[i][4]) -- a map's item keeps its index (maplib.lua)
    redis.call('HDEL', c.H, 'k:' .. t) -- and counts once, by its new token (steps.<step>.items)
  end
  set(c, 's:' .. step .. ':err', '')
  redis.call('HDEL', c.H, 'x:' .. t)
  redis.call('XDEL', KEYS[4], did)
  steps[i] = step
end
redis.call('HDEL', c.H, 'xl', 'md') -- md: waiting items may be released again (maplib.lua)
redis.call('HDEL', c.H, 'of') -- the failure handler runs again if the task fails again
c.dead = 0
index_move(c, 'running')
set(c, 'status', 'running'); set(c, 'error', '')
emit(c, 'RETRY', '', '0', '', cjson.encode({steps = steps}))
save(c)
redis.call('PERSIST', c.H)
redis.call('PERSIST', c.LOG)
publish(c)
return {1, #toks}
