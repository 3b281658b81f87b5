-- Moves messages between sets. KEYS: from_set to_set info wake
-- ARGV: to_state reason now hid...
local moved = {}
local now = tonumber(ARGV[3])
for i = 4, #ARGV do
  local hid = ARGV[i]
  if redis.call('zrem', KEYS[1], hid) == 1 then
    local info = load_info(KEYS[3], hid, ARGV[1])
    info.state = ARGV[1]
    info.updated_at = now
    info.owner = nil
    if ARGV[1] == 'pending' then
      info.reason = nil
      info.last_error = nil
      info.redeliveries = 0
      redis.call('zadd', KEYS[2], -info.priority, hid)
      redis.call('lpush', KEYS[4], 1)
    else
      info.reason = ARGV[2]
      redis.call('zadd', KEYS[2], now, hid)
    end
    local raw = cjson.encode(info)
    redis.call('hset', KEYS[3], hid, raw)
    table.insert(moved, hid)
    table.insert(moved, raw)
  end
end
return moved
