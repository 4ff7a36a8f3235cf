-- new_epoch: mark an event's live state in Redis as a new epoch, before its settings are
-- mirrored into a Redis that does not have them (a new event, or Redis lost its data). Places
-- signed in an earlier epoch can then be taken back (restore.lua), and tickets handed out from
-- now on start above every earlier epoch's, so fans who come back stay ahead of new ones.
--
-- KEYS[1] cfg   HASH    live settings; gets field epoch
-- KEYS[2] seq   STRING  last ticket handed out
-- ARGV[1] the new epoch (PostgreSQL counts them per event: 1, 2, …)
-- ARGV[2] tickets per epoch (epoch e hands out tickets above (e - 1) * ARGV[2])
--
-- Returns the event's epoch: ARGV[1] if it was set now, else the one already there.
local current = redis.call('HGET', KEYS[1], 'epoch')
if current then return tonumber(current) end
local epoch = tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'epoch', epoch)
local base = (epoch - 1) * tonumber(ARGV[2])
if tonumber(redis.call('GET', KEYS[2]) or '0') < base then redis.call('SET', KEYS[2], base) end
return epoch
