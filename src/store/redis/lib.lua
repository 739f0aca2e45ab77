-- Shared helpers, prepended to every script. ARGV[1] is always the key prefix.
-- Numbers are kept below 2^53 (Lua numbers are doubles) and written with '%d', never tostring.
local PREFIX = ARGV[1]
local FORMAT = 1
local EPOCH_PER_MS = 1000
local MAX_EXACT = 9007199254740992

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function int(n)
  return string.format('%d', n)
end

-- An integer field: nil when absent, false when not an exact integer.
local function read_int(value)
  if value == false or value == nil then return nil end
  if type(value) ~= 'string' or not string.match(value, '^%-?%d+$') then return false end
  local n = tonumber(value)
  if n == nil or n > MAX_EXACT or n < -MAX_EXACT then return false end
  return n
end

local function lease_name(key) return PREFIX .. 'lease:' .. key end
local function schedule_name(key) return PREFIX .. 'schedule:' .. key end
local function runs_name(key) return PREFIX .. 'runs:' .. key end
local NOTICES = PREFIX .. 'notices'

-- A lease row: nil if absent, or the row, or (nil, problem) if it breaks the invariants.
local function read_lease(key)
  local r = redis.call('HMGET', lease_name(key), 'holder', 'epoch', 'expires')
  if r[1] == false and r[2] == false and r[3] == false then return nil end
  if r[1] == false or r[1] == '' then return nil, 'it has no holder' end
  local epoch = read_int(r[2])
  if not epoch or epoch < 0 or not string.match(r[2], '^%d+$') then
    return nil, 'its epoch `' .. tostring(r[2]) .. '` is not a non-negative integer'
  end
  local expires = read_int(r[3])
  if not expires then
    return nil, 'its expiry `' .. tostring(r[3]) .. '` is not an integer'
  end
  return { holder = r[1], epoch = r[2], expires = expires }
end

-- Whether `holder` holds `key` at `epoch` (a string), unexpired at `now`: the schedule fence.
local function holds(key, holder, epoch, now)
  local row = read_lease(key)
  return row ~= nil and row.holder == holder and row.epoch == epoch and row.expires > now
end

local function corrupted(table_name, key, problem)
  return { 'corrupted', table_name, key, problem }
end

-- A schedule record: nil if absent, or the record, or (nil, error reply).
local function read_record(key)
  local flat = redis.call('HGETALL', schedule_name(key))
  if #flat == 0 then return nil end
  local f = {}
  for i = 1, #flat, 2 do f[flat[i]] = flat[i + 1] end
  local format = read_int(f.format)
  if not format then return nil, corrupted('schedules', key, 'it has no valid format') end
  if format > FORMAT then return nil, { 'newer', 'schedules', key, int(format) } end
  local rec = {}
  for _, name in ipairs({ 'anchor', 'next_due', 'last_seq', 'history_limit', 'paused_at', 'trigger_at' }) do
    local n = read_int(f[name])
    if n == false then
      return nil, corrupted('schedules', key, 'its ' .. name .. ' `' .. tostring(f[name]) .. '` is not an integer')
    end
    rec[name] = n
  end
  if rec.last_seq == nil or rec.last_seq < 0 then
    return nil, corrupted('schedules', key, 'its last_seq is missing or negative')
  end
  rec.history_limit = rec.history_limit or 1
  rec.paused_by = f.paused_by
  rec.trigger_by = f.trigger_by
  if (rec.paused_by == nil) ~= (rec.paused_at == nil) or (rec.trigger_by == nil) ~= (rec.trigger_at == nil) then
    return nil, corrupted('schedules', key, 'an operator mark lacks its name or time')
  end
  return rec
end

