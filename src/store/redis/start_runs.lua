-- ARGV: prefix, holder, then per start: key, epoch, scheduled, due kind, due a, due b,
-- triggered (0/1), history_limit. Commits the runs that may start (fenced; not paused unless a
-- trigger is pending), trims each history to its limit; answers {'ok', key, seq, started...}.
local holder = ARGV[2]
local now = now_ms()
local records = {}
for i = 3, #ARGV, 8 do
  local key = ARGV[i]
  if holds(key, holder, ARGV[i + 1], now) then
    local rec, problem = read_record(key)
    if problem then return problem end
    records[i] = rec or new_record()
  end
end
local out = { 'ok' }
for i = 3, #ARGV, 8 do
  local rec = records[i]
  local key, triggered = ARGV[i], ARGV[i + 6] == '1'
  if rec and (rec.paused_by == nil or (triggered and rec.trigger_by ~= nil)) then
    set_due(rec, ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], now)
    rec.last_seq = rec.last_seq + 1
    rec.history_limit = tonumber(ARGV[i + 7])
    if triggered then
      rec.trigger_by = nil
      rec.trigger_at = nil
    end
    save_record(key, rec)
    local run = {
      seq = int(rec.last_seq), holder = holder, epoch = ARGV[i + 1], scheduled = ARGV[i + 2],
      started = int(now), attempts = '0', triggered = triggered,
    }
    redis.call('RPUSH', runs_name(key), encode_run(run))
    redis.call('LTRIM', runs_name(key), -rec.history_limit, -1)
    out[#out + 1] = key
    out[#out + 1] = int(rec.last_seq)
    out[#out + 1] = int(now)
  end
end
return out
