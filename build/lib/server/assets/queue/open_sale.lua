-- open_sale: at the sale's start, shuffle the pre-queue uniformly at random and give every
-- visitor in it a ticket, so arriving early or scripting fast wins nothing. Idempotent.
--
-- KEYS[1] cfg      HASH  live settings and sale state (reads sale_starts_ms, sets opened)
-- KEYS[2] pre      ZSET  pre-queue: queue_id -> join ms
-- KEYS[3] line     ZSET  waiting line: queue_id -> ticket
-- KEYS[4] tickets  HASH  queue_id -> ticket
-- KEYS[5] seq      STRING last ticket handed out
-- ARGV[1] shuffle seed, an integer in [0, 2^31) chosen by the caller
-- ARGV[2] now in ms, or "" to use Redis TIME
--
-- Returns the number of visitors moved from the pre-queue to the line; -1 if the sale was
-- already open, -2 if it is not time yet, -3 if the event is not mirrored in Redis.
--#include clock
local now = now_ms(ARGV[2])

local cfg = redis.call('HMGET', KEYS[1], 'opened', 'sale_starts_ms')
if not cfg[2] then return -3 end
if cfg[1] == '1' then return -1 end
if now < tonumber(cfg[2]) then return -2 end

local members = redis.call('ZRANGE', KEYS[2], 0, -1)
local n = #members
math.randomseed(tonumber(ARGV[1]))
for i = n, 2, -1 do
  local j = math.random(i)
  members[i], members[j] = members[j], members[i]
end

local base = tonumber(redis.call('GET', KEYS[5]) or '0')
local chunk = 500
for first = 1, n, chunk do
  local zargs, hargs = {}, {}
  for i = first, math.min(first + chunk - 1, n) do
    local ticket = base + i
    zargs[#zargs + 1] = ticket
    zargs[#zargs + 1] = members[i]
    hargs[#hargs + 1] = members[i]
    hargs[#hargs + 1] = ticket
  end
  redis.call('ZADD', KEYS[3], unpack(zargs))
  redis.call('HSET', KEYS[4], unpack(hargs))
end
redis.call('SET', KEYS[5], base + n)
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'opened', '1', 'opened_ms', now)
return n
