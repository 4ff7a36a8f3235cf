-- release_hold: give back a hold's seats now (the owner let go, or its payment failed).
--
-- KEYS[1..9] seats, holds, holdexp, vhold, gacap, gasold, gaheld, seatver, seatcount
--            (lib/holds.lua)
-- ARGV[1] hold_id
-- ARGV[2] visitor_id that must own the hold, or "" to skip the check
--
-- Returns 1 if released, 0 if there was no such hold, -1 if it belongs to another visitor.
--#include holds

local h = read_hold(ARGV[1])
if not h then
  redis.call('ZREM', KEYS[3], ARGV[1])
  return 0
end
if ARGV[2] ~= '' and h.v ~= ARGV[2] then return -1 end
return release(ARGV[1])
