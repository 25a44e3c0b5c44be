-- promote.lua: move due retries from the retry set back to their step
-- streams. Any satellite may run it; two runs at once are harmless (each
-- member is removed and queued in the same atomic call).
-- KEYS[1] -> retry set                    dsat:{T}:retry
-- KEYS[2] -> dead-letter stream           dsat:{T}:dead
-- KEYS[3..2+S] -> streams of the steps named in ARGV[3..], in that order
--             (S steps; the normal level)
-- KEYS[3+S..2+2S] -> the same steps' high streams   dsat:{T}:s:<step>:hi
-- KEYS[3+2S..2+3S] -> the same steps' low streams   dsat:{T}:s:<step>:lo
-- ARGV[1] -> now (ms)
-- ARGV[2] -> most members to move in this call
-- ARGV[3..] -> step names of the pipeline
-- A member is the JSON array of a token's stream entry fields (lib.lua:
-- token_fields): {"h", "<v>|<task>|<step>|...", "payload", ...} since
-- envelope format 1.1, {"task", <task>, "step", <step>, ...} (1.0) when a
-- version before it queued the retry; either is queued as it is (readers
-- accept both). A member with a field pr (a high or low task's token)
-- goes to its level's stream.
-- Returns: the number of tokens moved (members for a step this pipeline
-- version does not have go to the dead letters instead).
local streams, levels = {}, {high = {}, low = {}}
local ns = #ARGV - 2
for i = 3, #ARGV do
  streams[ARGV[i]] = KEYS[i]
  levels.high[ARGV[i]], levels.low[ARGV[i]] = KEYS[i + ns], KEYS[i + 2 * ns]
end
-- level_of returns the streams of a member's level (field pr).
local function level_of(f)
  for i = 3, #f - 1, 2 do
    if f[i] == 'pr' then return levels[f[i + 1]] or streams end
  end
  return streams
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local moved = 0
for _, m in ipairs(due) do
  local ok, f = pcall(cjson.decode, m)
  local step = false
  if ok and type(f) == 'table' then
    if f[1] == 'h' and type(f[2]) == 'string' then
      step = string.match(f[2], '^[^|]*|[^|]*|([^|]*)|')
    else
      step = f[4] -- format 1.0
    end
  end
  redis.call('ZREM', KEYS[1], m)
  local to = step and level_of(f)[step]
  if to then
    redis.call('XADD', to, '*', unpack(f))
    moved = moved + 1
  else
    redis.call('XADD', KEYS[2], '*', 'reason', 'retry for an unknown step', 'raw', m, 'at', ARGV[1])
  end
end
return moved
