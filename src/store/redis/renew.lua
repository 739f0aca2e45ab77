-- ARGV: prefix, holder, ttl_ms, key, epoch, key, epoch...
-- Extends the holder's unexpired leases at those epochs; answers {'ok', key, epoch, expires, ...}.
-- Corrupted rows never match.
local holder, ttl = ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local expires = int(now + ttl)
local renewed = { 'ok' }
for i = 4, #ARGV - 1, 2 do
  local key, epoch = ARGV[i], ARGV[i + 1]
  local row = read_lease(key)
  if row and row.holder == holder and row.epoch == epoch and row.expires > now then
    redis.call('HSET', lease_name(key), 'expires', expires)
    renewed[#renewed + 1] = key
    renewed[#renewed + 1] = epoch
    renewed[#renewed + 1] = expires
  end
end
return renewed
