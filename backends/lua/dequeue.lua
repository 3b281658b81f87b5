-- huey's at-most-once dequeue: the next pending message, removed.
-- KEYS: pending msg info ids
local hid = redis.call('zrange', KEYS[1], 0, 0)[1]
if not hid then return false end
local task_id = load_info(KEYS[3], hid, 'pending').task_id
redis.call('zrem', KEYS[1], hid)
local data = redis.call('hget', KEYS[2], hid)
redis.call('hdel', KEYS[2], hid)
redis.call('hdel', KEYS[3], hid)
if task_id ~= '' and redis.call('hget', KEYS[4], task_id) == hid then
  redis.call('hdel', KEYS[4], task_id)
end
return data
