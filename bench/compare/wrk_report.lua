-- wrk_report.lua: wrk's summary as one JSON line on stdout (after wrk's own
-- report), for bench/compare_bench.py. Latencies are in microseconds,
-- duration too; errors.status counts answers with a status above 399.
done = function(summary, latency, requests)
	local e = summary.errors
	io.write(string.format(
		'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
		'"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, ' ..
		'"p50_us": %d, "p99_us": %d, "mean_us": %.1f}\n',
		summary.requests, summary.duration, summary.bytes,
		e.connect, e.read, e.write, e.status, e.timeout,
		latency:percentile(50), latency:percentile(99), latency.mean))
end
