-- purge_source: count, or remove, the waiting places (line and pre-queue) one client address
-- took; an operator's answer to a farm (dry run first, then confirmed).
--
-- KEYS[1] visitors HASH  visitor_id -> queue_id
-- KEYS[2] owner    HASH  queue_id -> visitor_id
-- KEYS[3] pre      ZSET  pre-queue
-- KEYS[4] line     ZSET  waiting line
-- KEYS[5] seen     ZSET  signs of life
-- KEYS[6] stats    HASH  counters: "purged" grows by the places removed
-- KEYS[7] srcq     ZSET  "<source>|<queue_id>", score 0 (written by join.lua)
-- ARGV[1] source (a client address: never holds "|")
-- ARGV[2] "count" (dry run: nothing changes) or "purge"
--
-- Returns the number of that source's places waiting in line or in the pre-queue: counted, or
-- removed. A purge also forgets the source's entries in KEYS[7] (none of its places is left
-- waiting), and a purged place then reads as expired to its visitor, as after leave.lua.
local source = ARGV[1]
local purge = ARGV[2] == 'purge'
local prefix = source .. '|'
-- every member that starts with "<source>|" ('}' is the byte after '|')
local members = redis.call('ZRANGEBYLEX', KEYS[7], '[' .. prefix, '(' .. source .. '}')
local n = 0
for _, member in ipairs(members) do
  local queue_id = string.sub(member, #prefix + 1)
  if redis.call('ZSCORE', KEYS[4], queue_id) or redis.call('ZSCORE', KEYS[3], queue_id) then
    n = n + 1
    if purge then
      redis.call('ZREM', KEYS[4], queue_id)
      redis.call('ZREM', KEYS[3], queue_id)
      redis.call('ZREM', KEYS[5], queue_id)
      local visitor = redis.call('HGET', KEYS[2], queue_id)
      if visitor and redis.call('HGET', KEYS[1], visitor) == queue_id then
        redis.call('HDEL', KEYS[1], visitor)
      end
    end
  end
end
if purge then
  for i = 1, #members, 1000 do  -- unpack has a stack limit: chunks of 1000
    redis.call('ZREM', KEYS[7], unpack(members, i, math.min(i + 999, #members)))
  end
  if n > 0 then
    redis.call('HINCRBY', KEYS[6], 'purged', n)
  end
end
return n