local function save_record(key, rec)
  local name = schedule_name(key)
  redis.call('DEL', name)
  local fields = { 'format', int(FORMAT), 'last_seq', int(rec.last_seq), 'history_limit', int(rec.history_limit) }
  for _, field in ipairs({ 'anchor', 'next_due', 'paused_at', 'trigger_at' }) do
    if rec[field] ~= nil then
      fields[#fields + 1] = field
      fields[#fields + 1] = int(rec[field])
    end
  end
  for _, field in ipairs({ 'paused_by', 'trigger_by' }) do
    if rec[field] ~= nil then
      fields[#fields + 1] = field
      fields[#fields + 1] = rec[field]
    end
  end
  redis.call('HSET', name, unpack(fields))
  redis.call('ZADD', PREFIX .. 'schedules', 0, key)
end

local OUTCOMES = { succeeded = true, failed = true, panicked = true, timed_out = true, cancelled = true }

-- A run as stored (JSON of strings), checked: the run, or (nil, error reply).
local function decode_run(key, text)
  local ok, run = pcall(cjson.decode, text)
  if not ok or type(run) ~= 'table' then return nil, corrupted('runs', key, 'a run is not valid JSON') end
  for _, name in ipairs({ 'seq', 'scheduled', 'started', 'attempts' }) do
    if not read_int(run[name]) then
      return nil, corrupted('runs', key, 'a run\'s ' .. name .. ' is not an integer')
    end
  end
  if type(run.epoch) ~= 'string' or not string.match(run.epoch, '^%d+$') or not read_int(run.epoch) then
    return nil, corrupted('runs', key, 'a run\'s epoch `' .. tostring(run.epoch) .. '` is not a non-negative integer')
  end
  if type(run.holder) ~= 'string' or run.holder == '' then
    return nil, corrupted('runs', key, 'a run has no holder')
  end
  if run.ended ~= nil and not read_int(run.ended) then
    return nil, corrupted('runs', key, 'a run\'s end is not an integer')
  end
  if run.outcome ~= nil and not OUTCOMES[run.outcome] then
    return nil, corrupted('runs', key, 'a run has the unknown outcome `' .. tostring(run.outcome) .. '`')
  end
  if run.error ~= nil and type(run.error) ~= 'string' then
    return nil, corrupted('runs', key, 'a run\'s error is not text')
  end
  return run
end

local function encode_run(run)
  return cjson.encode(run)
end

-- The ten reply fields of a run (or ten falses).
local function push_run(out, run)
  if run == nil then
    for _ = 1, 10 do out[#out + 1] = false end
    return
  end
  out[#out + 1] = run.seq
  out[#out + 1] = run.holder
  out[#out + 1] = run.epoch
  out[#out + 1] = run.scheduled
  out[#out + 1] = run.started
  out[#out + 1] = run.ended or false
  out[#out + 1] = run.outcome or false
  out[#out + 1] = run.attempts
  out[#out + 1] = run.error or false
  out[#out + 1] = run.triggered and '1' or '0'
end

-- The eighteen reply fields of a record with its last run, or (nil, error reply).
local function push_record(out, key, rec, now)
  local last = redis.call('LINDEX', runs_name(key), -1)
  local run = nil
  if last then
    local problem
    run, problem = decode_run(key, last)
    if run == nil then return nil, problem end
  end
  out[#out + 1] = key
  out[#out + 1] = now
  out[#out + 1] = rec.anchor and int(rec.anchor) or false
  out[#out + 1] = rec.next_due and int(rec.next_due) or false
  out[#out + 1] = rec.paused_by or false
  out[#out + 1] = rec.paused_at and int(rec.paused_at) or false
  out[#out + 1] = rec.trigger_by or false
  out[#out + 1] = rec.trigger_at and int(rec.trigger_at) or false
  push_run(out, run)
  return out
end

local function grid_after(anchor, interval, now)
  if now < anchor then return anchor end
  if interval < 1 then interval = 1 end
  local next_due = anchor + (math.floor((now - anchor) / interval) + 1) * interval
  if next_due > MAX_EXACT then return MAX_EXACT end
  return next_due
end

-- Sets the next due time as asked: kind `u` (unchanged), `at`, `after`, `grid` (a = anchor, b = interval).
local function set_due(rec, kind, a, b, now)
  if kind == 'at' then
    rec.next_due = tonumber(a)
  elseif kind == 'after' then
    rec.next_due = now + tonumber(a)
  elseif kind == 'grid' then
    if rec.anchor == nil then rec.anchor = tonumber(a) end
    rec.next_due = grid_after(rec.anchor, tonumber(b), now)
  end
end

local function new_record()
  return { last_seq = 0, history_limit = 1 }
end
