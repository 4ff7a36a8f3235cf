-- join: put a visitor in an event's queue; idempotent per visitor.
--
-- KEYS[1] cfg       HASH  live settings and sale state
-- KEYS[2] visitors  HASH  visitor_id -> queue_id
-- KEYS[3] owner     HASH  queue_id -> visitor_id
-- KEYS[4] tickets   HASH  queue_id -> ticket
-- KEYS[5] pre       ZSET  pre-queue: queue_id -> join ms
-- KEYS[6] line      ZSET  waiting line: queue_id -> ticket
-- KEYS[7] seen      ZSET  queue_id -> last sign of life ms
-- KEYS[8] active    ZSET  queue_id -> session expiry ms
-- KEYS[9] seq       STRING last ticket handed out
-- KEYS[10] stats    HASH  counters
-- KEYS[11] spent    STRING marks one bot-challenge solution as used (optional; see ARGV[4])
-- KEYS[12] sources  ZSET  source -> places taken (kept to ARGV[6] sources: the fewest go first)
-- KEYS[13] srcq     ZSET  "<source>|<queue_id>", score 0: the places each source took
-- KEYS[14] away     ZSET  queue_id -> last sign of life ms of visitors out of the line (reap.lua)
-- KEYS[15] count1   STRING a fixed-window attempt counter (queue/lib/window.lua): the visitor's
-- KEYS[16] count2   STRING another: the client address's
-- ARGV[1] visitor_id
-- ARGV[2] queue_id to use if the visitor has no live place
-- ARGV[3] now in ms, or "" to use Redis TIME
-- ARGV[4] "" no challenge asked; "none" a new place needs a solution and none (valid) was
--         given; else the ms the solution stays spendable: a new place is made only if
--         KEYS[11] did not exist, and KEYS[11] is then kept for that long
-- ARGV[5] the client address a new place is recorded under, or "" to record none
-- ARGV[6] most sources KEYS[12] keeps
-- ARGV[7] return window in ms: a visitor away (KEYS[14]) for less comes back in at their own
--         ticket; after it the old place is gone and the visitor gets a new one
-- ARGV[8], ARGV[9]    most attempts KEYS[15] allows, and its window in ms; most 0: not counted
-- ARGV[10], ARGV[11]  the same for KEYS[16]
--
-- Returns {state, queue_id, ticket, rank, session_expires_ms, epoch} (epoch: see new_epoch.lua):
--   state "prequeue" | "waiting" | "admitted"      the visitor's place (rank is 0-based or -1)
--   state "closed" | "sold_out" | "not_open"       no place given
--   state "nocfg"                                  the event is not mirrored in Redis yet
--   state "challenge" | "spent"                    no place: no solution, or one already used
--   state "limited"                                nothing done: an attempt counter is over its
--                                                  limit; session_expires_ms is then the ms until
--                                                  the later of the two windows resets
-- Both counters are counted before anything else (once the event is mirrored), as
-- rate_limit.lua would count them: the route needs no call of its own.
--#include clock
--#include window
local now = now_ms(ARGV[3])

local visitor = ARGV[1]
local cfg = redis.call('HMGET', KEYS[1], 'closed', 'sold_out', 'opened', 'prequeue_opens_ms',
  'epoch')
local epoch = tonumber(cfg[5] or '0')
if not cfg[1] then
  return {'nocfg', '', -1, -1, 0}
end

local refused, wait_ms = count_attempts(KEYS, 15, ARGV, 8)
if refused then
  return {'limited', '', -1, -1, wait_ms, epoch}
end

local existing = redis.call('HGET', KEYS[2], visitor)
if existing then
  local expires = redis.call('ZSCORE', KEYS[8], existing)
  if expires and tonumber(expires) > now then
    local ticket = tonumber(redis.call('HGET', KEYS[4], existing) or '-1')
    return {'admitted', existing, ticket, -1, tonumber(expires), epoch}
  end
  local last = redis.call('ZSCORE', KEYS[14], existing)
  if last then
    redis.call('ZREM', KEYS[14], existing)
    if now - tonumber(last) > tonumber(ARGV[7]) then
      redis.call('HINCRBY', KEYS[10], 'expired', 1)
    else
      local ticket = tonumber(redis.call('HGET', KEYS[4], existing))
      redis.call('ZADD', KEYS[6], ticket, existing)
    end
  end
  local rank = redis.call('ZRANK', KEYS[6], existing)
  if rank then
    redis.call('ZADD', KEYS[7], now, existing)
    return {'waiting', existing, tonumber(redis.call('ZSCORE', KEYS[6], existing)), rank, 0, epoch}
  end
  if redis.call('ZSCORE', KEYS[5], existing) then
    redis.call('ZADD', KEYS[7], now, existing)
    return {'prequeue', existing, -1, -1, 0, epoch}
  end
end

if cfg[1] == '1' then
  return {'closed', '', -1, -1, 0, epoch}
end
if cfg[2] == '1' then
  return {'sold_out', '', -1, -1, 0, epoch}
end
if now < tonumber(cfg[4]) then
  return {'not_open', '', -1, -1, 0, epoch}
end

local proof = ARGV[4] or ''
if proof == 'none' then
  return {'challenge', '', -1, -1, 0, epoch}
end
if proof ~= '' then
  if not redis.call('SET', KEYS[11], visitor, 'NX', 'PX', tonumber(proof)) then
    return {'spent', '', -1, -1, 0, epoch}
  end
  redis.call('HINCRBY', KEYS[10], 'challenges_solved', 1)
end

local queue_id = ARGV[2]
redis.call('HSET', KEYS[2], visitor, queue_id)
redis.call('HSET', KEYS[3], queue_id, visitor)
redis.call('ZADD', KEYS[7], now, queue_id)
redis.call('HINCRBY', KEYS[10], 'joins', 1)
local source = ARGV[5] or ''
if source ~= '' then
  redis.call('ZINCRBY', KEYS[12], 1, source)
  if redis.call('ZCARD', KEYS[12]) > tonumber(ARGV[6]) then
    redis.call('ZPOPMIN', KEYS[12])
  end
  redis.call('ZADD', KEYS[13], 0, source .. '|' .. queue_id)
end
if cfg[3] ~= '1' then
  redis.call('ZADD', KEYS[5], now, queue_id)
  return {'prequeue', queue_id, -1, -1, 0, epoch}
end
local ticket = redis.call('INCR', KEYS[9])
redis.call('HSET', KEYS[4], queue_id, ticket)
redis.call('ZADD', KEYS[6], ticket, queue_id)
return {'waiting', queue_id, ticket, redis.call('ZRANK', KEYS[6], queue_id), 0, epoch}
