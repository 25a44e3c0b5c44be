-- schedule_put.lua: create or replace a schedule's definition, only if
-- nothing changed it since the caller read it (compare-and-set on seq,
-- which every schedule script increments). The caller computed the next
-- slot (kept when the timing did not change).
-- KEYS[1] -> the schedule's hash          dsat:{sched}:sc:<id>
-- KEYS[2] -> due set                      dsat:{sched}:due
-- KEYS[3] -> index of every schedule      dsat:{sched}:ids
-- ARGV[1] -> schedule id
-- ARGV[2] -> seq the caller read ("" when it found no schedule)
-- ARGV[3] -> definition (JSON)
-- ARGV[4] -> "1" paused, "0" active
-- ARGV[5] -> next slot (ms; "" for none)
-- ARGV[6] -> next slot's run time, jitter included (ms; "" for none)
-- ARGV[7] -> now (ms)
-- ARGV[8] -> most schedules allowed
-- ARGV[9] -> claim lease (ms)
-- Returns: 1 created, 2 replaced, -1 changed since the caller read it
-- (read again), -2 too many schedules (nothing written).
local seq = redis.call('HGET', KEYS[1], 'seq')
if (seq or '') ~= ARGV[2] then return -1 end
local code = 2
if not seq then
  if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[8]) then return -2 end
  redis.call('HSET', KEYS[1], 'created', ARGV[7], 'skipped', '0')
  code = 1
end
redis.call('HSET', KEYS[1], 'def', ARGV[3], 'paused', ARGV[4], 'next', ARGV[5], 'next_run', ARGV[6],
  'updated', ARGV[7], 'seq', (tonumber(seq) or 0) + 1)
redis.call('ZADD', KEYS[3], 0, ARGV[1])
due(KEYS[1], KEYS[2], ARGV[1], ARGV[9])
return code
