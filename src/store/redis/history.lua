-- ARGV: prefix, key, limit. Answers {'ok', 10 fields per run...}, newest first, or {'unknown'}
-- when the key has no record.
local key, limit = ARGV[2], tonumber(ARGV[3])
local rec, problem = read_record(key)
if problem then return problem end
if rec == nil then return { 'unknown' } end
local texts = redis.call('LRANGE', runs_name(key), -limit, -1)
local out = { 'ok' }
for i = #texts, 1, -1 do
  local run, bad = decode_run(key, texts[i])
  if run == nil then return bad end
  push_run(out, run)
end
return out
