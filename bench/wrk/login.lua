-- POST /api/v1/auth/login as the seeded login user (right password: one bcrypt each).
package.path = package.path .. ";" .. os.getenv("BENCH_LUA") .. "/?.lua"
local c = require("common")
setup = c.setup
done = c.done
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":"bench.login@example.com","password":"violet tugboat margin 47!x"}'
bad = 0
function response(status, headers, body)
  if status < 400 and status ~= 200 then bad = bad + 1 end
end
