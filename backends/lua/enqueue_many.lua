-- Many messages, each stored as enqueue.lua stores it, under consecutive
-- handles (so equal priorities keep their order), with one command per key;
-- no wake-up (the caller sends them).
-- KEYS: pending sched msg info ids seq
-- ARGV: count, then enqueue.lua's five ARGV per message
local count = tonumber(ARGV[1])
local first = redis.call('incrby', KEYS[6], count) - count
local msg, info, ids, pending, sched = {}, {}, {}, {}, {}
for i = 0, count - 1 do
  local a = 2 + i * 5
  local hid = string.format('%016d', first + 1 + i)
  msg[#msg + 1] = hid
  msg[#msg + 1] = ARGV[a]
  info[#info + 1] = hid
  info[#info + 1] = ARGV[a + 1]
  if ARGV[a + 2] ~= '' then
    ids[#ids + 1] = ARGV[a + 2]
    ids[#ids + 1] = hid
  end
  local set = pending
  if ARGV[a + 3] == 'scheduled' then set = sched end
  set[#set + 1] = ARGV[a + 4]
  set[#set + 1] = hid
end
redis.call('hset', KEYS[3], unpack(msg))
redis.call('hset', KEYS[4], unpack(info))
if #ids > 0 then redis.call('hset', KEYS[5], unpack(ids)) end
if #sched > 0 then redis.call('zadd', KEYS[2], unpack(sched)) end
if #pending > 0 then redis.call('zadd', KEYS[1], unpack(pending)) end
return #pending / 2
