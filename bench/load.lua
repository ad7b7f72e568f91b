-- wrk script for bench/load.ts (--tool wrk) and bench/secrets.ts: rotates through a pool of
-- requests, one per line in the file given after `--`, and prints a one-line JSON summary
-- prefixed WRK_JSON. A line starting with "/" is a GET of that path; any other line is a JSON
-- body POSTed to the URL's path. Headers come from the command line (-H); the request strings
-- are built once.

wrk.method = "POST"

local requests = {}
local index = 0

function init(args)
  local file = assert(io.open(args[1], "r"), "cannot open bodies file " .. tostring(args[1]))
  for line in file:lines() do
    if line:sub(1, 1) == "/" then
      requests[#requests + 1] = wrk.format("GET", line)
    elseif #line > 0 then
      requests[#requests + 1] = wrk.format(nil, nil, nil, line)
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
    '"latency_us":{"p50":%.1f,"p90":%.1f,"p99":%.1f,"p999":%.1f,"max":%.1f,"mean":%.1f}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
