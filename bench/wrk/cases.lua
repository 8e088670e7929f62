-- wrk script: replays prepared requests, one per line of the file given as the first
-- argument, tab-separated: method, path, header name, header value, body.
-- Thread t of n (n is the second argument) sends lines t, t+n, t+2n, ... Running out of
-- lines is counted and reported, unless the third argument is "wrap" (read-only cases).

local count = 0
local threads = {}

function setup(thread)
  thread:set("id", count)
  count = count + 1
  table.insert(threads, thread)
end

local prepared = {}
local at = 1
local wrap = false
exhausted = 0

function init(args)
  local n = tonumber(args[2])
  wrap = args[3] == "wrap"
  local i = 0
  for line in io.lines(args[1]) do
    if i % n == id then
      local method, path, name, value, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      local headers = { ["Content-Type"] = "application/json" }
      headers[name] = value
      if body == "" then body = nil end
      prepared[#prepared + 1] = wrk.format(method, path, headers, body)
    end
    i = i + 1
  end
end

function request()
  if at > #prepared then
    at = 1
    if not wrap then exhausted = exhausted + 1 end
  end
  local r = prepared[at]
  at = at + 1
  return r
end

function done(summary, latency, requests)
  local out = 0
  for _, t in ipairs(threads) do out = out + (t:get("exhausted") or 0) end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,"non_2xx":%d,"socket_errors":%d,"exhausted":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.status, e.connect + e.read + e.write + e.timeout, out))
end
