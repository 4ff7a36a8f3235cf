-- admit: one admission step. Ends expired sessions, refills the token bucket from the time
-- elapsed, and admits the head of the line while tokens and room under max_active allow.
-- Any number of processes may run it every tick: the bucket makes the total exact.
--
-- KEYS[1] cfg     HASH  rate_per_min, max_active, session_ms, tick_ms, paused, closed,
--                       sold_out, opened, opened_ms, exhausted (every seat left is held:
--                       the bucket admits nobody until holds expire and seats return)
-- KEYS[2] line    ZSET  waiting line: queue_id -> ticket
-- KEYS[3] active  ZSET  admitted sessions: queue_id -> expiry ms
-- KEYS[4] bucket  HASH  tokens, ts
-- KEYS[5] stats   HASH  counters (admitted, serving, sessions_ended)
-- KEYS[6] admits  ZSET  admission batches of the last minute: "<ms>:<total>:<n>" -> ms
-- KEYS[7] owner   HASH  queue_id -> visitor_id
-- KEYS[8] seen    ZSET  signs of life of waiting visitors
-- KEYS[9] pre     ZSET  pre-queue
-- ARGV[1] now in ms, or "" to use Redis TIME
-- ARGV[2] most visitors to admit in this step
-- ARGV[3] pub/sub channel on which to announce the admitted visitors
-- ARGV[4] extra admissions ordered by ops, taken beyond the bucket but not beyond max_active
-- ARGV[5] "1": announce with SPUBLISH (sharded pub/sub, on a Redis Cluster: the channel shares
--         the event's slot); otherwise PUBLISH
--
-- Returns {found, opened, paused, closed, sold_out, serving, admitted_total, waiting, prequeue,
--          active, admitted_last_window, window_ms, now, exhausted, queue_id1, visitor1,
--          expires1, ...}
-- with found = 0 (and nothing else) when the event is not mirrored in Redis.
--#include clock
local now = now_ms(ARGV[1])

local cfg = redis.call('HMGET', KEYS[1], 'rate_per_min', 'max_active', 'session_ms', 'tick_ms',
  'paused', 'closed', 'sold_out', 'opened', 'opened_ms', 'exhausted')
if not cfg[1] then return {0} end
local rate, max_active = tonumber(cfg[1]), tonumber(cfg[2])
local session_ms, tick_ms = tonumber(cfg[3]), tonumber(cfg[4])
local paused, closed, sold_out = cfg[5] == '1', cfg[6] == '1', cfg[7] == '1'
local opened = cfg[8] == '1'
local exhausted = cfg[10] == '1'

local ended = redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if ended > 0 then redis.call('HINCRBY', KEYS[5], 'sessions_ended', ended) end
local active = redis.call('ZCARD', KEYS[3])

-- The bucket holds at most one tick's worth of admissions plus one, so over any interval of t ms
-- no more than rate * t / 60000 + capacity are admitted. The extra one keeps the fraction of a
-- token carried from one tick to the next: with a cap of one tick's worth, every tick clipped
-- that fraction away and one process ticking every tick_ms fell far short of the rate
-- (e.g. 600 instead of 1000 a minute at tick_ms 50).
local capacity = rate * tick_ms / 60000 + 1
local bucket = redis.call('HMGET', KEYS[4], 'tokens', 'ts')
local tokens = tonumber(bucket[1] or capacity)
local ts = tonumber(bucket[2] or now)
if now > ts then
  tokens = math.min(capacity, tokens + (now - ts) * rate / 60000)
  ts = now
end
tokens = math.min(tokens, capacity)
if rate <= 0 then tokens = 0 end -- rate 0 admits nobody, not even the starting burst

local want = 0
local extra = tonumber(ARGV[4] or '0')
if opened and not paused and not closed and not sold_out then
  -- While every seat left is held, the bucket admits nobody (fans let in could not buy);
  -- ops' explicit extra admissions still go through.
  if exhausted then want = extra else want = math.floor(tokens) + extra end
  want = math.min(want, max_active - active, tonumber(ARGV[2]))
end

local out_admitted = {}
local admitted = 0
local serving = nil
if want > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[2], want)
  admitted = #popped / 2
  local expires = now + session_ms
  local announce = {}
  for i = 1, #popped, 2 do
    local queue_id = popped[i]
    serving = popped[i + 1]
    redis.call('ZADD', KEYS[3], expires, queue_id)
    redis.call('ZREM', KEYS[8], queue_id)
    local visitor = redis.call('HGET', KEYS[7], queue_id) or ''
    out_admitted[#out_admitted + 1] = queue_id
    out_admitted[#out_admitted + 1] = visitor
    out_admitted[#out_admitted + 1] = expires
    announce[#announce + 1] = {queue_id, visitor, expires}
  end
  if admitted > 0 then
    tokens = math.max(0, tokens - math.max(0, admitted - extra))
    active = active + admitted
    local total = redis.call('HINCRBY', KEYS[5], 'admitted', admitted)
    redis.call('HSET', KEYS[5], 'serving', serving)
    redis.call('ZADD', KEYS[6], now, now .. ':' .. total .. ':' .. admitted)
    local publish = 'PUBLISH'
    if ARGV[5] == '1' then publish = 'SPUBLISH' end
    redis.call(publish, ARGV[3], cjson.encode({type = 'admitted', entries = announce}))
  end
end
redis.call('HSET', KEYS[4], 'tokens', tostring(tokens), 'ts', ts)

redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', '(' .. (now - 60000))
local counters = redis.call('HMGET', KEYS[5], 'serving', 'admitted')
-- Admitted in the last minute, in O(1): every batch records the running total after it, so
-- the window holds everything admitted since just before its oldest batch.
local recent = 0
local oldest = redis.call('ZRANGE', KEYS[6], 0, 0)[1]
if oldest then
  local total_after, n = string.match(oldest, ':(%d+):(%d+)$')
  recent = tonumber(counters[2] or '0') - (tonumber(total_after) - tonumber(n))
end
local window = 0
if opened then window = math.min(60000, now - tonumber(cfg[9] or now)) end

local result = {1, opened and 1 or 0, paused and 1 or 0, closed and 1 or 0, sold_out and 1 or 0,
  tonumber(counters[1] or '0'), tonumber(counters[2] or '0'), redis.call('ZCARD', KEYS[2]),
  redis.call('ZCARD', KEYS[9]), active, recent, window, now, exhausted and 1 or 0}
for _, v in ipairs(out_admitted) do result[#result + 1] = v end
return result
