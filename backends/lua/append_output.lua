-- Append one chunk to a job's output stream (a Redis stream whose entry
-- ids are "<seq>-0") and its head hash (seq, bytes, dropped); past the
-- bound drop the oldest chunks, counting them; both keys live ttl seconds
-- after the last append.
-- KEYS: stream head  ARGV: data size max_chunks max_bytes ttl at run
local size = tonumber(ARGV[2])
local seq = redis.call('hincrby', KEYS[2], 'seq', 1)
local bytes = redis.call('hincrby', KEYS[2], 'bytes', size)
redis.call('xadd', KEYS[1], seq .. '-0', 'd', ARGV[1], 's', ARGV[2],
  't', ARGV[6], 'r', ARGV[7])
local chunks = redis.call('xlen', KEYS[1])
local max_chunks = tonumber(ARGV[3])
local max_bytes = tonumber(ARGV[4])
local dropped = 0
local freed = 0
while chunks > max_chunks or bytes - freed > max_bytes do
  local oldest = redis.call('xrange', KEYS[1], '-', '+', 'count', 1)[1]
  if oldest == nil then break end
  redis.call('xdel', KEYS[1], oldest[1])
  freed = freed + tonumber(oldest[2][4])
  chunks = chunks - 1
  dropped = dropped + 1
end
if dropped > 0 then
  redis.call('hincrby', KEYS[2], 'bytes', -freed)
  redis.call('hincrby', KEYS[2], 'dropped', dropped)
end
redis.call('expire', KEYS[1], ARGV[5])
redis.call('expire', KEYS[2], ARGV[5])
return seq
