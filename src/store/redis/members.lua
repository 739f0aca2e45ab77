-- ARGV: prefix, scope, member, ttl_ms (member and ttl empty: only read).
-- A heartbeat sweeps memberships expired over an hour ago, announces the member, keeps the
-- scope's key alive an hour past its last expiry; answers {'ok', member, expires, ...} live now.
local RETENTION_MS = 3600000
local scope, member, ttl = ARGV[2], ARGV[3], tonumber(ARGV[4])
local name = PREFIX .. 'members:' .. scope
local now = now_ms()
if member ~= '' then
  redis.call('ZREMRANGEBYSCORE', name, '-inf', '(' .. int(now - RETENTION_MS))
  redis.call('ZADD', name, int(now + ttl), member)
  local last = redis.call('ZRANGE', name, -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', name, int(tonumber(last[2]) + RETENTION_MS))
end
local live = redis.call('ZRANGEBYSCORE', name, '(' .. int(now), '+inf', 'WITHSCORES')
local out = { 'ok' }
for i = 1, #live, 2 do
  out[#out + 1] = live[i]
  out[#out + 1] = int(tonumber(live[i + 1]))
end
return out
