-- rebuild_inventory: recompute live seat state from PostgreSQL's truth plus the holds still
-- live in Redis. Run when the inventory marker is missing (Redis restarted or flushed), or on
-- demand with force. Pending orders whose holds were lost get them back while seats allow.
--
-- KEYS[1..9] seats, holds, holdexp, vhold, gacap, gasold, gaheld, seatver, seatcount
--            (lib/holds.lua)
-- KEYS[10] inventory    HASH  built_ms marker
-- KEYS[11] sold_orders  SET   orders applied in Redis
-- ARGV[1] JSON {gacap = {section = n}, gasold = {section = n}, sold = {seat ids},
--               paid = {order ids}, orders = {{h, v, q, s = {seats}, g = {section = n}, e}}}
-- ARGV[2] "1" to rebuild even if the marker exists
-- ARGV[3] now in ms, or "" to use Redis TIME
--
-- Returns -1 if nothing was done (marker present, no force), else the number of holds restored.
--#include clock
--#include holds

if ARGV[2] ~= '1' and redis.call('EXISTS', KEYS[10]) == 1 then return -1 end
local now = now_ms(ARGV[3])
local truth = cjson.decode(ARGV[1])
purge_expired(now, 100000)

redis.call('DEL', KEYS[1], KEYS[5], KEYS[6], KEYS[7], KEYS[9])
for section, n in pairs(truth.gacap) do redis.call('HSET', KEYS[5], section, n) end
for section, n in pairs(truth.gasold) do redis.call('HSET', KEYS[6], section, n) end
for _, seat in ipairs(truth.sold) do redis.call('HSET', KEYS[1], seat, 'sold') end
for _, order_id in ipairs(truth.paid) do redis.call('SADD', KEYS[11], order_id) end

-- holds still live keep their seats unless PostgreSQL sold them meanwhile
for _, hold_id in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  local h = read_hold(hold_id)
  if h then
    for _, seat in ipairs(h.s) do
      if not redis.call('HGET', KEYS[1], seat) then redis.call('HSET', KEYS[1], seat, hold_id) end
    end
    for section, q in pairs(h.g) do redis.call('HINCRBY', KEYS[7], section, q) end
  end
end

local restored = 0
for _, o in ipairs(truth.orders) do
  if o.e > now and not redis.call('ZSCORE', KEYS[3], o.h) then
    local free = true
    for _, seat in ipairs(o.s) do
      if redis.call('HGET', KEYS[1], seat) then free = false end
    end
    for section, q in pairs(o.g) do
      local left = tonumber(redis.call('HGET', KEYS[5], section) or '0')
        - tonumber(redis.call('HGET', KEYS[6], section) or '0')
        - tonumber(redis.call('HGET', KEYS[7], section) or '0')
      if q > left then free = false end
    end
    if free then
      for _, seat in ipairs(o.s) do redis.call('HSET', KEYS[1], seat, o.h) end
      for section, q in pairs(o.g) do redis.call('HINCRBY', KEYS[7], section, q) end
      redis.call('HSET', KEYS[2], o.h, cjson.encode({v = o.v, q = o.q, s = o.s, g = o.g, x = 1}))
      redis.call('ZADD', KEYS[3], o.e, o.h)
      restored = restored + 1
    end
  end
end
redis.call('HSET', KEYS[10], 'built_ms', now)
ensure_counts()  -- deleted above: counted afresh from the seats just written
seats_changed()
return restored
