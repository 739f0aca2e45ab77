-- ARGV: prefix, holder, key, epoch, key, epoch...
-- Expires the holder's unexpired leases at those epochs now, and publishes `released:KEY` for
-- each on the prefix's notice channel. Answers {'ok'}.
local holder = ARGV[2]
local now = now_ms()
for i = 3, #ARGV - 1, 2 do
  local key, epoch = ARGV[i], ARGV[i + 1]
  local row = read_lease(key)
  if row and row.holder == holder and row.epoch == epoch and row.expires > now then
    redis.call('HSET', lease_name(key), 'expires', int(now))
    redis.call('PUBLISH', NOTICES, 'released:' .. key)
  end
end
return { 'ok' }
