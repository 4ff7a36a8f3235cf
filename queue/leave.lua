-- leave: a visitor gives up their place or ends their admitted session.
--
-- KEYS[1] visitors HASH  visitor_id -> queue_id
-- KEYS[2] owner    HASH  queue_id -> visitor_id
-- KEYS[3] pre      ZSET  pre-queue
-- KEYS[4] line     ZSET  waiting line
-- KEYS[5] seen     ZSET  signs of life
-- KEYS[6] active   ZSET  admitted sessions
-- KEYS[7] stats    HASH  counters
-- KEYS[8] away     ZSET  visitors out of the line (reap.lua)
-- ARGV[1] queue_id
-- ARGV[2] counter to raise in stats ("left" or "sessions_ended")
--
-- Returns 1 if the queue_id held a place or a session, 0 otherwise.
local queue_id = ARGV[1]
local removed = redis.call('ZREM', KEYS[3], queue_id)
  + redis.call('ZREM', KEYS[4], queue_id)
  + redis.call('ZREM', KEYS[6], queue_id)
  + redis.call('ZREM', KEYS[8], queue_id)
redis.call('ZREM', KEYS[5], queue_id)
local visitor = redis.call('HGET', KEYS[2], queue_id)
if visitor and redis.call('HGET', KEYS[1], visitor) == queue_id then
  redis.call('HDEL', KEYS[1], visitor)
end
if removed > 0 then
  redis.call('HINCRBY', KEYS[7], ARGV[2], 1)
  return 1
end
return 0
