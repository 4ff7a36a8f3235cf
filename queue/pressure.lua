-- pressure: decaying counts of bot-challenge requests, one per source, read and bumped at once.
--
-- KEYS[1..n] counter  HASH  v = count, t = ms of the last update (see EventKeys.pressure)
-- KEYS[n+1]  stats    HASH  counters: challenges_issued is incremented by one
-- ARGV[1] now in ms, or "" to use Redis TIME
-- ARGV[2] half-life in ms: a count halves every this long without new requests
--
-- Returns {v1, …, vn}: each count as it stood before this request, decayed to now, times 1000
-- (an integer). Each count then grows by one; a counter idle for 8 half-lives is deleted.
--#include clock
local now = now_ms(ARGV[1])
local half = tonumber(ARGV[2])
local out = {}
for i = 1, #KEYS - 1 do
  local cur = redis.call('HMGET', KEYS[i], 'v', 't')
  local v = 0
  if cur[1] then
    local age = math.max(0, now - tonumber(cur[2]))
    v = tonumber(cur[1]) * math.pow(2, -age / half)
  end
  out[i] = math.floor(v * 1000)
  redis.call('HSET', KEYS[i], 'v', tostring(v + 1), 't', now)
  redis.call('PEXPIRE', KEYS[i], half * 8)
end
redis.call('HINCRBY', KEYS[#KEYS], 'challenges_issued', 1)
return out
