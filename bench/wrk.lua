-- wrk script used by bench/run for every load run.
--   BENCH_CLOSE=1  send "Connection: close" on every request (one request
--                  per connection: measures accept + connection set-up)
-- The request itself (path and query string) is the fixed URL given to wrk.
-- done() prints one machine-readable line that bench/run parses; wrk's own
-- --latency report is printed as usual and kept in the raw output.

if os.getenv("BENCH_CLOSE") == "1" then
  wrk.headers["Connection"] = "close"
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d " ..
    "status=%d timeout=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d " ..
    "max_us=%d mean_us=%.1f\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
