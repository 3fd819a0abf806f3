#!/usr/bin/env python3
"""Revocation stream subscribers: what idle subscribers cost the service, and what they cost
its verify path.

  stream.py memory BASE SERVER_PID N   # resident memory before and with N idle subscribers
  stream.py hold BASE N SECONDS        # keeps N subscribers connected for SECONDS

Each subscriber is one HTTP connection to GET /api/v1/revocations/stream with a key holding
`revocations:read` (made through the API by a fresh user), reading what arrives (heartbeats).
`memory` prints one JSON line; `hold` prints one when its subscribers are all connected
(`{"connected": N}`) and one when it ends (`{"held": N, "messages": M}`).
"""

import asyncio
import http.client
import json
import secrets
import sys
import time
import urllib.parse


def call(base, method, path, body=None, token=None):
    url = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers=headers)
    res = conn.getresponse()
    data = res.read()
    conn.close()
    return res.status, (json.loads(data) if data else None)


def stream_key(base):
    email = f"bench-stream-{secrets.token_hex(6)}@example.com"
    password = "bench stream passphrase"
    status, _ = call(base, "POST", "/api/v1/auth/register", {"email": email, "password": password})
    assert status == 201, status
    status, tokens = call(base, "POST", "/api/v1/auth/login", {"email": email, "password": password})
    assert status == 200, status
    token = tokens["access_token"]
    status, org = call(base, "POST", "/api/v1/organizations", {"name": "stream bench"}, token)
    assert status == 201, status
    status, key = call(base, "POST", "/api/v1/api-keys",
                       {"organization_id": org["id"], "name": "stream",
                        "scopes": ["revocations:read"]}, token)
    assert status == 201, (status, key)
    return key["key"]


class Subscriber:
    def __init__(self):
        self.messages = 0
        self.writer = None

    async def connect(self, host, port, key):
        reader, self.writer = await asyncio.open_connection(host, port)
        self.writer.write(
            (f"GET /api/v1/revocations/stream HTTP/1.1\r\nHost: {host}\r\n"
             f"X-API-Key: {key}\r\nAccept: text/event-stream\r\n\r\n").encode())
        await self.writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
        self.reader = reader

    async def read(self):
        try:
            while True:
                chunk = await self.reader.read(4096)
                if not chunk:
                    return
                self.messages += chunk.count(b"\n\n")
        except (ConnectionError, asyncio.CancelledError):
            return


async def connect_all(base, n):
    url = urllib.parse.urlparse(base)
    key = stream_key(base)
    subscribers = [Subscriber() for _ in range(n)]
    # A few hundred at a time: the listen backlog is finite.
    for i in range(0, n, 200):
        await asyncio.gather(*(s.connect(url.hostname, url.port, key)
                               for s in subscribers[i:i + 200]))
    readers = [asyncio.create_task(s.read()) for s in subscribers]
    return subscribers, readers


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def gauge(base):
    url = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    for line in text.splitlines():
        if line.startswith("auth_revocation_stream_subscribers "):
            return float(line.split()[1])
    return 0.0


async def memory(base, pid, n):
    before = rss_kb(pid)
    started = time.monotonic()
    subscribers, readers = await connect_all(base, n)
    connected_s = time.monotonic() - started
    await asyncio.sleep(3)
    during = rss_kb(pid)
    counted = gauge(base)
    for s in subscribers:
        s.writer.close()
    for r in readers:
        r.cancel()
    await asyncio.sleep(2)
    after = rss_kb(pid)
    print(json.dumps({
        "scenario": "stream-memory", "subscribers": n, "connect_seconds": round(connected_s, 3),
        "rss_before_kb": before, "rss_with_subscribers_kb": during, "rss_after_close_kb": after,
        "per_subscriber_kb": round((during - before) / n, 2), "gauge": counted,
    }), flush=True)


async def hold(base, n, seconds):
    subscribers, readers = await connect_all(base, n)
    print(json.dumps({"connected": n}), flush=True)
    await asyncio.sleep(seconds)
    print(json.dumps({"held": n, "messages": sum(s.messages for s in subscribers)}), flush=True)
    for s in subscribers:
        s.writer.close()
    for r in readers:
        r.cancel()


def main():
    mode = sys.argv[1]
    if mode == "memory":
        asyncio.run(memory(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    elif mode == "hold":
        asyncio.run(hold(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
