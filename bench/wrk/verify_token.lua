-- POST /api/v1/auth/verify-token {token}: counts any answer other than valid:true as bad.
package.path = package.path .. ";" .. os.getenv("BENCH_LUA") .. "/?.lua"
local c = require("common")
setup = c.setup
done = c.done
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"token":"' .. c.lines(os.getenv("BENCH_TOKEN_FILE"))[1] .. '"}'
bad = 0
function response(status, headers, body)
  if status < 400 and (status ~= 200 or not body:find('"valid":true', 1, true)) then bad = bad + 1 end
end
