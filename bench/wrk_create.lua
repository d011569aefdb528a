-- bench/wrk_create.lua — wrk script of the `commands` benchmark (bench/run.sh).
--
-- Every request is POST /api/v1/resources creating a resource with a unique
-- id, "<tag>-<thread>-<counter>" (tag from $BENCH_ID_TAG, unique per run), with
-- Authorization: Bearer $BENCH_KEY and a JSON body of typical field sizes (a
-- 30-character name, a 61-character description). Every answer that is not
-- 201 is counted; done() prints one machine-readable line that run.sh checks
-- (any non-201 answer or socket error fails the run):
--   WRK requests=N duration_us=N errors=N non201=N first_status=S p50_us=N p99_us=N
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  tag = os.getenv("BENCH_ID_TAG") or "wrk"
  key = os.getenv("BENCH_KEY") or ""
  non201 = 0
  first_status = 0
  headers = {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
  }
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"id":"%s-%d-%d","name":"benchmark resource %012d",' ..
    '"description":"created by the kcqrs benchmark; unique id, typical field sizes",' ..
    '"status":"active"}', tag, tid, counter, counter)
  return wrk.format("POST", "/api/v1/resources", headers, body)
end

function response(status, hdrs, body)
  if status ~= 201 then
    non201 = non201 + 1
    if first_status == 0 then first_status = status end
  end
end

function done(summary, latency, requests)
  local bad, first = 0, 0
  for _, t in ipairs(threads) do
    bad = bad + (t:get("non201") or 0)
    local f = t:get("first_status") or 0
    if first == 0 then first = f end
  end
  local e = summary.errors
  io.write(string.format(
    "WRK requests=%d duration_us=%d errors=%d non201=%d first_status=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, bad, first,
    latency:percentile(50), latency:percentile(99)))
end
