-- hold: all-or-nothing hold of assigned seats and/or a quantity in one standing section.
-- A visitor has at most one live hold: a new hold replaces the old one atomically (the old
-- hold's seats count as available to its owner). In claim mode (used to honour a late
-- payment) the session is not checked and the visitor's other hold is left alone.
--
-- KEYS[1..9] seats, holds, holdexp, vhold, gacap, gasold, gaheld, seatver, seatcount
--            (lib/holds.lua)
-- KEYS[10] active     ZSET  admitted sessions: queue_id -> expiry ms
-- KEYS[11] inventory  HASH  present once seat state was built from PostgreSQL
-- KEYS[12] attempts  STRING the visitor's hold attempts in this window (lib/window.lua)
-- ARGV[1] hold_id for the new hold
-- ARGV[2] visitor_id
-- ARGV[3] queue_id of the visitor's admitted session
-- ARGV[4] hold length in ms
-- ARGV[5] now in ms, or "" to use Redis TIME
-- ARGV[6] standing section id, or ""
-- ARGV[7] quantity in that section (0 if none)
-- ARGV[8] "1" for claim mode, "0" otherwise
-- ARGV[9] most hold attempts a visitor may make in a window (KEYS[12]); 0: not counted
-- ARGV[10] window length in ms
-- ARGV[11..] assigned seat ids
--
-- Returns {"ok", expires_ms, replaced_hold_id or ""}
--      or {"unavailable", seat_id...}         (assigned seats held by others or sold)
--      or {"ga_unavailable", available_now}   (not enough standing capacity)
--      or {"no_session"}                      (the admitted session is over)
--      or {"not_ready"}                       (seat state must be rebuilt first)
--      or {"rate_limited", ms until the window resets}  (too many attempts: nothing else done)
--#include clock
--#include holds
--#include window

local now = now_ms(ARGV[5])
local hold_id, visitor, queue_id = ARGV[1], ARGV[2], ARGV[3]
local claim = ARGV[8] == '1'
if redis.call('EXISTS', KEYS[11]) == 0 then return {'not_ready'} end
local most = tonumber(ARGV[9])
if most > 0 then
  local attempt = count_attempt(KEYS[12], most, tonumber(ARGV[10]))
  if attempt[1] == 0 then return {'rate_limited', attempt[2]} end
end
purge_expired(now, 100)

if claim and is_live(hold_id, now) then return {'ok', hold_expiry(hold_id), ''} end
if not claim then
  local session = redis.call('ZSCORE', KEYS[10], queue_id)
  if not session or tonumber(session) <= now then return {'no_session'} end
end

local own = nil
if not claim then
  own = redis.call('HGET', KEYS[4], visitor)
  if own and not is_live(own, now) then own = nil end
end

local taken = {}
local seats = {}
for i = 11, #ARGV do
  local seat = ARGV[i]
  seats[#seats + 1] = seat
  local holder = redis.call('HGET', KEYS[1], seat)
  if holder == 'sold' then
    taken[#taken + 1] = seat
  elseif holder and holder ~= own and holder ~= hold_id and is_live(holder, now) then
    taken[#taken + 1] = seat
  end
end
if #taken > 0 then
  table.insert(taken, 1, 'unavailable')
  return taken
end

local section, quantity = ARGV[6], tonumber(ARGV[7])
local ga = {}
if section ~= '' and quantity > 0 then
  local capacity = tonumber(redis.call('HGET', KEYS[5], section) or '0')
  local sold = tonumber(redis.call('HGET', KEYS[6], section) or '0')
  local held = tonumber(redis.call('HGET', KEYS[7], section) or '0')
  local mine = 0
  -- `own or false`: ipairs stops at a nil, which would skip hold_id when there is no own hold
  for i, other in ipairs({own or false, hold_id}) do
    if other and (i == 1 or other ~= own) then
      local h = read_hold(other)
      if h and h.g[section] then mine = mine + h.g[section] end
    end
  end
  local available = capacity - sold - held + mine
  if quantity > available then return {'ga_unavailable', math.max(0, available)} end
  ga[section] = quantity
end

local replaced = ''
if own and own ~= hold_id then
  release(own)
  replaced = own
end
release(hold_id)

local expires = now + tonumber(ARGV[4])
for _, seat in ipairs(seats) do set_seat(seat, hold_id) end
for s, q in pairs(ga) do redis.call('HINCRBY', KEYS[7], s, q) end
local record = {v = visitor, q = queue_id, s = seats, g = ga, x = 0}
redis.call('HSET', KEYS[2], hold_id, cjson.encode(record))
redis.call('ZADD', KEYS[3], expires, hold_id)
if not claim then redis.call('HSET', KEYS[4], visitor, hold_id) end
seats_changed()
return {'ok', expires, replaced}
