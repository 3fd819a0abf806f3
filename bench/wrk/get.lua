-- GET with an optional bearer token: /health/live (no token) and /auth/verify.
package.path = package.path .. ";" .. os.getenv("BENCH_LUA") .. "/?.lua"
local c = require("common")
setup = c.setup
done = c.done
local token_file = os.getenv("BENCH_TOKEN_FILE")
if token_file then
  wrk.headers["Authorization"] = "Bearer " .. c.lines(token_file)[1]
end
bad = 0
-- With BENCH_DELAY_MS, each connection waits that long between requests (a paced load).
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if pause then
  function delay() return pause end
end
