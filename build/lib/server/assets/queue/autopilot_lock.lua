-- autopilot_lock: take or renew the autopilot's leader lock (one process steers at a time).
--
-- KEYS[1] lock    STRING  bo:autopilot:lock, holding the leader's instance id
-- ARGV[1] this process's instance id
-- ARGV[2] lock lifetime in ms
--
-- Returns 1 if this process holds the lock now (renewed or newly taken), else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
