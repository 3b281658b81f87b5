-- KEYS: running msg info ids pending dead wake done results paused flags seq
--       fenced
-- ARGV: owner now ack_hid ack_outcome ack_reason lease_limit head_bytes
--       ack_fence_owner ack_fence_epoch
-- Returns the lease, with whether a fence refused the ack last; without a
-- lease, false, or -1 when a fence refused the ack.
local now = tonumber(ARGV[2])
local refused = 0
if ARGV[3] ~= '' and
    finish(ARGV[3], ARGV[4], ARGV[5], now, ARGV[8], ARGV[9]) < 0 then
  refused = 1
  redis.call('incr', KEYS[13])
end
local none = false
if refused == 1 then none = -1 end
if redis.call('hlen', KEYS[10]) > 0 then
  redis.call('del', KEYS[7])
  return none
end
local hid = nil
local room = tonumber(redis.call('hget', KEYS[11], 'admission'))
if room then
  -- Admission: skip tasks whose declared memory does not fit what is left
  -- of the queue's budget, less what running tasks declared.
  for _, running in ipairs(redis.call('zrange', KEYS[1], 0, -1)) do
    local meta = load_info(KEYS[3], running, 'running').meta
    room = room - (meta.memory or 0)
  end
  for _, candidate in ipairs(redis.call('zrange', KEYS[5], 0, 99)) do
    local meta = load_info(KEYS[3], candidate, 'pending').meta
    local need = meta.memory or 0
    if need == 0 or need <= room then
      hid = candidate
      break
    end
  end
else
  local top = redis.call('zrange', KEYS[5], 0, 0)
  hid = top[1]
end
if not hid then
  redis.call('del', KEYS[7])
  return none
end
redis.call('zrem', KEYS[5], hid)
redis.call('zadd', KEYS[1], now, hid)
local info = load_info(KEYS[3], hid, 'pending')
info.state = 'running'
info.owner = ARGV[1]
info.updated_at = now
info.lease_seq = redis.call('incr', KEYS[12])
redis.call('hset', KEYS[3], hid, cjson.encode(info))
local revoked = redis.call('hexists', KEYS[9], 'r:' .. info.task_id) +
  redis.call('hexists', KEYS[9], 'rt:' .. info.name)
local data, size = message_head(KEYS[2], hid, ARGV[6], ARGV[7])
return {hid, info.task_id, data,
        info.redeliveries, info.last_error or false,
        tostring(info.enqueued_at or now), revoked, info.lease_seq, size,
        info.name or '', cjson.encode(info.meta or {}), refused}
