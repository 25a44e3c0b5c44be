-- cancel.lua: cancel a task. Final at once: queued tokens are dropped by
-- begin.lua, running handlers see their context cancelled by the satellite.
-- KEYS[1] -> task state hash              dsat:{T}:t:<task>
-- KEYS[2] -> task event log               dsat:{T}:t:<task>:log
-- KEYS[3] -> partition firehose           dsat:{T}:ev
-- KEYS[4] -> partition task index         dsat:{T}:ix
-- ARGV[1] -> task id
-- ARGV[2] -> now (ms)
-- ARGV[3] -> firehose cap, in events (approximate)
-- ARGV[4] -> retention of finished tasks (ms)
-- ARGV[5] -> reason ("" for none)
-- Returns: 1 cancelled; -1 task not found; -3 already final (nothing written).
local c = context(KEYS[3], ARGV[2], ARGV[3])
new_task(c, KEYS[1], KEYS[2], ARGV[1])
c.retention = ARGV[4]
c.IX = KEYS[4]
if not load(c) then return -1 end
if is_final(c.status) then return -3 end
cancel_task(c, ARGV[5])
publish(c)
return 1
