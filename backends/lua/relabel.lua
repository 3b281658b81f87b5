-- Files a message under another job id. KEYS: info ids   ARGV: hid task_id
local info = load_info(KEYS[1], ARGV[1], 'running')
if redis.call('hget', KEYS[2], info.task_id) == ARGV[1] then
  redis.call('hdel', KEYS[2], info.task_id)
end
info.task_id = ARGV[2]
redis.call('hset', KEYS[1], ARGV[1], cjson.encode(info))
redis.call('hset', KEYS[2], ARGV[2], ARGV[1])
return 1
