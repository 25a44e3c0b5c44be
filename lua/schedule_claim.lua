-- schedule_claim.lua: claim a firing of a schedule. The caller read the
-- schedule (seq ARGV[2]), decided which due slots to fire (catch-up) and
-- the next slot; this moves the schedule past them only if nothing changed
-- it meanwhile (compare-and-set on seq), so one process wins each slot. The
-- winner submits the slots' tasks, then calls schedule_done.lua; if it
-- dies first, its claim's lease ends and another process claims the same
-- slots again (with the same idempotency keys: still one task per slot).
-- KEYS[1] -> the schedule's hash          dsat:{sched}:sc:<id>
-- KEYS[2] -> due set                      dsat:{sched}:due
-- ARGV[1] -> schedule id
-- ARGV[2] -> seq the caller read
-- ARGV[3] -> now (ms)
-- ARGV[4] -> slots to fire, comma-separated ms ("" when the policy
--            skipped every due slot)
-- ARGV[5] -> next slot (ms; "" for none)
-- ARGV[6] -> next slot's run time, jitter included (ms; "" for none)
-- ARGV[7] -> slots skipped by the catch-up policy
-- ARGV[8] -> claim token (unique per claim)
-- ARGV[9] -> claim lease (ms)
-- Returns: 1 claimed (fire ARGV[4]), 0 changed since the caller read it:
-- another process claimed it, or it was updated or deleted (do nothing).
local seq = redis.call('HGET', KEYS[1], 'seq')
if not seq or seq ~= ARGV[2] then return 0 end
local claim = ''
if ARGV[4] ~= '' then claim = ARGV[8] end
redis.call('HSET', KEYS[1], 'next', ARGV[5], 'next_run', ARGV[6], 'fire', ARGV[4], 'fire_at', ARGV[3],
  'claim', claim, 'seq', tonumber(seq) + 1)
redis.call('HINCRBY', KEYS[1], 'skipped', ARGV[7])
due(KEYS[1], KEYS[2], ARGV[1], ARGV[9])
return 1
