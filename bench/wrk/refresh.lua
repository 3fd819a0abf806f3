-- POST /api/v1/auth/refresh, each connection chaining its own session: a request presents
-- the newest token of a session, its answer's refresh_token replaces it. Each thread owns a
-- slice of the sessions in BENCH_REFRESH_FILE (at least as many as its connections).
package.path = package.path .. ";" .. os.getenv("BENCH_LUA") .. "/?.lua"
local c = require("common")
setup = c.setup
done = c.done
local free = {}
bad = 0
function init(args)
  local all = c.lines(os.getenv("BENCH_REFRESH_FILE"))
  for n = id + 1, #all, threads do free[#free + 1] = all[n] end
end
function request()
  local token = table.remove(free)
  if not token then
    -- No idle session: should not happen with enough sessions. Its answer (a 200 without a
    -- token) is counted as bad in `response`.
    return wrk.format("GET", "/health/live")
  end
  return wrk.format("POST", "/api/v1/auth/refresh", {["Content-Type"] = "application/json"},
    '{"refresh_token":"' .. token .. '"}')
end
function response(status, headers, body)
  local token = status == 200 and body:match('"refresh_token":"([^"]+)"')
  if token then
    free[#free + 1] = token
  elseif status < 400 then
    bad = bad + 1 -- an answer without a token (a refusal is counted by wrk as non-2xx)
  end
  -- A session whose refresh was refused is gone from the pool.
end
