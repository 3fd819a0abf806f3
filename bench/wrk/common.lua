-- Shared by every scenario: reads credential files, and prints one JSON line of results
-- (requests/s, p50, p99 in ms, errors) when the run ends. `wrk` runs one Lua state per thread
-- plus one for setup/done, so per-thread counters are collected through `thread:get`.
local M = {}

function M.lines(path)
  local out = {}
  local f = assert(io.open(path, "r"), "cannot open " .. path)
  for line in f:lines() do
    if #line > 0 then out[#out + 1] = line end
  end
  f:close()
  return out
end

function M.json_escape(s)
  return (s:gsub('\\', '\\\\'):gsub('"', '\\"'))
end

-- Each thread gets an id (0..n-1) and the thread count, to walk its own slice of inputs.
local threads = {}
function M.setup(thread)
  thread:set("id", #threads)
  threads[#threads + 1] = thread
  for _, t in ipairs(threads) do t:set("threads", #threads) end
end

-- wrk counts only socket errors and non-2xx/3xx as errors; scenarios whose success is
-- a 2xx with a given body count their own `bad` answers too.
function M.done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + (t:get("bad") or 0) end
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.timeout + e.status + bad
  local seconds = summary.duration / 1e6
  io.write(string.format(
    '{"requests":%d,"seconds":%.2f,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"errors":%d,"non2xx":%d,"bad":%d}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    errors, e.status, bad))
end

return M
