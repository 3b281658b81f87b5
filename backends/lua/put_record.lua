-- The first write frees nothing but lets a full Redis (noeviction) finish
-- the script: the heartbeat replaces a record of the same size and must not
-- stop while Redis is out of memory. KEYS: records  ARGV: key value ttl
-- ("expires" is for readers of earlier versions.)
redis.call('hdel', KEYS[1], ' ')
local t = redis.call('time')
local at = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
local expires = 'null'
if ARGV[3] ~= 'null' then
  expires = string.format('%.6f', tonumber(at) + tonumber(ARGV[3]))
end
redis.call('hset', KEYS[1], ARGV[1], '{"at": ' .. at .. ', "ttl": ' ..
  ARGV[3] .. ', "expires": ' .. expires .. ', "value": ' .. ARGV[2] .. '}')
return 1
