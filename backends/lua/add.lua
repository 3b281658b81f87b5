-- Stores one message under handle hid (its info record built by
-- RedisBackend._add_args); returns whether it is pending.
-- KEYS: pending sched msg info ids
local function add(hid, data, info, task_id, state, score)
  redis.call('hset', KEYS[3], hid, data)
  redis.call('hset', KEYS[4], hid, info)
  if task_id ~= '' then redis.call('hset', KEYS[5], task_id, hid) end
  if state == 'scheduled' then
    redis.call('zadd', KEYS[2], score, hid)
    return false
  end
  redis.call('zadd', KEYS[1], score, hid)
  return true
end
