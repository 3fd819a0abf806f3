#!/usr/bin/env python3
"""One load scenario: runs wrk against a server process and measures both sides.

usage: run.py SERVER_PID -- WRK ARGS...

Prints wrk's JSON line (bench/wrk/common.lua) with, added: the server's CPU time per request
in microseconds and its CPU use in cores over the run (from /proc/PID/stat: user + system time
of every thread), and the load generator's CPU use in cores (its own rusage) beside its
thread count, so that a run where the generator, not the server, was the limit shows it.
"""

import json
import os
import resource
import subprocess
import sys
import time

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        # The command name (field 2) may hold spaces: split after its closing parenthesis.
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of the file, 12 and 13 after the name.
    return (int(fields[11]) + int(fields[12])) / TICKS


def main():
    pid = int(sys.argv[1])
    wrk = sys.argv[3:]
    threads = next((int(a[2:]) for a in wrk if a.startswith("-t")), 1)
    before_server = cpu_seconds(pid)
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    out = subprocess.run(wrk, capture_output=True, text=True, check=True).stdout
    wall = time.monotonic() - started
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    after_server = cpu_seconds(pid)
    line = [l for l in out.splitlines() if l.startswith("{")][-1]
    r = json.loads(line)
    server_cpu = after_server - before_server
    generator_cpu = (after_children.ru_utime - before_children.ru_utime
                     + after_children.ru_stime - before_children.ru_stime)
    r["server_cpu_us_per_req"] = round(server_cpu * 1e6 / max(1, r["requests"]), 2)
    r["server_cores"] = round(server_cpu / wall, 2)
    r["generator_cores"] = round(generator_cpu / wall, 2)
    r["generator_threads"] = threads
    print(json.dumps(r))


if __name__ == "__main__":
    main()
