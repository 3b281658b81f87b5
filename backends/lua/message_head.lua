-- A message over the lease limit is cut to its first head_bytes as it is
-- leased and handed over with its length, so a forged giant never reaches
-- the worker or a dead letter.
local function message_head(key, hid, limit, head)
  local size = redis.call('hstrlen', key, hid)
  if limit ~= '' and size > tonumber(limit) then
    local cut = string.sub(redis.call('hget', key, hid), 1, tonumber(head))
    redis.call('hset', key, hid, cut)
    return cut, size
  end
  return redis.call('hget', key, hid), size
end
