-- KEYS: running info   ARGV: hid last_error
if not redis.call('zscore', KEYS[1], ARGV[1]) then return 0 end
local info = load_info(KEYS[2], ARGV[1], 'running')
info.last_error = ARGV[2]
redis.call('hset', KEYS[2], ARGV[1], cjson.encode(info))
return 1
