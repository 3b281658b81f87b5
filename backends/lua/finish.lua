-- Ends a lease. KEYS: running msg info ids pending dead wake done results
-- ARGV: hid outcome reason now, and the fence (owner, epoch; '' for none):
-- with a fence, only a lease still held by that owner in that epoch (its
-- lease_seq) is ended. Returns 1 when it ended the lease, 0 when there was
-- none to end, -1 when a fence refused it (the caller counts it).
local function finish(hid, outcome, reason, now, fowner, fepoch)
  local fenced = (fowner or '') ~= ''
  if not redis.call('zscore', KEYS[1], hid) then
    if fenced then return -1 end
    return 0
  end
  local info = load_info(KEYS[3], hid, 'running')
  if fenced and (info.owner ~= fowner or
                 tonumber(fepoch) ~= info.lease_seq) then
    return -1
  end
  redis.call('zrem', KEYS[1], hid)
  info.updated_at = now
  if outcome == '' or (outcome == 'dead' and reason == 'failed') then
    -- huey's revoke key of a task that ran, left for us to delete (one
    -- skipped as revoked keeps a persistent revoke).
    redis.call('hdel', KEYS[9], 'r:' .. info.task_id)
  end
  if outcome == '' then
    info.state = 'done'
    redis.call('hdel', KEYS[2], hid)
    redis.call('zadd', KEYS[8], now, hid)
  elseif outcome == 'dead' then
    info.state = 'dead'
    info.reason = reason
    redis.call('zadd', KEYS[6], now, hid)
  else
    info.state = 'pending'
    info.owner = nil
    redis.call('zadd', KEYS[5], -info.priority, hid)
    redis.call('lpush', KEYS[7], 1)
  end
  redis.call('hset', KEYS[3], hid, cjson.encode(info))
  return 1
end
