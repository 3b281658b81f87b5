-- Deletes the newest message of each job when it is dead.
-- KEYS: dead msg info ids; ARGV: task ids
local n = 0
for _, tid in ipairs(ARGV) do
  local hid = redis.call('hget', KEYS[4], tid)
  if hid and redis.call('zrem', KEYS[1], hid) == 1 then
    redis.call('hdel', KEYS[2], hid)
    redis.call('hdel', KEYS[3], hid)
    redis.call('hdel', KEYS[4], tid)
    n = n + 1
  end
end
return n
