-- As huey's scheduler re-enqueues due messages: in eta order, behind what is
-- pending (a new handle), noting when (meta.promoted), from which a worker
-- restarts the task's expiry clock as huey's enqueue does.
-- KEYS: sched pending info wake msg ids seq   ARGV: due moved_at
local due = redis.call('zrangebyscore', KEYS[1], '-inf', ARGV[1])
local now = tonumber(ARGV[2])
for _, old in ipairs(due) do
  local hid = string.format('%016d', redis.call('incr', KEYS[7]))
  local info = load_info(KEYS[3], old, 'scheduled')
  info.state = 'pending'
  info.updated_at = now
  if type(info.meta) ~= 'table' then info.meta = {} end
  info.meta.promoted = now
  redis.call('zrem', KEYS[1], old)
  redis.call('hset', KEYS[5], hid, redis.call('hget', KEYS[5], old))
  redis.call('hdel', KEYS[5], old)
  redis.call('hdel', KEYS[3], old)
  redis.call('hset', KEYS[3], hid, cjson.encode(info))
  if info.task_id ~= '' and redis.call('hget', KEYS[6], info.task_id) == old
  then
    redis.call('hset', KEYS[6], info.task_id, hid)
  end
  redis.call('zadd', KEYS[2], -info.priority, hid)
  redis.call('lpush', KEYS[4], 1)
end
return #due
