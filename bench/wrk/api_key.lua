-- POST /api/v1/api-keys/verify, walking this thread's slice of BENCH_KEYS_FILE (one key for
-- the cached scenario, 100,000 for the cold one); every answer must be valid (or, with
-- BENCH_EXPECT_INVALID, an unknown-key verdict).
package.path = package.path .. ";" .. os.getenv("BENCH_LUA") .. "/?.lua"
local c = require("common")
setup = c.setup
done = c.done
local keys, i, last
local expect = os.getenv("BENCH_EXPECT_INVALID") and '"valid":false' or '"valid":true'
bad = 0
function init(args)
  local all = c.lines(os.getenv("BENCH_KEYS_FILE"))
  keys = {}
  for n = id + 1, #all, threads do keys[#keys + 1] = all[n] end
  if #keys == 0 then keys = all end
  i = 0
end
function request()
  i = i % #keys + 1
  return wrk.format("POST", "/api/v1/api-keys/verify", {["Content-Type"] = "application/json"},
    '{"key":"' .. keys[i] .. '","required_scopes":["read"]}')
end
function response(status, headers, body)
  if status < 400 and (status ~= 200 or not body:find(expect, 1, true)) then bad = bad + 1 end
end
