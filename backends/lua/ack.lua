-- KEYS: running msg info ids pending dead wake done results
-- ARGV: hid outcome reason now
return finish(ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]))
