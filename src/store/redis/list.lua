-- ARGV: prefix, key prefix. Answers {'ok', now, key, holder, epoch, expires, ...} in key order.
local wanted = ARGV[2]
local now = now_ms()
local keys
if wanted == '' then
  keys = redis.call('ZRANGEBYLEX', PREFIX .. 'leases', '-', '+')
else
  keys = redis.call('ZRANGEBYLEX', PREFIX .. 'leases', '[' .. wanted, '(' .. wanted .. '\255')
end
local out = { 'ok', now }
for _, key in ipairs(keys) do
  local row, problem = read_lease(key)
  if problem then return corrupted('leases', key, problem) end
  if row then
    out[#out + 1] = key
    out[#out + 1] = row.holder
    out[#out + 1] = row.epoch
    out[#out + 1] = int(row.expires)
  end
end
return out
