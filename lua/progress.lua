-- progress.lua: a running handler reported its progress (issue 18). The
-- report is recorded only while the token is live at that step and attempt
-- (and held by this worker); otherwise nothing is written. A token not yet
-- begun (its handler is still in the satellite's begin window) gets its
-- ACK first, at the time its handler started, as complete does, so the
-- events stay in order: ACK, PROGRESS, END. Its later begin call then finds
-- it running with this worker (already applied).
-- KEYS[1] -> partition firehose           dsat:{T}:ev
-- KEYS[2] -> task state hash              dsat:{T}:t:<task>
-- KEYS[3] -> task event log               dsat:{T}:t:<task>:log
-- KEYS[4] -> partition task index         dsat:{T}:ix
-- ARGV[1] -> now (ms)
-- ARGV[2] -> firehose cap, in events (approximate)
-- ARGV[3] -> task id
-- ARGV[4] -> token id
-- ARGV[5] -> attempt (from the envelope)
-- ARGV[6] -> step name
-- ARGV[7] -> worker name
-- ARGV[8] -> the time the handler started (ms; "" for now), for a late ACK
-- ARGV[9] -> progress, a number in [0, 1] as text (checked by the caller)
-- ARGV[10] -> message (at most 256 bytes, UTF-8; checked by the caller)
-- ARGV[11] -> the event's detail, JSON {"progress": p, "message": m}
-- The step's field p:<step> becomes "<progress>|<now ms>|<message>" (the
-- step's latest report; complete removes it, dsat/state.go reads it).
-- Returns: 1 recorded (PROGRESS emitted, after an ACK for a token not
-- begun); 0 not recorded: the token is not live at that step and attempt,
-- or another worker holds it; -1 task not found; -2 task cancelled.
local step, att, worker, tok = ARGV[6], ARGV[5], ARGV[7], ARGV[4]
local c = context(KEYS[1], ARGV[1], ARGV[2])
new_task(c, KEYS[2], KEYS[3], ARGV[3])
c.IX = KEYS[4]
local v = redis.call('HMGET', c.H, 'status', 'seq', 'k:' .. tok)
if not v[1] then return -1 end
if v[1] == 'cancelled' then return -2 end
local st, tatt, tstep, tw = tok_parse(v[3])
if is_final(v[1]) or not st or tstep ~= step or tatt ~= att or st == 'd' or st == 'x' or st == 'c' then return 0 end
if st == 'r' and tw ~= worker then return 0 end

c.seq, c.status = tonumber(v[2]) or 0, v[1]
if st ~= 'r' then
  tok_set(c, tok, 'r', att, step, worker)
  ack_late(c, step, att, worker, ARGV[8])
end
set(c, 'p:' .. step, ARGV[9] .. '|' .. c.now .. '|' .. ARGV[10])
emit(c, 'PROGRESS', step, att, worker, ARGV[11])
save(c)
publish(c)
return 1
