-- wrk script for bench/secrets.ts: GET requests rotating through a list of URL paths, one per
-- line in the file given after `--`; with no file, the URL's own path with a JSON body from
-- BODY (for the POST baseline). Prints a one-line JSON summary prefixed WRK_JSON.

local requests = {}
local index = 0

function init(args)
  local file = assert(io.open(args[1], "r"), "cannot open paths file " .. tostring(args[1]))
  for line in file:lines() do
    if #line > 0 then
      local method, rest = line:match("^(%u+) (.*)$")
      if method == "POST" then
        local path, body = rest:match("^(%S+) (.*)$")
        requests[#requests + 1] = wrk.format("POST", path, { ["Content-Type"] = "application/json" }, body)
      else
        requests[#requests + 1] = wrk.format("GET", line)
      end
    end
  end
  file:close()
  assert(#requests > 0, "no requests in " .. args[1])
end

function request()
  index = index + 1
  if index > #requests then index = 1 end
  return requests[index]
end

function done(summary, latency, _requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%.1f,"p99":%.1f}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
