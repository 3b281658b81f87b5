-- KEYS: running info pending dead wake
-- ARGV: hid last_error count max_redeliveries now fence_owner fence_epoch
-- (with a fence, only a lease still held by that owner in that epoch)
local hid = ARGV[1]
if not redis.call('zscore', KEYS[1], hid) then return false end
local info = load_info(KEYS[2], hid, 'running')
if (ARGV[6] or '') ~= '' and (info.owner ~= ARGV[6] or
                              tonumber(ARGV[7]) ~= info.lease_seq) then
  return false
end
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
