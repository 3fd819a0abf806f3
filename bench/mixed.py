#!/usr/bin/env python3
"""Mixed API-key load across two instances over one database, with the revocation lag.

Every connection is a client of one instance (half of them of A, half of B) and sends, one
request after the other for the run's length, an operation drawn at random from the mix
(default: 90 % verify, 4 % create, 3 % rotate, 3 % revoke), as a service using the API would:
keys are created, rotated and revoked with an API key holding `admin` of their organization
(`X-API-Key`), and verified by `POST /api-keys/verify` with `required_scopes: ["read"]`.

Each answer is checked, not only its status:
- a verify of a live key must answer `valid:true`; a verify of a key revoked during the run
  (a share of the verifies, `--revoked-share`) must answer `REVOKED` on the instance that
  revoked it once the revoke has answered, and on the other instance once 1 s has passed (the
  contract's bound; a `valid:true` inside that second is counted apart, not as an error);
- a create or rotate must answer 201 with a key; a revoke 200 with `status:"revoked"`.
A verify that was sent while its key's revoke or rotation was in flight may answer either.

The revocation lag is measured for every key revoked (or rotated away) during the run, as
bench/revocation.py measures it alone: from the revoking call's answer, a probe verifies the key
on the other instance until that instance answers `REVOKED`, back to back for the first 5 ms
and every millisecond after; a `valid:true` to a poll sent more than 1 s after the revoke
answered is a wrong verdict (the contract's bound; counted once per key). Probes use their own connections and are not
counted in the mix; the lag is reported for the keys the other instance had already answered
`valid:true` for (its cache held them), and for all. The lag ends with the answer that says
`REVOKED`, so it includes that request's own time in the queue; the stale window (from the
revoke's answer to the sending of the last poll answered `valid:true`, 0 when the first poll
already said `REVOKED`) is how long the other instance was seen to hold the old verdict.

The key pool is split between worker processes (`--procs`), each with its own event loop and
connections, so no state is shared: a worker verifies, rotates and revokes only the keys of its
slice and those it created. Each worker measures its own CPU time over the mix; the report sets
the generator's CPU use beside the servers' (and the database's, with `--pg-pid`), as
bench/run.py does for wrk, and the machine's busy time, so that what else ran on a shared
machine shows (`other_cores`). Prints one JSON line.

usage: mixed.py --a BASE_A --b BASE_B --admin FILE --keys FILE --pids PID_A,PID_B
                [--seconds 10] [--connections 64] [--procs 2] [--pg-pid PID]
                [--mix verify=90,create=4,rotate=3,revoke=3] [--revoked-share 0.1]
"""

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import time
import urllib.parse

TICKS = os.sysconf("SC_CLK_TCK")
OPS = ("verify", "create", "rotate", "revoke")
# A stale `valid:true` from the other instance is within the contract for this long.
CONTRACT_LAG_S = 1.0
PROBE_TIGHT_S = 0.005
PROBE_PAUSE_S = 0.001
PROBE_GIVE_UP_S = 30.0
DRAIN_S = 10.0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def tree_cpu_seconds(root):
    """CPU time of a process and its children (the Postgres postmaster and its backends);
    backends that ended during the run are lost, the pools keep theirs open."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        try:
            total += cpu_seconds(pid)
        except OSError:
            continue
        todo.extend(children.get(pid, []))
    return total


def machine_busy_seconds():
    """CPU time the whole machine spent busy (every process, the kernel included)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    return (sum(values) - values[3] - values[4]) / TICKS


def percentile(ordered, p):
    if not ordered:
        return None
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(latencies):
    ordered = sorted(latencies)
    ms = lambda v: None if v is None else round(v * 1000, 3)
    return {"count": len(ordered), "p50_ms": ms(percentile(ordered, 50)),
            "p95_ms": ms(percentile(ordered, 95)), "p99_ms": ms(percentile(ordered, 99)),
            "max_ms": ms(ordered[-1] if ordered else None)}


