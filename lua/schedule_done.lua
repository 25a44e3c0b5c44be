-- schedule_done.lua: record a claimed firing's outcome and end the claim,
-- only if the claim is still the caller's (not taken over after its lease,
-- the schedule not deleted).
-- KEYS[1] -> the schedule's hash          dsat:{sched}:sc:<id>
-- KEYS[2] -> due set                      dsat:{sched}:due
-- ARGV[1] -> schedule id
-- ARGV[2] -> claim token (as given to schedule_claim.lua)
-- ARGV[3] -> the last slot fired (ms)
-- ARGV[4] -> its task id ("" when it could not be submitted)
-- ARGV[5] -> now (ms)
-- ARGV[6] -> error text ("" when every task was submitted)
-- ARGV[7] -> claim lease (ms)
-- Returns: 1 recorded, 0 the claim is no longer the caller's (nothing
-- written).
local seq = redis.call('HGET', KEYS[1], 'seq')
if not seq or redis.call('HGET', KEYS[1], 'claim') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'fire', '', 'claim', '', 'last_slot', ARGV[3], 'last_run', ARGV[5],
  'last_error', ARGV[6], 'seq', tonumber(seq) + 1)
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'last_task', ARGV[4]) end
due(KEYS[1], KEYS[2], ARGV[1], ARGV[7])
return 1
