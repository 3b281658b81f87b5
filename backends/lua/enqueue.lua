-- KEYS: pending sched msg info ids wake seq
-- ARGV: data priority task_id name eta now meta state
local hid = string.format('%016d', redis.call('incr', KEYS[7]))
local state = ARGV[8]
local info = {task_id=ARGV[3], name=ARGV[4], state=state,
  priority=tonumber(ARGV[2]), enqueued_at=tonumber(ARGV[6]),
  updated_at=tonumber(ARGV[6]), redeliveries=0, meta=cjson.decode(ARGV[7]),
  size=string.len(ARGV[1])}
if ARGV[5] ~= '' then info.eta = tonumber(ARGV[5]) end
redis.call('hset', KEYS[3], hid, ARGV[1])
redis.call('hset', KEYS[4], hid, cjson.encode(info))
if ARGV[3] ~= '' then redis.call('hset', KEYS[5], ARGV[3], hid) end
if state == 'scheduled' then
  redis.call('zadd', KEYS[2], info.eta, hid)
else
  redis.call('zadd', KEYS[1], -info.priority, hid)
  redis.call('lpush', KEYS[6], 1)
end
return hid