class Http(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self):
        self.transport = None
        self.buf = bytearray()
        self.waiter = None
        self.lost = None

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.lost = exc or ConnectionError("connection closed")
        if self.waiter and not self.waiter.done():
            self.waiter.set_exception(self.lost)

    def data_received(self, data):
        self.buf += data
        if self.waiter is None or self.waiter.done():
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            self.waiter.set_exception(ValueError("answer without content-length"))
            return
        line_end = head.find(b"\r\n", at + 2)
        length = int(head[at + 17:line_end if line_end >= 0 else len(head)])
        total = end + 4 + length
        if len(self.buf) < total:
            return
        status = int(self.buf[9:12])
        body = bytes(self.buf[end + 4:total])
        del self.buf[:total]
        self.waiter.set_result((status, body))

    async def send(self, raw):
        if self.lost:
            raise self.lost
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


async def connect(host, port):
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(Http, host, port)
    return proto


def request(method, path, body=b"", admin=None):
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if admin:
        head += f"X-API-Key: {admin}\r\n"
    if body:
        head += "Content-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


class Key:
    __slots__ = ("id", "verify", "state", "revoked_at", "via", "seen")

    def __init__(self, key_id, secret):
        self.id = key_id
        body = json.dumps({"key": secret, "required_scopes": ["read"]}).encode()
        self.verify = request("POST", "/api/v1/api-keys/verify", body)
        self.state = "live"      # live | revoking | revoked
        self.revoked_at = None   # perf_counter of the revoking call's answer
        self.via = None          # the instance (0 or 1) that revoked it
        self.seen = 0            # bit i: instance i answered valid:true for it


