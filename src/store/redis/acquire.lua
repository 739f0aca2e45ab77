-- ARGV: prefix, holder, ttl_ms, free_for_ms, key...
-- Takes each key that is absent, free for free_for, or the holder's own; answers
-- {'ok', key, epoch, expires, ...}. A corrupted row anywhere in the batch takes nothing.
local holder, ttl, free_for = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
local rows = {}
for i = 5, #ARGV do
  local row, problem = read_lease(ARGV[i])
  if problem then return corrupted('leases', ARGV[i], problem) end
  rows[i] = row or false
end
local won = { 'ok' }
local expires = now + ttl
for i = 5, #ARGV do
  local key, row = ARGV[i], rows[i]
  local epoch = nil
  if row == false then
    -- A new key's epochs start at the server's time in ms times EPOCH_PER_MS, so that a key
    -- recreated after its row was lost (a restart without persistence) starts above them.
    epoch = int(now * EPOCH_PER_MS)
  elseif row.holder == holder or row.expires <= now - free_for then
    epoch = int(tonumber(row.epoch) + 1)
  end
  if epoch then
    redis.call('HSET', lease_name(key), 'holder', holder, 'epoch', epoch, 'expires', int(expires))
    if row == false then redis.call('ZADD', PREFIX .. 'leases', 0, key) end
    won[#won + 1] = key
    won[#won + 1] = epoch
    won[#won + 1] = int(expires)
  end
end
return won
