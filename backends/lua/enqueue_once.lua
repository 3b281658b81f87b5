-- Messages that may carry a key, each stored as enqueue.lua stores it unless
-- another job holds its key: the hash `keys` maps a key to the job holding
-- it and the sorted set `keyexp` scores it with when its hold ends (past
-- it, the job holds it only while its message is pending, scheduled or
-- running). Checking and taking a key is atomic with the enqueue. Up to 100
-- keys no job holds any more are deleted first. No wake-up (the caller
-- sends them).
-- KEYS: pending sched msg info ids seq keys keyexp
-- ARGV: window, count, then per message enqueue.lua's five ARGV, the key
-- ('' for none) and the eta ('' for none)
-- Returns the number stored pending, then per message the id of the job
-- holding its key (its own when stored) and 1 when stored, else 0.
local function live(task_id)
  local hid = redis.call('hget', KEYS[5], task_id)
  if not hid then return false end
  local raw = redis.call('hget', KEYS[4], hid)
  if not raw then return false end
  local ok, info = pcall(cjson.decode, raw)
  if not ok or type(info) ~= 'table' then return false end
  return info.state == 'pending' or info.state == 'scheduled'
    or info.state == 'running'
end

local function holder(key, now)
  local held = redis.call('hget', KEYS[7], key)
  if not held then return nil end
  local ends = tonumber(redis.call('zscore', KEYS[8], key))
  if (ends and ends > now) or live(held) then return held end
  return nil
end

local t = redis.call('time')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[1])
local count = tonumber(ARGV[2])
for _, key in ipairs(redis.call('zrangebyscore', KEYS[8], '-inf', now,
                                'limit', 0, 100)) do
  local held = redis.call('hget', KEYS[7], key)
  if not held or not live(held) then
    redis.call('hdel', KEYS[7], key)
    redis.call('zrem', KEYS[8], key)
  end
end
local out, pending = {0}, 0
for i = 0, count - 1 do
  local a = 3 + i * 7
  local task_id, key = ARGV[a + 2], ARGV[a + 5]
  local held = nil
  if key ~= '' then
    held = holder(key, now)
    if not held then
      redis.call('hset', KEYS[7], key, task_id)
      redis.call('zadd', KEYS[8],
                 math.max(now, tonumber(ARGV[a + 6]) or 0) + window, key)
    end
  end
  if held then
    out[#out + 1] = held
    out[#out + 1] = 0
  else
    local hid = string.format('%016d', redis.call('incr', KEYS[6]))
    if add(hid, ARGV[a], ARGV[a + 1], task_id, ARGV[a + 3], ARGV[a + 4]) then
      pending = pending + 1
    end
    out[#out + 1] = task_id
    out[#out + 1] = 1
  end
end
out[1] = pending
return out