class Worker:
    def __init__(self, args, index, keys, org):
        self.args = args
        self.index = index
        self.live = [Key(k, s) for k, s in keys]
        self.revoked = []        # recently revoked keys, a ring
        self.org = org
        self.admin = args.admin_key
        self.lat = {op: [] for op in OPS}
        self.lat["verify-revoked"] = []
        self.counts = {"http_errors": 0, "wrong_verdicts": 0, "stale_within_1s": 0,
                       "socket_errors": 0, "timeouts": 0, "raced": 0,
                       "stale_after_1s_keys": 0}
        self.examples = []
        self.lags_cached, self.lags_all, self.stale = [], [], []
        self.probe_polls, self.probe_failures = 0, 0
        self.probes = set()
        self.idle = ([], [])     # probe connections per instance
        self.created = 0
        weights = dict(args.mix)
        total = sum(weights.values())
        self.cut = []
        acc = 0.0
        for op in OPS:
            acc += weights.get(op, 0) / total
            self.cut.append((acc, op))
        self.deadline = None

    def wrong(self, what):
        self.counts["wrong_verdicts"] += 1
        if len(self.examples) < 5:
            self.examples.append(what)

    def pick(self):
        r = random.random()
        for edge, op in self.cut:
            if r < edge:
                return op
        return OPS[0]

    async def probe(self, key, other):
        """Verify `key` on instance `other` until it answers REVOKED."""
        pool = self.idle[other]
        conn = pool.pop() if pool else await connect(*self.args.hosts[other])
        cached = bool(key.seen >> other & 1)
        start = key.revoked_at
        stale = 0.0  # when, after the revoke answered, the last poll still answered valid:true was sent
        try:
            while True:
                sent = time.perf_counter()
                try:
                    status, body = await conn.send(key.verify)
                except (OSError, ConnectionError):
                    # An idle connection the server closed: one new connection, one retry.
                    conn = await connect(*self.args.hosts[other])
                    status, body = await conn.send(key.verify)
                now = time.perf_counter()
                if now <= self.deadline:
                    self.probe_polls += 1
                if status == 200 and b'"error":"REVOKED"' in body:
                    lag = now - start
                    self.lags_all.append(lag)
                    self.stale.append(stale)
                    if cached:
                        self.lags_cached.append(lag)
                    break
                if now - start > PROBE_GIVE_UP_S or status != 200 or b'"valid":true' not in body:
                    self.probe_failures += 1
                    break
                if stale <= CONTRACT_LAG_S < sent - start:
                    # Counted once per key: the polls after this one would repeat it.
                    self.counts["stale_after_1s_keys"] += 1
                    self.wrong(f"valid on the other instance {sent - start:.3f} s after the revoke (probe)")
                stale = sent - start
                if now - start > PROBE_TIGHT_S:
                    await asyncio.sleep(PROBE_PAUSE_S)
            pool.append(conn)
        except (OSError, ValueError, ConnectionError):
            self.probe_failures += 1

    def revoked_now(self, key, instance):
        key.state = "revoked"
        key.revoked_at = time.perf_counter()
        key.via = instance
        self.revoked.append(key)
        if len(self.revoked) > 1000:
            self.revoked.pop(0)
        task = asyncio.ensure_future(self.probe(key, 1 - instance))
        self.probes.add(task)
        task.add_done_callback(self.probes.discard)

    async def verify(self, conn, instance):
        if self.revoked and random.random() < self.args.revoked_share:
            key, kind = random.choice(self.revoked), "verify-revoked"
        elif self.live:
            key, kind = random.choice(self.live), "verify"
        else:
            return None
        sent = time.perf_counter()
        status, body = await conn.send(key.verify)
        done = time.perf_counter()
        if status != 200:
            self.counts["http_errors"] += 1
            return kind, done - sent
        if b'"valid":true' in body:
            key.seen |= 1 << instance
            if key.state == "revoking" or (key.state == "revoked" and sent < key.revoked_at):
                self.counts["raced"] += 1
            elif key.state == "revoked":
                late = sent - key.revoked_at
                if key.via != instance:
                    if late <= CONTRACT_LAG_S:
                        self.counts["stale_within_1s"] += 1
                    else:
                        self.wrong(f"valid on the other instance {late:.3f} s after the revoke")
                else:
                    self.wrong(f"valid on the revoking instance {late * 1000:.1f} ms after the revoke")
        elif b'"error":"REVOKED"' in body:
            if key.state == "live":
                self.wrong("a live key answered REVOKED")
        else:
            self.wrong(f"verify answered {body[:120]!r}")
        return kind, done - sent

    async def create(self, conn):
        self.created += 1
        body = json.dumps({"organization_id": self.org,
                           "name": f"mixed-w{self.index}-{self.created}",
                           "scopes": ["read"]}).encode()
        sent = time.perf_counter()
        status, answer = await conn.send(request("POST", "/api/v1/api-keys", body, self.admin))
        done = time.perf_counter()
        if status != 201:
            self.counts["http_errors"] += 1
        else:
            created = json.loads(answer)
            self.live.append(Key(created["id"], created["key"]))
        return "create", done - sent

    def take_live(self):
        # Keep a floor of live keys, so that verifies always have some.
        if len(self.live) < 16:
            return None
        i = random.randrange(len(self.live))
        self.live[i], self.live[-1] = self.live[-1], self.live[i]
        key = self.live.pop()
        key.state = "revoking"
        return key

    async def rotate(self, conn, instance):
        key = self.take_live()
        if key is None:
            return await self.create(conn)
        sent = time.perf_counter()
        status, answer = await conn.send(
            request("POST", f"/api/v1/api-keys/{key.id}/rotate", b"", self.admin))
        done = time.perf_counter()
        if status != 201:
            self.counts["http_errors"] += 1
            self.wrong(f"rotate answered {status}")
        else:
            created = json.loads(answer)
            self.live.append(Key(created["id"], created["key"]))
        self.revoked_now(key, instance)
        return "rotate", done - sent

    async def revoke(self, conn, instance):
        key = self.take_live()
        if key is None:
            return await self.create(conn)
        sent = time.perf_counter()
        status, answer = await conn.send(
            request("POST", f"/api/v1/api-keys/{key.id}/revoke", b"", self.admin))
        done = time.perf_counter()
        if status != 200 or b'"status":"revoked"' not in answer:
            self.counts["http_errors"] += 1
            self.wrong(f"revoke answered {status}")
        self.revoked_now(key, instance)
        return "revoke", done - sent

    async def client(self, conn, instance):
        while time.perf_counter() < self.deadline:
            op = self.pick()
            try:
                if op == "verify":
                    result = await self.verify(conn, instance)
                elif op == "create":
                    result = await self.create(conn)
                elif op == "rotate":
                    result = await self.rotate(conn, instance)
                else:
                    result = await self.revoke(conn, instance)
            except (OSError, ConnectionError, ValueError):
                self.counts["socket_errors"] += 1
                conn = await connect(*self.args.hosts[instance])
                continue
            if result:
                self.lat[result[0]].append(result[1])

    async def run(self, ready, go, mixed, out):
        conns = []
        share = self.args.connections // self.args.procs + (
            1 if self.index < self.args.connections % self.args.procs else 0)
        for i in range(share):
            instance = (i + self.index) % 2
            conns.append((await connect(*self.args.hosts[instance]), instance))
        for instance in (0, 1):
            for _ in range(2):
                self.idle[instance].append(await connect(*self.args.hosts[instance]))
        await asyncio.get_running_loop().run_in_executor(None, ready.wait)
        start_wall = go.get()
        cpu0 = time.process_time()
        self.deadline = time.perf_counter() + (start_wall + self.args.seconds - time.time())
        tasks = [asyncio.ensure_future(self.client(c, i)) for c, i in conns]
        done, pending = await asyncio.wait(tasks, timeout=self.args.seconds + DRAIN_S)
        for task in pending:
            task.cancel()
            self.counts["timeouts"] += 1
        mix_end = time.time()
        cpu = time.process_time() - cpu0
        mixed.put((self.index, cpu, mix_end))
        if self.probes:
            await asyncio.wait(list(self.probes), timeout=PROBE_GIVE_UP_S + 1)
        out.put({"lat": self.lat, "counts": self.counts, "examples": self.examples,
                 "lags_cached": self.lags_cached, "lags_all": self.lags_all, "stale": self.stale,
                 "probe_polls": self.probe_polls, "probe_failures": self.probe_failures,
                 "probes_unfinished": sum(1 for t in self.probes if not t.done()),
                 "live_keys": len(self.live)})


