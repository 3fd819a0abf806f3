-- POST /api/v1/devices/authenticate, walking this thread's devices (`<id> <secret>` lines).
package.path = package.path .. ";" .. os.getenv("BENCH_LUA") .. "/?.lua"
local c = require("common")
setup = c.setup
done = c.done
local bodies, i
bad = 0
function init(args)
  local all = c.lines(os.getenv("BENCH_DEVICES_FILE"))
  bodies = {}
  for n = id + 1, #all, threads do
    local device, secret = all[n]:match("^(%S+) (%S+)$")
    bodies[#bodies + 1] = '{"device_id":"' .. device .. '","device_secret":"' .. secret .. '"}'
  end
  i = 0
end
function request()
  i = i % #bodies + 1
  return wrk.format("POST", "/api/v1/devices/authenticate", {["Content-Type"] = "application/json"}, bodies[i])
end
function response(status, headers, body)
  if status < 400 and status ~= 200 then bad = bad + 1 end
end
