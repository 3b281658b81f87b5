-- KEYS: running msg info ids pending dead wake done results fenced
-- ARGV: hid outcome reason now fence_owner fence_epoch
local ended = finish(ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5],
                     ARGV[6])
if ended < 0 then redis.call('incr', KEYS[10]) end
return ended
