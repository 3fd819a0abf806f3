-- POST /api/v1/api-keys/verify-batch with BENCH_BATCH (100) keys per request from this
-- thread's slice of BENCH_KEYS_FILE, consecutive batches moving through the file.
package.path = package.path .. ";" .. os.getenv("BENCH_LUA") .. "/?.lua"
local c = require("common")
setup = c.setup
done = c.done
local keys, i
local size = tonumber(os.getenv("BENCH_BATCH") or "100")
bad = 0
function init(args)
  local all = c.lines(os.getenv("BENCH_KEYS_FILE"))
  keys = {}
  for n = id + 1, #all, threads do keys[#keys + 1] = all[n] end
  i = 0
end
function request()
  local items = {}
  for n = 1, size do
    i = i % #keys + 1
    items[n] = '{"key":"' .. keys[i] .. '"}'
  end
  return wrk.format("POST", "/api/v1/api-keys/verify-batch", {["Content-Type"] = "application/json"},
    '{"items":[' .. table.concat(items, ",") .. ']}')
end
function response(status, headers, body)
  if status < 400 and status ~= 200 then bad = bad + 1 end
end
