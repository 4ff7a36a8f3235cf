-- Shared by the scripts that count attempts in a fixed window (included where a script says
-- `--#include window`).

-- Count one attempt on `key` (a STRING whose expiry is the window): {allowed (1/0), ms until
-- the window resets}.
local function count_attempt(key, most, window_ms)
  local count = redis.call('INCR', key)
  if count == 1 then redis.call('PEXPIRE', key, window_ms) end
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then
    redis.call('PEXPIRE', key, window_ms)
    ttl = window_ms
  end
  if count > most then return {0, ttl} end
  return {1, ttl}
end
