-- ARGV: prefix, key, by, command ('pause', 'resume' or 'trigger'). Applies an operator's
-- command to the key's record (not fenced), publishes `commanded:KEY`, and answers
-- {'ok', 18 record fields}, or {'unknown'} when the key has no record.
local key, by, command = ARGV[2], ARGV[3], ARGV[4]
local now = now_ms()
local rec, problem = read_record(key)
if problem then return problem end
if rec == nil then return { 'unknown' } end
if command == 'pause' then
  if rec.paused_by == nil then rec.paused_by, rec.paused_at = by, now end
elseif command == 'resume' then
  rec.paused_by, rec.paused_at = nil, nil
elseif command == 'trigger' then
  if rec.trigger_by == nil then rec.trigger_by, rec.trigger_at = by, now end
end
local out, bad = push_record({ 'ok' }, key, rec, now)
if bad then return bad end
save_record(key, rec)
redis.call('PUBLISH', NOTICES, 'commanded:' .. key)
return out
