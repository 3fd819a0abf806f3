#!/usr/bin/env python3
"""Samples a server's resident memory while a load runs beside it, and reports how much it
grew after the warm-up.

    bench/soak.py SERVER_PID SECONDS [INTERVAL_SECONDS] [WARMUP_SECONDS]

Reads VmRSS from /proc every INTERVAL (5) seconds for SECONDS. Nothing scrapes /metrics
meanwhile: memory that only a scrape releases shows up as growth. Prints one JSON line: the
resident size at the end of the warm-up (30 s by default) and at the end, the growth between
them in MB and in MB per minute (least-squares slope over the samples after the warm-up), the
peak (VmHWM) and every sample as [seconds, kB].
"""
import json
import sys
import time

pid = sys.argv[1]
seconds = float(sys.argv[2])
interval = float(sys.argv[3]) if len(sys.argv) > 3 else 5.0
warmup = float(sys.argv[4]) if len(sys.argv) > 4 else 30.0


def status(name):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise SystemExit(f"no {name} for process {pid}")


samples = []
started = time.monotonic()
while True:
    elapsed = time.monotonic() - started
    samples.append((round(elapsed, 1), status("VmRSS")))
    if elapsed >= seconds:
        break
    time.sleep(min(interval, max(0.0, seconds - elapsed)))

after = [(t, kb) for t, kb in samples if t >= warmup] or samples[-1:]
n = len(after)
mean_t = sum(t for t, _ in after) / n
mean_kb = sum(kb for _, kb in after) / n
var = sum((t - mean_t) ** 2 for t, _ in after)
slope_kb_s = sum((t - mean_t) * (kb - mean_kb) for t, kb in after) / var if var else 0.0
print(json.dumps({
    "scenario": "soak",
    "seconds": round(samples[-1][0], 1),
    "warmup_s": warmup,
    "rss_warm_kb": after[0][1],
    "rss_end_kb": samples[-1][1],
    "growth_mb": round((samples[-1][1] - after[0][1]) / 1024, 1),
    "slope_mb_per_min": round(slope_kb_s * 60 / 1024, 2),
    "hwm_kb": status("VmHWM"),
    "samples": samples,
}))
