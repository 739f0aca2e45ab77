-- ARGV: prefix, holder, then per end: key, epoch, seq, outcome, attempts, has error (0/1),
-- error, due kind, due a, due b. Records each end (fenced; the run only if still kept and
-- started at that epoch; a second end keeps the first end time) and sets the next due time.
-- Answers {'ok', key...} written.
local holder = ARGV[2]
local now = now_ms()
local records = {}
for i = 3, #ARGV, 10 do
  local key = ARGV[i]
  if holds(key, holder, ARGV[i + 1], now) then
    local rec, problem = read_record(key)
    if problem then return problem end
    records[i] = rec or false
  end
end
local out = { 'ok' }
for i = 3, #ARGV, 10 do
  local rec = records[i]
  local key, epoch, seq = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  if rec then
    local runs = runs_name(key)
    local index = redis.call('LLEN', runs) - 1 - (rec.last_seq - seq)
    local text = index >= 0 and seq <= rec.last_seq and redis.call('LINDEX', runs, index)
    if text then
      local run, problem = decode_run(key, text)
      if run == nil then return problem end
      if tonumber(run.seq) == seq and run.epoch == epoch then
        -- Never before its start, even if the server's clock was set back since.
        run.ended = run.ended or int(math.max(now, read_int(run.started)))
        run.outcome = ARGV[i + 3]
        run.attempts = ARGV[i + 4]
        if ARGV[i + 5] == '1' then run.error = ARGV[i + 6] else run.error = nil end
        redis.call('LSET', runs, index, encode_run(run))
      end
    end
    set_due(rec, ARGV[i + 7], ARGV[i + 8], ARGV[i + 9], now)
    save_record(key, rec)
    out[#out + 1] = key
  end
end
return out
