-- ARGV: prefix, mode ('keys' or 'prefix'), then the keys or the key prefix.
-- Answers {'ok', 18 fields per record...} in key order; keys without a record are left out.
local now = now_ms()
local keys
if ARGV[2] == 'keys' then
  keys = {}
  for i = 3, #ARGV do keys[#keys + 1] = ARGV[i] end
elseif ARGV[3] == '' then
  keys = redis.call('ZRANGEBYLEX', PREFIX .. 'schedules', '-', '+')
else
  keys = redis.call('ZRANGEBYLEX', PREFIX .. 'schedules', '[' .. ARGV[3], '(' .. ARGV[3] .. '\255')
end
local out = { 'ok' }
for _, key in ipairs(keys) do
  local rec, problem = read_record(key)
  if problem then return problem end
  if rec then
    local _, bad = push_record(out, key, rec, now)
    if bad then return bad end
  end
end
return out
