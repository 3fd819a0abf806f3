-- POST /api/v1/auth/login as the seeded login users (right password: one bcrypt each). Each
-- thread takes its slice of BENCH_LOGIN_FILE and presents its users in turn, so that no
-- address has more attempts in flight than the lockout threshold admits at once (beyond it,
-- concurrent attempts on one address are refused with 429 without a check).
package.path = package.path .. ";" .. os.getenv("BENCH_LUA") .. "/?.lua"
local c = require("common")
setup = c.setup
done = c.done
local bodies = {}
local next_body = 0
bad = 0
function init(args)
  local all = c.lines(os.getenv("BENCH_LOGIN_FILE"))
  for n = id + 1, #all, threads do
    bodies[#bodies + 1] = '{"email":"' .. all[n] .. '","password":"violet tugboat margin 47!x"}'
  end
end
function request()
  next_body = next_body % #bodies + 1
  return wrk.format("POST", "/api/v1/auth/login", {["Content-Type"] = "application/json"},
    bodies[next_body])
end
function response(status, headers, body)
  if status < 400 and status ~= 200 then bad = bad + 1 end
end
