-- Shared by every script that takes time (included where a script says `--#include clock`).
-- Time comes from ARGV when the caller drives it (tests), else from Redis TIME, so scripts stay
-- deterministic for replication and cluster-safe.

local function now_ms(arg)
  if arg ~= nil and arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
