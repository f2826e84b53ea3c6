-- bench/http/pipeline.lua - wrk's script for bench/http/http_bench.py.
--
--   wrk -t1 -c256 -d5s -s pipeline.lua URL -- DEPTH
--
-- DEPTH > 1: every batch is DEPTH requests for the URL's path, built with
-- wrk.format() and sent in one write; wrk counts each response, and takes
-- one latency sample per batch (when its last response is in). DEPTH 1
-- leaves wrk's own static request alone. At the end, one line
-- "wrk-json: {...}" on stdout: the requests, the run's duration, the
-- errors by kind and the latency percentiles (us), for the harness to read
-- instead of wrk's rounded summary. (done() runs in the main thread's Lua
-- state, where init() did not run: it knows nothing of the depth.)

local depth = 1

function init(args)
  depth = tonumber(args[1] or "1") or 1
  if depth > 1 then
    local batch = {}
    for i = 1, depth do
      batch[i] = wrk.format()
    end
    local req = table.concat(batch)
    request = function()
      return req
    end
  end
end

local percentiles = { 50, 75, 90, 99, 99.9, 99.99 }

function done(summary, latency, requests)
  local e = summary.errors
  local out = {
    string.format('"requests":%d', summary.requests),
    string.format('"duration_us":%d', summary.duration),
    string.format('"connect":%d,"read":%d,"write":%d,"status":%d,' ..
                  '"timeout":%d', e.connect, e.read, e.write, e.status,
                  e.timeout),
  }
  local lat = {}
  for _, p in ipairs(percentiles) do
    lat[#lat + 1] = string.format('"%s":%d', tostring(p),
                                  latency:percentile(p))
  end
  out[#out + 1] = '"latency_us":{' .. table.concat(lat, ",") .. "}"
  io.write("wrk-json: {" .. table.concat(out, ",") .. "}\n")
end
