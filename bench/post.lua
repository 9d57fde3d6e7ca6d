-- wrk script: POST realistic, distinct newResult events (distinct bodies: no dedupe shortcut).
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
end

request = function()
  counter = counter + 1
  local uid = tid * 100000000 + counter
  local body = string.format(
    '{"event":"newResult","searchId":11111,"uniqueId":%d,"resultId":%d,"personId":%d,"caseId":%d,"handlerId":0,"sourceId":14,"connectionId":111,"typeId":4,"own":%d,"timestamp":%d}',
    uid, uid, 1000 + counter % 5000, 50000 + counter % 20000, counter % 2, 1700000000 + counter)
  return wrk.format("POST", "/", {["Content-Type"] = "application/json"}, body)
end
