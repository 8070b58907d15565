-- wrk script of the serving benchmark: every request POSTs the same JSON body, read once
-- from the file named by $BENCH_BODY (one row, in the server's own request format).
local path = os.getenv("BENCH_BODY")
local file = assert(io.open(path, "rb"), "cannot read BENCH_BODY=" .. tostring(path))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
