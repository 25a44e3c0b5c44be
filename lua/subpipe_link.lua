-- subpipe_link.lua: record a child task's parent (a sub-pipeline step's
-- token) in the child's state, right after the child's submission.
-- KEYS[1] -> the child's state hash       dsat:{C}:t:<child>
-- ARGV[1] -> the parent: "<task>|<step>|<token>|<attempt>"
-- Returns: 1 linked (or already); 0 the child does not exist.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'parent', ARGV[1])
return 1
