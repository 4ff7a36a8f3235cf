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

-- Count one attempt on each of two counters, keys[first_key] and keys[first_key + 1], whose
-- most attempts and window ms are argv[first_arg], argv[first_arg + 1] and the two after
-- (most 0 or missing: that counter is not counted). Returns whether one is over its limit,
-- and the ms until the later of their windows resets.
local function count_attempts(keys, first_key, argv, first_arg)
  local refused, wait_ms = false, 0
  for i = 0, 1 do
    local most = tonumber(argv[first_arg + 2 * i] or '0') or 0
    if most > 0 then
      local window_ms = tonumber(argv[first_arg + 1 + 2 * i])
      local counted = count_attempt(keys[first_key + i], most, window_ms)
      if counted[1] == 0 then
        refused, wait_ms = true, math.max(wait_ms, counted[2])
      end
    end
  end
  return refused, wait_ms
end
