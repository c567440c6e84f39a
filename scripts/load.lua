-- load.lua - wrk script for scripts/load.sh.
--
-- Usage: wrk ... -s scripts/load.lua URL -- BODIES_FILE
-- BODIES_FILE has one "API_KEY<TAB>JSON_BODY" line per query (scripts/load_gen.c). Each wrk
-- thread pre-formats every request once, then rotates through them from its own offset, so
-- consecutive requests come from different principals with different vectors and filters.
-- Responses are counted by class per thread; done() sums the threads and prints one line
--   load: requests=N duration_us=D p50_us=A p99_us=B max_us=C n2xx=.. n4xx=.. n5xx=.. ...
-- that load.sh parses.

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  reqs = {}
  for line in io.lines(args[1]) do
    local key, body = line:match("^([^\t]+)\t(.*)$")
    if key ~= nil then
      reqs[#reqs + 1] = wrk.format("POST", "/v1/query", {
        ["Content-Type"] = "application/json",
        ["Authorization"] = "Bearer " .. key,
      }, body)
    end
  end
  if #reqs == 0 then
    error("no request bodies in " .. tostring(args[1]))
  end
  idx = (id * 37) % #reqs
  n2xx, n4xx, n5xx, nother = 0, 0, 0, 0
end

function request()
  idx = idx % #reqs + 1
  return reqs[idx]
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    n2xx = n2xx + 1
  elseif status >= 500 then
    n5xx = n5xx + 1
  elseif status >= 400 then
    n4xx = n4xx + 1
  else
    nother = nother + 1
  end
end

function done(summary, latency, requests)
  local t = { n2xx = 0, n4xx = 0, n5xx = 0, nother = 0 }
  for _, thread in ipairs(threads) do
    for k, _ in pairs(t) do
      t[k] = t[k] + (thread:get(k) or 0)
    end
  end
  local e = summary.errors
  io.write(string.format(
    "load: requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d n2xx=%d n4xx=%d n5xx=%d "
      .. "nother=%d socket_errors=%d timeouts=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, t.n2xx, t.n4xx, t.n5xx, t.nother, e.connect + e.read + e.write, e.timeout))
end
