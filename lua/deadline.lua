-- deadline.lua: cancel tasks whose deadline (?deadline= at submit) has
-- passed, with the reason "deadline". Any process may run it; two runs at
-- once are harmless (a task already final is left alone).
-- KEYS[1] -> partition deadline set       dsat:{T}:deadlines
-- KEYS[2] -> partition firehose           dsat:{T}:ev
-- KEYS[3] -> partition task index         dsat:{T}:ix
-- KEYS[2+2i] -> task i's state hash       dsat:{T}:t:<task>        (i = 1..n)
-- KEYS[3+2i] -> task i's event log        dsat:{T}:t:<task>:log
-- ARGV[1] -> now (ms)
-- ARGV[2] -> firehose cap, in events (approximate)
-- ARGV[3] -> retention of finished tasks (ms)
-- ARGV[3+i] -> task i's id (a member of the deadline set)
-- Returns: the number of tasks cancelled. Each task leaves the set, whether
-- it was cancelled, had ended before, is unknown, or its deadline is not
-- due yet after all (then it stays: the caller read the set a moment ago).
local c = context(KEYS[2], ARGV[1], ARGV[2])
c.retention = ARGV[3]
c.IX = KEYS[3]
local now = tonumber(ARGV[1])
local n = 0
for i = 1, #ARGV - 3 do
  local id = ARGV[3 + i]
  local due = tonumber(redis.call('ZSCORE', KEYS[1], id))
  if due and due <= now then
    redis.call('ZREM', KEYS[1], id)
    new_task(c, KEYS[2 + 2 * i], KEYS[3 + 2 * i], id)
    if load(c) and not is_final(c.status) then
      cancel_task(c, 'deadline')
      n = n + 1
    end
  end
end
publish(c)
return n
