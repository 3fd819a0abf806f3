#!/usr/bin/env python3
"""Verifies every key of a file once, 100 per POST /api/v1/api-keys/verify-batch, from
several keep-alive connections, then prints the server's resident memory.

    bench/memory.py BASE_URL KEYS_FILE SERVER_PID [CONNECTIONS]

Prints one JSON line: batches, keys, seconds, non-200 answers, VmRSS and VmHWM in kB.
"""
import http.client
import json
import sys
import threading
import time
from urllib.parse import urlparse

base, keys_file, pid = sys.argv[1], sys.argv[2], sys.argv[3]
connections = int(sys.argv[4]) if len(sys.argv) > 4 else 16
url = urlparse(base)
keys = [line.strip() for line in open(keys_file) if line.strip()]
batches = [keys[i:i + 100] for i in range(0, len(keys), 100)]
failures = []


def worker(index):
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    for batch in batches[index::connections]:
        body = json.dumps({"items": [{"key": k} for k in batch]})
        conn.request("POST", "/api/v1/api-keys/verify-batch", body,
                     {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            failures.append(response.status)
    conn.close()


started = time.monotonic()
threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.monotonic() - started
status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status") if ":" in line)
kb = lambda name: int(status[name].split()[0])
print(json.dumps({"scenario": "memory", "batches": len(batches), "keys": len(keys),
                  "seconds": round(elapsed, 1), "failures": len(failures),
                  "rss_kb": kb("VmRSS"), "hwm_kb": kb("VmHWM")}))
