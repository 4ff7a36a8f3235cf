-- reap_holds: tidy holds whose time has passed, so the seat map shows them free. Correctness
-- never depends on it: every hold script compares expiry times itself.
--
-- KEYS[1..9] seats, holds, holdexp, vhold, gacap, gasold, gaheld, seatver, seatcount
--            (lib/holds.lua)
-- ARGV[1] most holds to tidy in one call
-- ARGV[2] now in ms, or "" to use Redis TIME
--
-- Returns the number of holds tidied.
--#include clock
--#include holds

ensure_counts()  -- seat state built before the counters existed gets them here, once
return purge_expired(now_ms(ARGV[2]), tonumber(ARGV[1]))
