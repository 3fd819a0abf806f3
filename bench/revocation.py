#!/usr/bin/env python3
"""Revocation-to-rejection lag across two instances over one database.

For each of N keys: create it through instance A, verify it once through instance B (so that
B holds it in its cache), revoke it through A, then verify it through B in a tight loop until
B answers REVOKED. The lag is the time from A's revoke answer to B's first REVOKED answer;
the revoke latency is A's revoke call itself. Prints one JSON line with percentiles.

usage: revocation.py BASE_A BASE_B N
"""

import http.client
import json
import secrets
import sys
import time
import urllib.parse


class Client:
    def __init__(self, base):
        url = urllib.parse.urlparse(base)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)

    def call(self, method, path, body=None, token=None):
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self.conn.request(method, path, body=json.dumps(body) if body is not None else None,
                          headers=headers)
        res = self.conn.getresponse()
        data = res.read()
        return res.status, (json.loads(data) if data else None)


def percentile(values, p):
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def main():
    base_a, base_b, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    a, b = Client(base_a), Client(base_b)
    email = f"bench-revocation-{secrets.token_hex(6)}@example.com"
    password = "bench revocation passphrase"
    status, _ = a.call("POST", "/api/v1/auth/register", {"email": email, "password": password})
    assert status == 201, status
    status, tokens = a.call("POST", "/api/v1/auth/login", {"email": email, "password": password})
    assert status == 200, status
    token = tokens["access_token"]
    status, org = a.call("POST", "/api/v1/organizations", {"name": "revocation bench"}, token)
    assert status == 201, status
    lags, revokes, polls = [], [], 0
    for i in range(n):
        status, created = a.call("POST", "/api/v1/api-keys",
                                 {"organization_id": org["id"], "name": f"k{i}", "scopes": []},
                                 token)
        assert status == 201, (status, created)
        check = {"key": created["key"], "required_scopes": []}
        status, verdict = b.call("POST", "/api/v1/api-keys/verify", check)
        assert status == 200 and verdict["valid"], verdict
        started = time.perf_counter()
        status, _ = a.call("POST", f"/api/v1/api-keys/{created['id']}/revoke", None, token)
        revoked = time.perf_counter()
        assert status == 200, status
        while True:
            status, verdict = b.call("POST", "/api/v1/api-keys/verify", check)
            polls += 1
            assert status == 200, status
            if not verdict["valid"]:
                assert verdict["error"] == "REVOKED", verdict
                break
            if time.perf_counter() - revoked > 30:
                raise SystemExit(f"key {created['id']} still valid at B after 30 s")
        lags.append((time.perf_counter() - revoked) * 1000)
        revokes.append((revoked - started) * 1000)
    print(json.dumps({
        "scenario": "revocation",
        "revocations": n,
        "lag_p50_ms": percentile(lags, 50),
        "lag_p99_ms": percentile(lags, 99),
        "lag_max_ms": max(lags),
        "revoke_p50_ms": percentile(revokes, 50),
        "revoke_p99_ms": percentile(revokes, 99),
        "polls_per_revocation": polls / n,
    }))


if __name__ == "__main__":
    main()