def worker_main(args, index, keys, org, ready, go, mixed, out):
    random.seed(os.getpid())
    worker = Worker(args, index, keys, org)
    asyncio.run(worker.run(ready, go, mixed, out))


def parse_mix(text):
    mix = []
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name not in OPS:
            raise argparse.ArgumentTypeError(f"unknown operation {name!r}")
        mix.append((name, float(weight)))
    return mix


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", required=True)
    p.add_argument("--b", required=True)
    p.add_argument("--admin", required=True, help="file holding a key with admin")
    p.add_argument("--keys", required=True, help="file of '<id> <key>' lines")
    p.add_argument("--pids", required=True, help="PID_A,PID_B")
    p.add_argument("--pg-pid", type=int)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--mix", type=parse_mix, default=parse_mix("verify=90,create=4,rotate=3,revoke=3"))
    p.add_argument("--revoked-share", type=float, default=0.1)
    args = p.parse_args()
    args.hosts = []
    for base in (args.a, args.b):
        url = urllib.parse.urlparse(base)
        args.hosts.append((url.hostname, url.port))
    args.admin_key = open(args.admin).read().strip()
    pids = [int(x) for x in args.pids.split(",")]
    keys = [tuple(line.split()) for line in open(args.keys) if line.strip()]

    # The organization the admin key manages, from the service itself.
    async def whoami():
        conn = await connect(*args.hosts[0])
        body = json.dumps({"key": args.admin_key}).encode()
        status, answer = await conn.send(request("POST", "/api/v1/api-keys/verify", body))
        conn.transport.close()
        verdict = json.loads(answer)
        assert status == 200 and verdict["valid"], verdict
        return verdict["organization_id"]
    org = asyncio.run(whoami())

    ctx = mp.get_context("fork")
    ready = ctx.Barrier(args.procs + 1)
    go, mixed, out = ctx.Queue(), ctx.Queue(), ctx.Queue()
    procs = []
    for i in range(args.procs):
        proc = ctx.Process(target=worker_main,
                           args=(args, i, keys[i::args.procs], org, ready, go, mixed, out))
        proc.start()
        procs.append(proc)
    ready.wait()
    server0 = [cpu_seconds(pid) for pid in pids]
    pg0 = tree_cpu_seconds(args.pg_pid) if args.pg_pid else None
    busy0 = machine_busy_seconds()
    started = time.time()
    for _ in procs:
        go.put(started)
    ends, generator_cpu = [], 0.0
    for _ in procs:
        _, cpu, end = mixed.get()
        ends.append(end)
        generator_cpu += cpu
    wall = max(ends) - started
    server = [cpu_seconds(pid) - c for pid, c in zip(pids, server0)]
    pg = tree_cpu_seconds(args.pg_pid) - pg0 if args.pg_pid else None
    busy = machine_busy_seconds() - busy0
    results = [out.get() for _ in procs]
    for proc in procs:
        proc.join()

    lat = {op: [] for op in (*OPS, "verify-revoked")}
    counts, examples = {}, []
    lags_cached, lags_all, stale = [], [], []
    polls = failures = unfinished = live = 0
    for r in results:
        for op, values in r["lat"].items():
            lat[op].extend(values)
        for name, n in r["counts"].items():
            counts[name] = counts.get(name, 0) + n
        examples.extend(r["examples"])
        lags_cached.extend(r["lags_cached"])
        lags_all.extend(r["lags_all"])
        stale.extend(r["stale"])
        polls += r["probe_polls"]
        failures += r["probe_failures"]
        unfinished += r["probes_unfinished"]
        live += r["live_keys"]
    every = [v for values in lat.values() for v in values]
    requests = len(every)
    lat["verify-all"] = lat["verify"] + lat["verify-revoked"]
    ops = {op: dict(summary(values), rps=round(len(values) / wall, 1)) for op, values in lat.items()}
    server_cpu = sum(server)
    print(json.dumps({
        "scenario": "mixed",
        "seconds": round(wall, 2),
        "connections": args.connections,
        "mix": dict(args.mix),
        "revoked_share": args.revoked_share,
        "requests": requests,
        "rps": round(requests / wall, 1),
        "overall": summary(every),
        "ops": ops,
        "errors": counts["http_errors"] + counts["wrong_verdicts"] + counts["socket_errors"]
                  + counts["timeouts"],
        **counts,
        "error_examples": examples[:5],
        "lag_cached": summary(lags_cached),
        "lag_all": summary(lags_all),
        "stale_window": summary(stale),
        "probe_polls": polls,
        "probe_failures": failures,
        "probes_unfinished": unfinished,
        "live_keys_at_end": live,
        "server_cpu_s": [round(s, 2) for s in server],
        "server_cores": round(server_cpu / wall, 2),
        "server_cpu_us_per_req": round(server_cpu * 1e6 / max(1, requests + polls), 2),
        "db_cores": None if pg is None else round(pg / wall, 2),
        "generator_cores": round(generator_cpu / wall, 2),
        "generator_procs": args.procs,
        # Everything else the machine ran meanwhile: on a shared machine, what the run competed with.
        "machine_busy_cores": round(busy / wall, 2),
        "other_cores": None if pg is None else round((busy - server_cpu - pg - generator_cpu) / wall, 2),
    }))


if __name__ == "__main__":
    main()
