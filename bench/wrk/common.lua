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

-- Each thread gets an id (0..n-1) and the thread count, to walk its own slice of inputs. The
-- count comes from BENCH_WRK_THREADS (wrk's -t), not from the threads set up so far: wrk runs
-- a thread's `init` right after its own `setup`, before the next thread is set up, so a count
-- taken then gave the first thread every input and slices that overlapped the others' (two
-- threads presenting one refresh token: a reuse, the session ended and both connections' tokens
-- refused).
local threads = {}
function M.setup(thread)
  local total = assert(tonumber(os.getenv("BENCH_WRK_THREADS")), "set BENCH_WRK_THREADS to wrk's -t")
  thread:set("id", #threads)
  thread:set("threads", total)
  threads[#threads + 1] = thread
end

-- wrk counts socket errors and answers of 400 and above (`non2xx` below); scenarios whose
-- success is a given status or body count, as `bad`, the answers below 400 that are not it,
-- so that no answer is counted twice.
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
