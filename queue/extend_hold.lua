-- extend_hold: starting checkout extends a live hold to cover payment, once.
--
-- KEYS[1..9] seats, holds, holdexp, vhold, gacap, gasold, gaheld, seatver, seatcount
--            (lib/holds.lua)
-- ARGV[1] hold_id
-- ARGV[2] payment window in ms
-- ARGV[3] now in ms, or "" to use Redis TIME
--
-- Returns the hold's expiry in ms (extended if this was the first time), or 0 if the hold
-- is not live.
--#include clock
--#include holds

local now = now_ms(ARGV[3])
local hold_id = ARGV[1]
if not is_live(hold_id, now) then return 0 end
local h = read_hold(hold_id)
if not h then return 0 end
local expires = hold_expiry(hold_id)
if h.x ~= 1 then
  expires = math.max(expires, now + tonumber(ARGV[2]))
  h.x = 1
  redis.call('HSET', KEYS[2], hold_id, cjson.encode(h))
  redis.call('ZADD', KEYS[3], expires, hold_id)
end
return expires
