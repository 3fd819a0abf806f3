-- POST /api/v1/auth/register with a new email each time (one bcrypt hash each).
package.path = package.path .. ";" .. os.getenv("BENCH_LUA") .. "/?.lua"
local c = require("common")
setup = c.setup
done = c.done
local n, run
bad = 0
function init(args)
  n = 0
  run = os.getenv("BENCH_RUN") or tostring(os.time())
end
function request()
  n = n + 1
  return wrk.format("POST", "/api/v1/auth/register", {["Content-Type"] = "application/json"},
    '{"email":"load.' .. run .. '.' .. id .. '.' .. n .. '@example.com","password":"violet tugboat margin 47!x"}')
end
function response(status, headers, body)
  if status < 400 and status ~= 201 then bad = bad + 1 end
end
