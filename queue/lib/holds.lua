-- Shared by the hold scripts (included where a script says `--#include holds`).
-- Every hold script passes the same first eight KEYS:
--   KEYS[1] seats    HASH  seat_id -> hold_id, or "sold"
--   KEYS[2] holds    HASH  hold_id -> cjson {v = visitor, q = queue_id, s = {seat ids},
--                                            g = {section = quantity}, x = extended (0/1)}
--   KEYS[3] holdexp  ZSET  hold_id -> expiry ms (the only expiry: a time comparison)
--   KEYS[4] vhold    HASH  visitor_id -> hold_id (one live hold per visitor)
--   KEYS[5] gacap    HASH  section -> capacity (standing sections)
--   KEYS[6] gasold   HASH  section -> sold
--   KEYS[7] gaheld   HASH  section -> quantity in holds not yet tidied away
--   KEYS[8] seatver  STRING counter bumped by every change of seat state (seat map caches)

local function seats_changed()
  redis.call('INCR', KEYS[8])
end

local function hold_expiry(hold_id)
  local e = redis.call('ZSCORE', KEYS[3], hold_id)
  if e then return tonumber(e) end
  return nil
end

local function is_live(hold_id, now)
  local e = hold_expiry(hold_id)
  return e ~= nil and e > now
end

local function read_hold(hold_id)
  local raw = redis.call('HGET', KEYS[2], hold_id)
  if not raw then return nil end
  local h = cjson.decode(raw)
  if type(h.s) ~= 'table' then h.s = {} end
  if type(h.g) ~= 'table' then h.g = {} end
  return h
end

-- Remove a hold and give back what it held; seats re-held or sold meanwhile are left alone.
local function release(hold_id)
  local h = read_hold(hold_id)
  redis.call('ZREM', KEYS[3], hold_id)
  if not h then return 0 end
  for _, seat in ipairs(h.s) do
    if redis.call('HGET', KEYS[1], seat) == hold_id then redis.call('HDEL', KEYS[1], seat) end
  end
  for section, quantity in pairs(h.g) do
    redis.call('HINCRBY', KEYS[7], section, -quantity)
  end
  if redis.call('HGET', KEYS[4], h.v) == hold_id then redis.call('HDEL', KEYS[4], h.v) end
  redis.call('HDEL', KEYS[2], hold_id)
  seats_changed()
  return 1
end

-- Tidy holds whose time has passed; correctness never waits for this.
local function purge_expired(now, limit)
  local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, limit)
  for _, hold_id in ipairs(expired) do release(hold_id) end
  return #expired
end
