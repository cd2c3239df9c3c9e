"""`registry serve` under load (issue 25), on SQLite and PostgreSQL, with wrk (Debian's
package) as the load generator, each figure beside a bare endpoint of the same framework and
server (FastAPI on uvicorn, same workers) returning a constant JSON body, in one run:

- GET /v1/items/{key} of random keys, 64 connections: requests/s against the bare GET's, p99;
- POST /v1/resolve of 1,000 IDs, 64 connections: IDs/s, against a bare POST that reads the
  body and answers a constant one of the same size;
- a mixed run: wrk readers on GET /v1/items while a writer posts new items 100 at a time:
  any 5xx or error, and the server's RSS (every worker) at the start and the end.

    python bench/bench_serve.py            # 1M IDs at 3 x 256, mixed run 180 s
    python bench/bench_serve.py --quick    # 100k IDs, mixed run 20 s, not recorded

Needs `wrk` (apt-get install wrk).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import clustered_vectors, database, machine, record, table

from registry import Registry

SIZES = (256, 256, 256)
WORKERS = 2
CONNECTIONS = 64
GET_RATIO, P99_MS, RESOLVE_RATE, RSS_GROWTH = 0.5, 25.0, 200_000, 0.10
BATCH = 1000  # IDs per resolve
BARE = Path(__file__).resolve().parent / "serve_bare.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base: str, proc: subprocess.Popen, path: str) -> None:
    import httpx

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited: {proc.stdout.read().decode()[-2000:]}")
        try:
            if httpx.get(base + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    sys.exit(f"{base} not ready")


def start(args: list[str], base: str, ready: str, env: dict | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})}, start_new_session=True)
    wait_ready(base, proc, ready)
    time.sleep(3)  # every worker past its start-up
    return proc


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def rss_mb(proc: subprocess.Popen) -> float:
    """Resident memory of the server and its workers."""
    total, todo = 0, [proc.pid]
    while todo:
        pid = todo.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / 1024


def wrk(url: str, script: str, seconds: int, workdir: Path) -> dict:
    path = workdir / f"s{abs(hash(script))}.lua"
    path.write_text(script)
    out = subprocess.run(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency",
                          "-s", str(path), url], capture_output=True, text=True, check=True
                         ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    return {"rps": rps, "p99": float(p99.group(1)) * scale,
            "non2xx": int(bad.group(1)) if bad else 0,
            "errors": sum(map(int, errors.groups())) if errors else 0, "text": out}


def rates(runs: list[dict]) -> str:
    return " / ".join(f"{r['rps']:,.0f}" for r in runs)


def get_script(prefix: str, n: int, token: str | None) -> str:
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"\n' if token else ""
    return (f"{auth}math.randomseed(1)\nrequest = function()\n"
            f'  return wrk.format("GET", "{prefix}" .. string.format("item%08d", '
            f"math.random(0, {n - 1})))\nend\n")


def post_script(path: str, body: str, token: str | None) -> str:
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"\n' if token else ""
    return (f'{auth}wrk.method = "POST"\nwrk.path = "{path}"\n'
            f'wrk.headers["Content-Type"] = "application/json"\nwrk.body = {json.dumps(body)}\n')


def build(url: str, n: int) -> tuple[list[str], dict[str, str]]:
    """n items trained at 3 x 256, frozen, active; 1,000 of their IDs; tokens."""
    with Registry(url) as reg:
        reg.init()
        reg.add([f"item{i:08d}" for i in range(n)], clustered_vectors(n, 32, seed=1),
                metas=[{"i": i} for i in range(n)])
        reg.train(codebook_size=list(SIZES), name="v", collisions="suffix")
        reg.freeze("v")
        reg.activate("v")
        snap = reg.snapshot("v")
        pick = np.random.default_rng(0).integers(0, len(snap), BATCH)
        ids = snap.ids(pick)
        secrets = {s: reg.create_token(f"bench-{s}", s)[1] for s in ("read", "write")}
    return ids, secrets


def writer(base: str, token: str, stop_at: float, out: dict) -> None:
    """New items, 100 per request, one request after another until ``stop_at``."""
    import httpx

    rng = np.random.default_rng(2)
    with httpx.Client(base_url=base, timeout=120,
                      headers={"Authorization": f"Bearer {token}"}) as c:
        batch = 0
        while time.monotonic() < stop_at:
            vectors = clustered_vectors(100, 32, seed=int(rng.integers(1 << 30)))
            items = [{"key": f"new{batch:06d}-{i:03d}", "vector": v.tolist()}
                     for i, v in enumerate(vectors)]
            r = c.post("/v1/items", json={"items": items})
            if r.status_code != 200 or any(x["id"] is None for x in r.json()["items"]):
                out["errors"] += 1
                out["last"] = r.text[:300]
            else:
                out["items"] += 100
            batch += 1


def run_database(kind: str, n: int, mixed_s: int, tmp: Path) -> list[list[object]]:
    rows: list[list[object]] = []
    with database(kind, tmp) as url:
        start_t = time.perf_counter()
        ids, tokens = build(url, n)
        print(f"{kind}: {n:,} items trained in {time.perf_counter() - start_t:.0f} s",
              flush=True)
        port, bare_port = free_port(), free_port()
        base, bare = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{bare_port}"
        server = start([sys.executable, "-m", "registry.cli", "--db", url, "serve", "--port",
                        str(port), "--workers", str(WORKERS)], base, "/readyz")
        baseline = None
        try:
            get_ours = get_script("/v1/items/", n, tokens["read"])
            get_bare = get_script("/bare/items/", n, None)
            body = json.dumps({"ids": ids})
            answer = subprocess.run(["curl", "-s", "-X", "POST", base + "/v1/resolve", "-H",
                                     f"Authorization: Bearer {tokens['read']}", "-H",
                                     "Content-Type: application/json", "-d", body],
                                    capture_output=True, text=True, check=True).stdout
            statuses = {r["status"] for r in json.loads(answer)["rows"]}
            assert statuses == {"found"}, statuses
            Path(tmp / "answer.json").write_text(answer)
            baseline = start([sys.executable, "-m", "uvicorn", "serve_bare:app", "--app-dir",
                              str(BARE.parent), "--port", str(bare_port), "--workers",
                              str(WORKERS), "--log-level", "warning", "--no-access-log"],
                             bare, "/healthz", {"SERVE_BARE_ANSWER": str(tmp / "answer.json")})
            post_ours = post_script("/v1/resolve", body, tokens["read"])
            post_bare = post_script("/bare/resolve", body, None)
            for url_, script in ((base, get_ours), (bare, get_bare)):  # warm up
                wrk(url_, script, 5, tmp)
            gets, bares = [], []
            for _ in range(2):  # alternated, so that a slow moment hits both
                bares.append(wrk(bare, get_bare, 10, tmp))
                gets.append(wrk(base, get_ours, 10, tmp))
            best_bare = max(b["rps"] for b in bares)
            best = max(gets, key=lambda g: g["rps"])
            ok = best["rps"] / best_bare >= GET_RATIO and best["p99"] <= P99_MS \
                and best["non2xx"] == 0
            rows.append([f"bare GET of the same framework and server, {kind} run "
                         f"({WORKERS} workers, {CONNECTIONS} connections, best of 2: "
                         f"{rates(bares)})",
                         f"{best_bare:,.0f} req/s, p99 {min(b['p99'] for b in bares):.1f} ms",
                         "-", "1.00x", "-"])
            rows.append([f"GET /v1/items/{{key}}, random keys of {n:,}, {kind} (best of 2: "
                         f"{rates(gets)})",
                         f"{best['rps']:,.0f} req/s, p99 {best['p99']:.1f} ms",
                         f">= {GET_RATIO}x bare, p99 <= {P99_MS:.0f} ms",
                         f"{best['rps'] / best_bare:.2f}x bare", "yes" if ok else "NO"])
            wrk(base, post_ours, 3, tmp)
            wrk(bare, post_bare, 3, tmp)
            pb = wrk(bare, post_bare, 10, tmp)
            po = wrk(base, post_ours, 10, tmp)
            rate = po["rps"] * BATCH
            rows.append([f"bare POST answering a constant body of the same size "
                         f"({len(answer):,} bytes), {kind} run",
                         f"{pb['rps'] * BATCH:,.0f} IDs/s ({pb['rps']:,.0f} req/s)", "-",
                         "1.00x", "-"])
            rows.append([f"POST /v1/resolve of {BATCH:,} IDs, {kind}",
                         f"{rate:,.0f} IDs/s ({po['rps']:,.0f} req/s, p99 {po['p99']:.0f} ms)",
                         f">= {RESOLVE_RATE:,} IDs/s", f"{po['rps'] / pb['rps']:.2f}x bare",
                         "yes" if rate >= RESOLVE_RATE and po["non2xx"] == 0 else "NO"])

            before = rss_mb(server)
            written = {"items": 0, "errors": 0}
            t = threading.Thread(target=writer, args=(base, tokens["write"],
                                                      time.monotonic() + mixed_s, written))
            t.start()
            mixed = wrk(base, get_ours, mixed_s, tmp)
            t.join()
            after = rss_mb(server)
            growth = after / before - 1
            ok = mixed["non2xx"] == 0 and mixed["errors"] == 0 and written["errors"] == 0 \
                and growth <= RSS_GROWTH
            rows.append([f"{mixed_s} s of readers (GET, {CONNECTIONS} connections) while a "
                         f"writer posts new items 100 at a time, {kind}: "
                         f"{mixed['rps']:,.0f} reads/s, {written['items']:,} items written, "
                         f"RSS {before:,.0f} -> {after:,.0f} MB",
                         f"{mixed['non2xx']} non-2xx, {mixed['errors'] + written['errors']} "
                         f"errors, RSS {growth:+.1%}",
                         f"no 5xx, no error, RSS growth <= {RSS_GROWTH:.0%}",
                         f"{max(growth, 0) / RSS_GROWTH:.2f}", "yes" if ok else "NO"])
            if written["errors"]:
                print("writer:", written.get("last"))
        finally:
            stop(server)
            if baseline is not None:
                stop(baseline)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--items", type=int, default=None)
    ap.add_argument("--mixed", type=int, default=None, help="seconds of the mixed run")
    ap.add_argument("--databases", default="sqlite,postgresql")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("needs wrk: apt-get install wrk")
    n = args.items or (100_000 if args.quick else 1_000_000)
    mixed = args.mixed or (20 if args.quick else 180)
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.databases.split(","):
            rows += run_database(kind, n, mixed, Path(tmp))
    official = not args.quick and args.items is None and args.mixed is None \
        and args.databases == "sqlite,postgresql"
    body = (f"{n:,} IDs at 3 x 256 (32-d generated vectors, metadata on every item); "
            f"`registry serve --workers {WORKERS}` and the bare app under the same uvicorn; "
            f"wrk -t1 -c{CONNECTIONS} on the same machine ({machine()}). Command: "
            f"`python bench/bench_serve.py{' --quick' if args.quick else ''}`.\n\n"
            + table(["scenario", "figure", "target", "ratio", "met"], rows))
    print(body)
    if official:
        record("The registry as an HTTP service: registry serve under wrk (issue 25)", body)


if __name__ == "__main__":
    main()
