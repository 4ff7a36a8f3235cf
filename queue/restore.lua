-- restore: take back a place the fan's browser kept (a signed cookie) after Redis lost it.
-- Only a place signed in an earlier Redis epoch is taken back (the event's cfg gets a new
-- epoch whenever it is mirrored into an empty Redis), so in normal operation a kept place
-- never revives one that was left, reaped or used. Tickets keep their order: fans who were
-- ahead stay ahead; tickets handed out after the loss start above every earlier epoch's.
--
-- KEYS[1] cfg       HASH  live settings (closed, sold_out, opened, epoch)
-- KEYS[2] visitors  HASH  visitor_id -> queue_id
-- KEYS[3] owner     HASH  queue_id -> visitor_id
-- KEYS[4] tickets   HASH  queue_id -> ticket
-- KEYS[5] pre       ZSET  pre-queue: queue_id -> join ms
-- KEYS[6] line      ZSET  waiting line: queue_id -> ticket
-- KEYS[7] seen      ZSET  queue_id -> last sign of life ms
-- KEYS[8] active    ZSET  queue_id -> session expiry ms
-- KEYS[9] stats     HASH  counters (restored)
-- ARGV[1] visitor_id
-- ARGV[2] queue_id of the kept place
-- ARGV[3] its ticket (0: it was in the pre-queue)
-- ARGV[4] its admitted session's expiry ms (0: it was waiting)
-- ARGV[5] the epoch it was signed in
-- ARGV[6] now in ms, or "" to use Redis TIME
--
-- Returns {state, queue_id, ticket, rank, session_expires_ms}: state "prequeue" | "waiting" |
-- "admitted" when the place was taken back, "no" when there is nothing to take back (same
-- epoch, the visitor or queue id already known, the sale closed or sold out), "nocfg" when the
-- event is not mirrored yet.
--#include clock
local now = now_ms(ARGV[6])
local cfg = redis.call('HMGET', KEYS[1], 'closed', 'sold_out', 'opened', 'epoch')
if not cfg[1] then return {'nocfg', '', -1, -1, 0} end
local visitor, queue_id = ARGV[1], ARGV[2]
local ticket, expires = tonumber(ARGV[3]), tonumber(ARGV[4])
if tonumber(ARGV[5]) >= tonumber(cfg[4] or '0') then return {'no', '', -1, -1, 0} end
if cfg[1] == '1' or cfg[2] == '1' then return {'no', '', -1, -1, 0} end
if redis.call('HEXISTS', KEYS[2], visitor) == 1 or redis.call('HEXISTS', KEYS[3], queue_id) == 1 then
  return {'no', '', -1, -1, 0}
end

redis.call('HSET', KEYS[2], visitor, queue_id)
redis.call('HSET', KEYS[3], queue_id, visitor)
redis.call('HINCRBY', KEYS[9], 'restored', 1)
if expires > now then
  -- admitted before the loss: the session goes on for its remaining time, never admitted twice
  if ticket > 0 then redis.call('HSET', KEYS[4], queue_id, ticket) end
  redis.call('ZADD', KEYS[8], expires, queue_id)
  return {'admitted', queue_id, ticket > 0 and ticket or -1, -1, expires}
end
redis.call('ZADD', KEYS[7], now, queue_id)
if ticket > 0 and cfg[3] == '1' then
  redis.call('HSET', KEYS[4], queue_id, ticket)
  redis.call('ZADD', KEYS[6], ticket, queue_id)
  return {'waiting', queue_id, ticket, redis.call('ZRANK', KEYS[6], queue_id), 0}
end
redis.call('ZADD', KEYS[5], now, queue_id)
return {'prequeue', queue_id, -1, -1, 0}
