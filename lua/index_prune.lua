-- index_prune.lua: remove from a partition's task index the members of
-- tasks whose keys expired (a finished task's keys expire a retention
-- after it ended; the scripts that end a task pay nothing for that). The
-- caller (dsat.Client.PruneIndex, run by the time keepers) picked the
-- candidates: final members created more than a retention ago. A task
-- whose state hash is gone never comes back, so any number of runs at
-- once are harmless.
-- KEYS[1] -> partition task index         dsat:{T}:ix
-- KEYS[1+i] -> task i's state hash        dsat:{T}:t:<task>        (i = 1..n)
-- ARGV[i] -> task i's index member (ARGV[1] the first)
-- Returns: the number of members removed.
local gone = {}
for i = 1, #ARGV do
  if redis.call('EXISTS', KEYS[1 + i]) == 0 then gone[#gone + 1] = ARGV[i] end
end
if #gone == 0 then return 0 end
return redis.call('ZREM', KEYS[1], unpack(gone))
