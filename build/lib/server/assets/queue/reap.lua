-- reap: drop waiting visitors with no sign of life for longer than the grace period, so
-- abandoned tabs never stall the queue. A dropped visitor who comes back later gets a new place.
--
-- KEYS[1] pre    ZSET  pre-queue
-- KEYS[2] line   ZSET  waiting line
-- KEYS[3] seen   ZSET  queue_id -> last sign of life ms
-- KEYS[4] stats  HASH  counters
-- ARGV[1] grace period in ms
-- ARGV[2] most entries to drop in one call
-- ARGV[3] now in ms, or "" to use Redis TIME
--
-- Returns the number of places dropped.
--#include clock
local now = now_ms(ARGV[3])

local stale = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. (now - tonumber(ARGV[1])),
  'LIMIT', 0, tonumber(ARGV[2]))
for _, queue_id in ipairs(stale) do
  redis.call('ZREM', KEYS[1], queue_id)
  redis.call('ZREM', KEYS[2], queue_id)
  redis.call('ZREM', KEYS[3], queue_id)
end
if #stale > 0 then
  redis.call('HINCRBY', KEYS[4], 'expired', #stale)
end
return #stale
