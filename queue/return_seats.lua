-- return_seats: put a refunded order's seats back on sale in Redis, after PostgreSQL committed
-- the refund (sold_seats rows gone, ga_sales.sold lowered). Idempotent per order (the fast path
-- and the stream consumer may both run it). The order stays in sold_orders, so a late or
-- redelivered `order_paid` entry never marks its seats sold again.
--
-- KEYS[1..9] seats, holds, holdexp, vhold, gacap, gasold, gaheld, seatver, seatcount
--            (lib/holds.lua)
-- KEYS[10] sold_orders      SET  orders whose seats were marked sold in Redis
-- KEYS[11] returned_orders  SET  refunded orders whose seats came back
-- ARGV[1] order_id
-- ARGV[2] hold_id of the order (its hold, if still there, is released)
-- ARGV[3] standing section id, or ""
-- ARGV[4] quantity in that section
-- ARGV[5..] assigned seat ids
--
-- Returns 1 if the seats came back now, 0 if this order was returned before.
--#include holds

if redis.call('SADD', KEYS[11], ARGV[1]) == 0 then return 0 end
local was_sold = redis.call('SADD', KEYS[10], ARGV[1]) == 0
release(ARGV[2])
for i = 5, #ARGV do free_seat(ARGV[i], 'sold') end
local quantity = tonumber(ARGV[4])
if was_sold and ARGV[3] ~= '' and quantity > 0 then
  local sold = tonumber(redis.call('HGET', KEYS[6], ARGV[3]) or '0')
  redis.call('HSET', KEYS[6], ARGV[3], math.max(0, sold - quantity))
end
seats_changed()
return 1
