-- KEYS: running msg info pending paused seq
-- ARGV: owner now name limit lease_limit head_bytes
-- Suspects (recovered from a crash) are left for a lease of their own.
if redis.call('hlen', KEYS[5]) > 0 then return {} end
local limit = tonumber(ARGV[4])
local now = tonumber(ARGV[2])
local taken, scanned, offset = 0, 0, 0
local out = {}
local seq = nil
while taken < limit and scanned < 1000 do
  local hids = redis.call('zrange', KEYS[4], offset, offset + 99)
  if #hids == 0 then break end
  local skipped = 0
  for _, hid in ipairs(hids) do
    scanned = scanned + 1
    local info = load_info(KEYS[3], hid, 'pending')
    local suspect = type(info.last_error) == 'string' and
      string.sub(info.last_error, 1, 8) == 'suspect:'
    if taken < limit and info.name == ARGV[3] and not suspect then
      redis.call('zrem', KEYS[4], hid)
      redis.call('zadd', KEYS[1], now, hid)
      if not seq then seq = redis.call('incr', KEYS[6]) end
      info.state = 'running'
      info.owner = ARGV[1]
      info.updated_at = now
      info.lease_seq = seq
      redis.call('hset', KEYS[3], hid, cjson.encode(info))
      taken = taken + 1
      table.insert(out, hid)
      table.insert(out, info.task_id)
      local data, size = message_head(KEYS[2], hid, ARGV[5], ARGV[6])
      table.insert(out, data)
      table.insert(out, info.redeliveries)
      table.insert(out, info.last_error or '')
      table.insert(out, seq)
      table.insert(out, size)
      table.insert(out, tostring(info.enqueued_at or now))
      table.insert(out, cjson.encode(info.meta or {}))
    else
      skipped = skipped + 1
    end
  end
  offset = offset + skipped
end
return out
