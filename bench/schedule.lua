-- wrk script of the benchmark (bench/bench.py): POSTs the form body in
-- $BENCH_BODY to the URL, counts the answers whose JSON says "ok", and
-- with $BENCH_LIMIT_PER_THREAD > 0 stops each thread after that many
-- answers (so a run schedules a known number of jobs).
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or ""
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

local limit = tonumber(os.getenv("BENCH_LIMIT_PER_THREAD") or "0") or 0
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   ok = 0
   bad = 0
end

function response(status, headers, body)
   if status == 200 and string.find(body, '"status": "ok"', 1, true) then
      ok = ok + 1
   else
      bad = bad + 1
   end
   if limit > 0 and ok + bad >= limit then
      wrk.thread:stop()
   end
end

function done(summary, latency, requests)
   local total_ok, total_bad = 0, 0
   for _, thread in ipairs(threads) do
      total_ok = total_ok + thread:get("ok")
      total_bad = total_bad + thread:get("bad")
   end
   io.write(string.format("BENCH ok=%d bad=%d\n", total_ok, total_bad))
end
