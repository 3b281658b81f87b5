-- KEYS: pending sched msg info ids wake seq
-- ARGV: data info task_id state score
local hid = string.format('%016d', redis.call('incr', KEYS[7]))
if add(hid, ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]) then
  redis.call('lpush', KEYS[6], 1)
end
return hid
