-- rate_limit: fixed-window counter for one visitor's attempts at one kind of request, or for
-- one client address's failed admin sign-ins.
--
-- KEYS[1] counter  STRING  bo:{ev:<id>}:rl:<kind>:<visitor>  or  bo:authfail:admin:<address>
-- ARGV[1] most attempts allowed in a window
-- ARGV[2] window length in ms
--
-- Returns {allowed (1/0), ms until the window resets}.
--#include window

return count_attempt(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
