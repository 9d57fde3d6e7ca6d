-- wrk script: POST realistic events from `tbhook generate` (bench/out/events.ndjson).
-- Every request carries a distinct body (its timestamp is made unique per run, thread and
-- request), so no request takes the duplicate shortcut; unless DUPLICATE_EVERY (N) is given:
-- then every Nth request is the one before it again, as Tracebuzz's retries are.
-- Args: EVENTS_FILE RUN_ID [DUPLICATE_EVERY]
local bodies = {}
local threads = {}
local counter = 0
local base = 0
local every = 0
local sent = 0

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
  every = tonumber(args[3] or "0")
end

request = function()
  sent = sent + 1
  if every == 0 or sent % every ~= 0 or counter == 0 then
    counter = counter + 1
  end  -- else the body of the request before, again: a duplicate
  local line = bodies[(counter - 1) % #bodies + 1]
  local body = string.gsub(line, '"timestamp":%d+', '"timestamp":' .. (base + counter))
  return wrk.format("POST", "/", {["Content-Type"] = "application/json"}, body)
end
