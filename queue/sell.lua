-- sell: mark a paid order's seats sold in Redis, after PostgreSQL committed the sale.
-- Idempotent per order (stream entries may be delivered twice).
--
-- KEYS[1..9] seats, holds, holdexp, vhold, gacap, gasold, gaheld, seatver, seatcount
--            (lib/holds.lua)
-- KEYS[10] sold_orders  SET  orders already applied
-- KEYS[11] active       ZSET admitted sessions (the buyer's session ends with the purchase)
-- ARGV[1] order_id
-- ARGV[2] hold_id
-- ARGV[3] queue_id of the buyer's session
-- ARGV[4] standing section id, or ""
-- ARGV[5] quantity in that section
-- ARGV[6..] assigned seat ids
--
-- Returns 1 if applied now, 0 if this order was applied before.
--#include holds

if redis.call('SADD', KEYS[10], ARGV[1]) == 0 then return 0 end
release(ARGV[2])
for i = 6, #ARGV do set_seat(ARGV[i], 'sold') end
if ARGV[4] ~= '' and tonumber(ARGV[5]) > 0 then
  redis.call('HINCRBY', KEYS[6], ARGV[4], tonumber(ARGV[5]))
end
redis.call('ZREM', KEYS[11], ARGV[3])
seats_changed()
return 1
