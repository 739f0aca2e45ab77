-- ARGV: prefix, holder, then per plan: key, epoch, due kind, due a, due b, only_if_unset (0/1).
-- Sets the next due time of the holder's keys (fenced); answers {'ok', key...} written.
local holder = ARGV[2]
local now = now_ms()
local records = {}
for i = 3, #ARGV, 6 do
  local key = ARGV[i]
  if holds(key, holder, ARGV[i + 1], now) then
    local rec, problem = read_record(key)
    if problem then return problem end
    records[i] = rec or new_record()
  end
end
local out = { 'ok' }
for i = 3, #ARGV, 6 do
  local rec = records[i]
  if rec and not (ARGV[i + 5] == '1' and rec.next_due ~= nil) then
    set_due(rec, ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], now)
    save_record(ARGV[i], rec)
    out[#out + 1] = ARGV[i]
  end
end
return out
