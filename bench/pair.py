#!/usr/bin/env python3
"""A scenario measured in slices, each right after a slice of the ceiling: one result line.

usage: pair.py SLICES_FILE NAME CONNECTIONS

SLICES_FILE holds bench/run.py's JSON lines, alternately the ceiling's slice and the
scenario's (scripts/bench.sh, `paired`). Prints one JSON line: the scenario's totals over its
slices (requests/s and server CPU per request from the sums, the median of the slices' p50 and
the largest of their p99), and under "ceiling" the same for the ceiling's slices taken beside
them. Ratios of the two are measured on a machine in the same state, which two runs minutes
apart are not: on a virtual machine whose speed drifts from one minute to the next, the
ceiling alone moved by a factor of 1.6 between consecutive runs. "slices" keeps each pair's
own ratios, so that the spread is there to read.
"""

import json
import statistics
import sys


def total(runs):
    requests = sum(r["requests"] for r in runs)
    seconds = sum(r["seconds"] for r in runs)
    cpu_us = sum(r["server_cpu_us_per_req"] * r["requests"] for r in runs)
    return {
        "requests": requests,
        "seconds": round(seconds, 2),
        "rps": round(requests / seconds, 1) if seconds else 0.0,
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms": max(r["p99_ms"] for r in runs),
        "max_ms": max(r["max_ms"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "non2xx": sum(r["non2xx"] for r in runs),
        "bad": sum(r["bad"] for r in runs),
        "server_cpu_us_per_req": round(cpu_us / max(1, requests), 2),
        "server_cores": round(cpu_us / 1e6 / seconds, 2),
        "generator_cores": max(r["generator_cores"] for r in runs),
        "generator_threads": runs[0]["generator_threads"],
    }


def ratio(a, b):
    """a / b to three places, or None when the ceiling's slice measured nothing."""
    return round(a / b, 3) if b else None


def main():
    path, name, connections = sys.argv[1], sys.argv[2], int(sys.argv[3])
    lines = [json.loads(line) for line in open(path) if line.strip()]
    if not lines or len(lines) % 2:
        sys.exit(f"{path}: expected pairs of ceiling and scenario slices, found {len(lines)} lines")
    ceiling, scenario = lines[0::2], lines[1::2]
    row = {"scenario": name, "connections": connections, **total(scenario)}
    row["ceiling"] = total(ceiling)
    row["slices"] = [
        {
            "rps_ratio": ratio(s["rps"], c["rps"]),
            "cpu_ratio": ratio(s["server_cpu_us_per_req"], c["server_cpu_us_per_req"]),
            "ceiling_rps": c["rps"],
            "ceiling_cpu_us_per_req": c["server_cpu_us_per_req"],
        }
        for c, s in zip(ceiling, scenario)
    ]
    print(json.dumps(row))


if __name__ == "__main__":
    main()
