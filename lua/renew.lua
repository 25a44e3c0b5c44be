-- renew.lua: extend a running token's claim (reset its idle time, so the
-- reclaimer leaves it alone) only while this consumer still owns it.
-- XCLAIM with min-idle 0 would otherwise steal a token another satellite
-- reclaimed. JUSTID: the delivery counter (the poison counter) is not
-- incremented on real Redis.
-- KEYS[1] -> the step's stream            dsat:{T}:s:<step>
-- ARGV[1] -> consumer group (the step name)
-- ARGV[2] -> consumer name (this satellite)
-- ARGV[3] -> stream entry id of the token
-- Returns: 1 renewed; 0 no longer owned (reclaimed by another consumer or
-- already acknowledged): the caller should stop renewing.
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
