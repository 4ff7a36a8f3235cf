-- reap: waiting visitors with no sign of life for longer than the grace step out of the line
-- into `away`, so the admission step passes them by (at no cost per tick) and an absence never
-- stalls the line; they keep their ticket and come back in at it when they return within the
-- return window (status.lua, join.lua). A place silent for longer than the return window is
-- gone: a visitor who comes back after that gets a new place.
-- Before the sale opens no turn can pass anyone, so the pre-queue keeps silent visitors until
-- the return window is over; the shuffle gives them a ticket like everyone else.
--
-- KEYS[1] cfg    HASH  live settings (opened)
-- KEYS[2] pre    ZSET  pre-queue
-- KEYS[3] line   ZSET  waiting line: queue_id -> ticket
-- KEYS[4] seen   ZSET  queue_id -> last sign of life ms (visitors in pre or line)
-- KEYS[5] away   ZSET  queue_id -> last sign of life ms (visitors out of the line)
-- KEYS[6] stats  HASH  counters (expired)
-- ARGV[1] grace period in ms
-- ARGV[2] return window in ms (at least the grace)
-- ARGV[3] most entries to handle in each of the three passes of one call
-- ARGV[4] now in ms, or "" to use Redis TIME
--
-- Returns {gone, stepped_away}: places dropped for good, and visitors moved out of the line.
--#include clock
local now = now_ms(ARGV[4])
local grace, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])

-- 1. away for longer than the return window: the place is gone
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', '(' .. (now - window), 'LIMIT', 0, limit)
for _, queue_id in ipairs(lapsed) do
  redis.call('ZREM', KEYS[5], queue_id)
end
local gone = #lapsed

-- 2. silent for longer than the return window while still in pre or line: gone as well
local silent = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. (now - window), 'LIMIT', 0, limit)
for _, queue_id in ipairs(silent) do
  redis.call('ZREM', KEYS[2], queue_id)
  redis.call('ZREM', KEYS[3], queue_id)
  redis.call('ZREM', KEYS[4], queue_id)
end
gone = gone + #silent

-- 3. once the sale is open: silent for longer than the grace, out of the line into away
local stepped = 0
if redis.call('HGET', KEYS[1], 'opened') == '1' then
  local stale = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. (now - grace), 'WITHSCORES',
    'LIMIT', 0, limit)
  for i = 1, #stale, 2 do
    local queue_id, last = stale[i], stale[i + 1]
    redis.call('ZREM', KEYS[4], queue_id)
    if redis.call('ZREM', KEYS[3], queue_id) == 1 then
      redis.call('ZADD', KEYS[5], last, queue_id)
      stepped = stepped + 1
    elseif redis.call('ZREM', KEYS[2], queue_id) == 1 then
      gone = gone + 1 -- a pre-queue place left over after the shuffle (none in normal operation)
    end
  end
end

if gone > 0 then
  redis.call('HINCRBY', KEYS[6], 'expired', gone)
end
return {gone, stepped}
