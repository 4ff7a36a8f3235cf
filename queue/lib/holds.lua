-- Shared by the hold scripts (included where a script says `--#include holds`).
-- Every hold script passes the same first nine KEYS:
--   KEYS[1] seats    HASH  seat_id -> hold_id, or "sold"
--   KEYS[2] holds    HASH  hold_id -> cjson {v = visitor, q = queue_id, s = {seat ids},
--                                            g = {section = quantity}, x = extended (0/1)}
--   KEYS[3] holdexp  ZSET  hold_id -> expiry ms (the only expiry: a time comparison)
--   KEYS[4] vhold    HASH  visitor_id -> hold_id (one live hold per visitor)
--   KEYS[5] gacap    HASH  section -> capacity (standing sections)
--   KEYS[6] gasold   HASH  section -> sold
--   KEYS[7] gaheld   HASH  section -> quantity in holds not yet tidied away
--   KEYS[8] seatver  STRING counter bumped by every change of seat state (seat map caches)
--   KEYS[9] seatcount HASH held, sold: entries of KEYS[1] by kind (a hold id / "sold"), kept by
--                          every write of KEYS[1] below, so readers never scan the seats

local function seats_changed()
  redis.call('INCR', KEYS[8])
end

-- The counters of KEYS[9], made from KEYS[1] when they are missing (seat state built before
-- they existed); then every write of KEYS[1] goes through set_seat / free_seat.
local function ensure_counts()
  if redis.call('EXISTS', KEYS[9]) == 1 then return end
  local held, sold = 0, 0
  local all = redis.call('HGETALL', KEYS[1])
  for i = 2, #all, 2 do
    if all[i] == 'sold' then sold = sold + 1 else held = held + 1 end
  end
  redis.call('HSET', KEYS[9], 'held', held, 'sold', sold)
end

local function kind_of(holder)
  if holder == 'sold' then return 'sold' end
  return 'held'
end

-- Seat `seat` now belongs to `holder` (a hold id, or "sold").
local function set_seat(seat, holder)
  ensure_counts()
  local old = redis.call('HGET', KEYS[1], seat)
  if old == holder then return end
  if old then redis.call('HINCRBY', KEYS[9], kind_of(old), -1) end
  redis.call('HSET', KEYS[1], seat, holder)
  redis.call('HINCRBY', KEYS[9], kind_of(holder), 1)
end

-- Seat `seat` is free again if it belongs to `holder` now.
local function free_seat(seat, holder)
  if redis.call('HGET', KEYS[1], seat) ~= holder then return end
  ensure_counts()
  redis.call('HDEL', KEYS[1], seat)
  redis.call('HINCRBY', KEYS[9], kind_of(holder), -1)
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
  for _, seat in ipairs(h.s) do free_seat(seat, hold_id) end
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
