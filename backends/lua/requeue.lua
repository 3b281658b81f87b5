-- KEYS: running info pending dead wake
-- ARGV: hid last_error count max_redeliveries now
local hid = ARGV[1]
if not redis.call('zscore', KEYS[1], hid) then return false end
local info = load_info(KEYS[2], hid, 'running')
local now = tonumber(ARGV[5])
redis.call('zrem', KEYS[1], hid)
if ARGV[3] == '1' then info.redeliveries = info.redeliveries + 1 end
if ARGV[2] ~= '' then info.last_error = ARGV[2] end
info.updated_at = now
local result
if ARGV[4] ~= '' and info.redeliveries > tonumber(ARGV[4]) then
  info.state = 'dead'
  info.reason = 'poison'
  redis.call('zadd', KEYS[4], now, hid)
  result = 'dead'
else
  info.state = 'pending'
  info.owner = nil
  redis.call('zadd', KEYS[3], -info.priority, hid)
  redis.call('lpush', KEYS[5], 1)
  result = 'pending'
end
redis.call('hset', KEYS[2], hid, cjson.encode(info))
return result
