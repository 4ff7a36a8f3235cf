-- rate_limit: fixed-window counter for one visitor's attempts at one kind of request, or for
-- one client address's failed admin sign-ins.
--
-- KEYS[1] counter  STRING  bo:{ev:<id>}:rl:<kind>:<visitor>  or  bo:authfail:admin:<address>
-- ARGV[1] most attempts allowed in a window
-- ARGV[2] window length in ms
--
-- Returns {allowed (1/0), ms until the window resets}.
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2])) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  ttl = tonumber(ARGV[2])
end
if count > tonumber(ARGV[1]) then return {0, ttl} end
return {1, ttl}
