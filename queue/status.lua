-- status: where a queue_id stands, optionally refreshing its sign of life.
--
-- KEYS[1] cfg      HASH  live settings and sale state
-- KEYS[2] owner    HASH  queue_id -> visitor_id
-- KEYS[3] tickets  HASH  queue_id -> ticket
-- KEYS[4] pre      ZSET  pre-queue
-- KEYS[5] line     ZSET  waiting line
-- KEYS[6] seen     ZSET  queue_id -> last sign of life ms (never moved back: GT, as the
--                        websocket heartbeats write it with the app's clock)
-- KEYS[7] active   ZSET  queue_id -> session expiry ms
-- KEYS[8] away     ZSET  queue_id -> last sign of life ms of visitors out of the line (reap.lua)
-- KEYS[9] stats    HASH  counters (expired)
-- KEYS[10] count1  STRING a fixed-window attempt counter (queue/lib/window.lua): the visitor's
-- KEYS[11] count2  STRING another: the client address's
-- ARGV[1] queue_id
-- ARGV[2] "1" to record a sign of life for a waiting visitor, "0" to only read
-- ARGV[3] now in ms, or "" to use Redis TIME
-- ARGV[4] return window in ms: a visitor away for less comes back in at their own ticket, so
--         ahead of everyone who came later (at the head of the line if their turn passed)
-- ARGV[5] "" or a visitor_id: then ARGV[2]'s sign of life counts only if this visitor owns the
--         place (a stranger's request changes nothing)
-- ARGV[6], ARGV[7]  most attempts KEYS[10] allows, and its window in ms; most 0: not counted
-- ARGV[8], ARGV[9]  the same for KEYS[11]
--
-- Returns {state, visitor_id, ticket, rank, session_expires_ms, epoch}, state one of
--   "prequeue" | "waiting" | "admitted" | "expired" (place lost or session over) | "unknown"
--   | "away" (only when reading: out of the line, back in at the next sign of life)
--   | "limited" (nothing read or done: an attempt counter is over its limit; session_expires_ms
--     is then the ms until the later of the two windows resets)
--#include clock
--#include window
local now = now_ms(ARGV[3])

local refused, wait_ms = count_attempts(KEYS, 10, ARGV, 6)

local queue_id = ARGV[1]
local epoch = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
if refused then
  return {'limited', '', -1, -1, wait_ms, epoch}
end
local visitor = redis.call('HGET', KEYS[2], queue_id)
if not visitor then
  return {'unknown', '', -1, -1, 0, epoch}
end
local touch = ARGV[2] == '1' and (ARGV[5] == '' or ARGV[5] == visitor)
local ticket = tonumber(redis.call('HGET', KEYS[3], queue_id) or '-1')

local expires = redis.call('ZSCORE', KEYS[7], queue_id)
if expires and tonumber(expires) > now then
  return {'admitted', visitor, ticket, -1, tonumber(expires), epoch}
end
local last = redis.call('ZSCORE', KEYS[8], queue_id)
if last then
  if now - tonumber(last) > tonumber(ARGV[4]) then
    redis.call('ZREM', KEYS[8], queue_id)
    redis.call('HINCRBY', KEYS[9], 'expired', 1)
    return {'expired', visitor, ticket, -1, 0, epoch}
  end
  if not touch then
    return {'away', visitor, ticket, -1, 0, epoch}
  end
  redis.call('ZREM', KEYS[8], queue_id)
  redis.call('ZADD', KEYS[5], ticket, queue_id)
  redis.call('ZADD', KEYS[6], 'GT', now, queue_id)
  return {'waiting', visitor, ticket, redis.call('ZRANK', KEYS[5], queue_id), 0, epoch}
end
local rank = redis.call('ZRANK', KEYS[5], queue_id)
if rank then
  if touch then redis.call('ZADD', KEYS[6], 'GT', now, queue_id) end
  return {'waiting', visitor, ticket, rank, 0, epoch}
end
if redis.call('ZSCORE', KEYS[4], queue_id) then
  if touch then redis.call('ZADD', KEYS[6], 'GT', now, queue_id) end
  return {'prequeue', visitor, -1, -1, 0, epoch}
end
return {'expired', visitor, ticket, -1, tonumber(expires or '0'), epoch}
