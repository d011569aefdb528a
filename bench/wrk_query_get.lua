-- bench/wrk_query_get.lua — wrk script of the query benchmark (bench/bench_query.sh).
--
-- Every request is GET /api/v1/resources/b-NNNNNN, cycling over $BENCH_IDS
-- resources (the fixture `qry_bench fill` made), with Authorization: Bearer
-- $BENCH_KEY. Every answer that is not 200 is counted; done() prints one line
-- that bench_query.sh checks (any non-200 answer or socket error fails it):
--   WRK requests=N duration_us=N errors=N non200=N first_status=S p50_us=N p99_us=N
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  ids = tonumber(os.getenv("BENCH_IDS") or "1000")
  counter = tid * 7919
  non200 = 0
  first_status = 0
  headers = { ["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "") }
end

function request()
  counter = counter + 1
  return wrk.format("GET", string.format("/api/v1/resources/b-%06d", counter % ids), headers)
end

function response(status, hdrs, body)
  if status ~= 200 then
    non200 = non200 + 1
    if first_status == 0 then first_status = status end
  end
end

function done(summary, latency, requests)
  local bad, first = 0, 0
  for _, t in ipairs(threads) do
    bad = bad + (t:get("non200") or 0)
    local f = t:get("first_status") or 0
    if first == 0 then first = f end
  end
  local e = summary.errors
  io.write(string.format(
    "WRK requests=%d duration_us=%d errors=%d non200=%d first_status=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, bad, first,
    latency:percentile(50), latency:percentile(99)))
end
