-- promote.lua: move due retries from the retry set back to their step
-- streams. Any satellite may run it; two runs at once are harmless (each
-- member is removed and queued in the same atomic call).
-- KEYS[1] -> retry set                    dsat:{T}:retry
-- KEYS[2] -> dead-letter stream           dsat:{T}:dead
-- KEYS[3..] -> streams of the steps named in ARGV[3..], in that order
-- ARGV[1] -> now (ms)
-- ARGV[2] -> most members to move in this call
-- ARGV[3..] -> step names of the pipeline
-- Returns: the number of tokens moved (members for a step this pipeline
-- version does not have go to the dead letters instead).
local streams = {}
for i = 3, #ARGV do streams[ARGV[i]] = KEYS[i] end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local moved = 0
for _, m in ipairs(due) do
  local ok, f = pcall(cjson.decode, m)
  local step = ok and type(f) == 'table' and f[4]
  redis.call('ZREM', KEYS[1], m)
  if step and streams[step] then
    redis.call('XADD', streams[step], '*', unpack(f))
    moved = moved + 1
  else
    redis.call('XADD', KEYS[2], '*', 'reason', 'retry for an unknown step', 'raw', m, 'at', ARGV[1])
  end
end
return moved
