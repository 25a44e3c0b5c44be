-- schedlib.lua: the helper the schedule scripts share (prepended to them).
-- due(H, DUE, id, lease) puts the schedule in the due set at the time it
-- next needs a firing: the end of a claimed firing's lease, or its next
-- slot's run time; a paused schedule, or one with no next slot, leaves it.
local function due(H, DUE, id, lease)
  local f = redis.call('HMGET', H, 'paused', 'next_run', 'fire', 'fire_at')
  local score = nil
  if f[3] and f[3] ~= '' then score = tonumber(f[4]) + tonumber(lease) end
  if f[1] ~= '1' and f[2] and f[2] ~= '' then
    local run = tonumber(f[2])
    if not score or run < score then score = run end
  end
  if score and (f[1] ~= '1' or (f[3] and f[3] ~= '')) then
    redis.call('ZADD', DUE, score, id)
  else
    redis.call('ZREM', DUE, id)
  end
end
