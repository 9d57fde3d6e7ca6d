-- wrk script: POST realistic events from `tbhook generate` (bench/out/events.ndjson).
-- Every request carries a distinct body (its timestamp is made unique per run, thread and
-- request), so no request takes the duplicate shortcut. Args: EVENTS_FILE RUN_ID
local bodies = {}
local threads = {}
local counter = 0
local base = 0

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  for line in io.lines(args[1]) do
    table.insert(bodies, line)
    if #bodies == 50000 then break end
  end
  base = 1800000000 + tonumber(args[2]) * 10000000 + tid * 1000000
end

request = function()
  counter = counter + 1
  local line = bodies[(counter - 1) % #bodies + 1]
  local body = string.gsub(line, '"timestamp":%d+', '"timestamp":' .. (base + counter))
  return wrk.format("POST", "/", {["Content-Type"] = "application/json"}, body)
end
