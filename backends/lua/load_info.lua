-- Every script reads a message's info through load_info, which never fails:
-- a record that is not JSON or has fields of the wrong type (forged, corrupt)
-- is replaced by a well-formed one that says so in last_error, so a script
-- never stops half way through its writes.
local function load_info(key, hid, state)
  local raw = redis.call('hget', key, hid)
  local ok, info = false, nil
  if raw then ok, info = pcall(cjson.decode, raw) end
  if not ok or type(info) ~= 'table' then
    info = {task_id='', name='', state=state,
      last_error='its info record was unreadable'}
  end
  if type(info.task_id) ~= 'string' then info.task_id = '' end
  if type(info.name) ~= 'string' then info.name = '' end
  if type(info.priority) ~= 'number' then info.priority = 0 end
  if type(info.redeliveries) ~= 'number' then info.redeliveries = 0 end
  if type(info.meta) ~= 'table' or #info.meta > 0 then info.meta = {} end
  if type(info.meta.memory) ~= 'number' then info.meta.memory = nil end
  for _, k in ipairs({'enqueued_at', 'updated_at', 'eta', 'size',
                      'lease_seq'}) do
    if type(info[k]) ~= 'number' then info[k] = nil end
  end
  for _, k in ipairs({'state', 'owner', 'last_error', 'reason'}) do
    if type(info[k]) ~= 'string' then info[k] = nil end
  end
  info.state = info.state or state
  return info
end
