"""Performance at catalog scale (issue 6), each figure against its target, on SQLite and
PostgreSQL, in one command:

- train end to end (`registry train`: read the vectors from the database, train 3 x 256,
  write every assignment) against the bare in-memory computation (`engine.train` on the same
  array, same parameters), with the peak RSS of each process;
- assign 100k new items against a frozen version holding 1M, end to end, items/s (once
  into each version the trains made, median), against the bare computation it wraps (encode
  and nearest-free of the same vectors in memory, in the same batches);
- lookups through the Python API at 1M: key -> ID, and prefix -> first 100 items (p50, p99);
- `registry get` / `registry lookup` start-up as fresh processes against a bare
  `python -c "import sqlalchemy, click"`.

    python bench/bench_scale.py              # 1M items (about half an hour)
    python bench/bench_scale.py --quick      # 100k items, not written to BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import clustered_vectors, database, machine, record, table

from registry import Registry
from registry.defaults import ASSIGN_BATCH as DEFAULT_BATCH

DIM, SIZES = 384, (256, 256, 256)
TRAIN_RATIO, TRAIN_RSS_GB = 1.2, 2.5
ASSIGN_RATE = {"sqlite": 50_000, "postgresql": 30_000}
LOOKUP_MS = {"sqlite": (0.5, 2.0), "postgresql": (2.0, 5.0)}
STARTUP_RATIO = 1.5

BARE = """
import json, sys, time
import numpy as np
from registry import engine
from registry.allocator import tune
tune()  # the process's memory settings of the registry command it is compared with
x = np.load(sys.argv[1])
start = time.perf_counter()
engine.train(x, engine.TrainParams({sizes}), overwrite=True)
print(json.dumps({{"seconds": time.perf_counter() - start}}))
"""
# what assign computes, alone: the same new vectors, in the command's batches, encoded
# against the version's codebooks and moved off the tuples already issued (nearest-free), all
# in memory (the inner products and final residuals the encoder keeps go to nearest-free, as
# in the command, so no vector is read again)
BARE_ASSIGN = """
import json, sys, time
import numpy as np
from registry import collisions, engine
from registry.allocator import tune
from registry.ids import CodeSpace
tune()
d = np.load(sys.argv[1])
batch, beam, mode = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
x, issued = d["x"], d["issued"]
books = [d[f"book{i}"] for i in range(len(d.files) - 2)]
space = CodeSpace(tuple(b.shape[0] for b in books))
def unread(rows):
    raise AssertionError("nearest-free read vectors")
start = time.perf_counter()
taken = collisions.Occupancy(space, issued)
for lo in range(0, len(x), batch):
    kept = engine.Kept()
    codes = engine.encode(x[lo:lo + batch], books, mode, beam, kept=kept)
    collisions.nearest_free(unread, codes, books, mode, space, taken,
                            products=collisions.up_products(kept.products, codes, books),
                            residual_sq=kept.residual_sq)
print(json.dumps({"seconds": time.perf_counter() - start}))
"""
# Runs a module or a -c program and reports its peak RSS at exit. VmHWM belongs to the
# process image, so unlike ru_maxrss (kept across exec) it does not count the pages of this
# big benchmark process that the fork shared with the child before it exec'd.
PEAK = """
import atexit, runpy, sys
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            sys.stderr.write("PEAK_KB " + line.split()[1] + "\\n")
atexit.register(peak)
if sys.argv[1] == "-c":
    sys.argv = sys.argv[2:]
    exec(compile(sys.argv[0], "<bare>", "exec"))
else:
    sys.argv = sys.argv[1:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def child(args: list[str]) -> tuple[dict | str, float, float]:
    """Run ``python <args>``; (its JSON output or stdout, wall seconds, peak RSS in GB)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PEAK, *args], capture_output=True, text=True,
                          env=os.environ)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(args[:4])} failed: {proc.stderr.strip()[-2000:]}")
    peaks = [line.split()[1] for line in proc.stderr.splitlines()
             if line.startswith("PEAK_KB ")]
    rss = int(peaks[-1]) / 2**20 if peaks else float("nan")
    try:
        return json.loads(proc.stdout), wall, rss
    except json.JSONDecodeError:
        return proc.stdout, wall, rss


def registry_cmd(url: str, *args: str) -> list[str]:
    return ["registry.cli", "--db", url, *args]


def percentiles(times: list[float]) -> tuple[float, float]:
    ms = np.asarray(times) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def run_database(kind: str, n: int, new: int, x: np.ndarray, keys: list[str],
                 workdir: Path, npy: Path, repeat: int) -> list[list[str]]:
    rows = []
    with database(kind, workdir) as url:
        with Registry(url) as reg:
            reg.init()
            start = time.perf_counter()
            reg.add(keys[:n], x[:n])
            print(f"{kind}: added {n} items in {time.perf_counter() - start:.1f} s (set-up)")
        # the bare computation and the command in turns, ``repeat`` times each, medians
        # compared: this machine's speed drifts by 10-30% over the minutes of a run, and
        # one process's k-means alone differs from the next one's by up to a tenth
        bares, trains, insides, peak, bare_peak = [], [], [], 0.0, 0.0
        for _ in range(repeat):
            bare, _, bare_rss = child(["-c", BARE.format(sizes=SIZES), str(npy)])
            out, _, rss = child(registry_cmd(url, "train", "--json"))
            bares.append(bare["seconds"])
            trains.append(out["seconds"])
            # the engine's own part of it (train_seconds): the rest is the database's
            insides.append(out["version"]["stats"]["train_seconds"])
            peak, bare_peak = max(peak, rss), max(bare_peak, bare_rss)
            print(f"{kind}: bare {bares[-1]:.1f} s, train {trains[-1]:.1f} s "
                  f"(engine {insides[-1]:.1f} s)")
        bare_s, train_s = statistics.median(bares), statistics.median(trains)
        ratio = train_s / bare_s
        rows.append([f"bare engine.train {n:,} x {DIM} in memory, {kind} run "
                     f"(median of {repeat}: {_runs(bares)})", f"{bare_s:.1f} s", "-", "1.00x",
                     f"RSS {bare_peak:.2f} GB"])
        rows.append([f"train {n:,} x {DIM} end to end, {kind} (median of {repeat}: "
                     f"{_runs(trains)}; engine inside {_runs(insides)})", f"{train_s:.1f} s",
                     f"<= {TRAIN_RATIO}x bare ({bare_s:.1f} s)", f"{ratio:.2f}x",
                     _ok(ratio <= TRAIN_RATIO)])
        rows.append([f"train peak RSS, {kind}", f"{peak:.2f} GB", f"<= {TRAIN_RSS_GB} GB",
                     f"{peak / TRAIN_RSS_GB:.2f}", _ok(peak <= TRAIN_RSS_GB)])
        print(rows[-3], rows[-2], rows[-1])
        with Registry(url) as reg:
            for version in range(1, repeat + 1):
                reg.freeze(version)
            reg.activate(1)
            start = time.perf_counter()
            reg.add(keys[n:n + new], x[n:n + new])
            print(f"{kind}: added {new} new items in {time.perf_counter() - start:.1f} s")
        # the same assign once into each version the trains made (each holds the n IDs of
        # its train): the median of ``repeat`` runs, as for train; each after the bare
        # computation on that version's codebooks and issued codes
        rates, bare_rates = [], []
        for version in range(1, repeat + 1):
            inputs = workdir / f"assign-{kind}-{version}.npz"
            params = bare_assign_inputs(url, version, x[n:n + new], inputs)
            bare, _, _ = child(["-c", BARE_ASSIGN, str(inputs), str(DEFAULT_BATCH), *params])
            inputs.unlink()
            bare_rates.append(new / bare["seconds"])
            out, _, _ = child(registry_cmd(url, "assign", "--version", str(version), "--json"))
            assert out["assigned"] == new, out
            rates.append(out["assigned"] / out["seconds"])
            print(f"{kind}: assign into version {version}: {rates[-1]:,.0f} items/s "
                  f"(bare {bare_rates[-1]:,.0f})")
        rate, bare_rate = statistics.median(rates), statistics.median(bare_rates)
        target = ASSIGN_RATE[kind]
        rows.append([f"bare encode + nearest-free of the {new:,} new in memory, {kind} run "
                     f"(batches of {DEFAULT_BATCH:,}; median of {repeat}: "
                     + " / ".join(f"{r:,.0f}" for r in bare_rates) + ")",
                     f"{bare_rate:,.0f} items/s", "-", "1.00x", "-"])
        rows.append([f"assign {new:,} new against {n:,}, {kind} (median of {repeat}: "
                     + " / ".join(f"{r:,.0f}" for r in rates) + f"; {bare_rate / rate:.2f}x "
                     "the bare time)", f"{rate:,.0f} items/s", f">= {target:,} items/s",
                     f"{rate / target:.2f}", _ok(rate >= target)])
        print(rows[-2], rows[-1])
        rows += lookups(url, kind, keys[:n])
        rows += startup(url, kind, keys[0])
    return rows


def bare_assign_inputs(url: str, version: int, x: np.ndarray, path: Path) -> tuple[str, str]:
    """Save what the bare assign starts from (the new vectors, the version's codebooks and
    the packed codes it has issued) to ``path``; the version's beam width and residual mode,
    as arguments of the bare run."""
    from registry.store import assignments

    with Registry(url) as reg:
        books = reg.codebooks(version)
        with reg._tx(write=False) as conn:
            issued = assignments.issued_codes(conn, version)
        v = reg.version(version)
    np.savez(path, x=x, issued=issued, **{f"book{i}": b for i, b in enumerate(books)})
    return str(v.beam), v.residual


def lookups(url: str, kind: str, keys: list[str]) -> list[list[str]]:
    rng = np.random.default_rng(0)
    out = []
    with Registry(url) as reg:
        reg.get([keys[0]])  # connection and version cache warm, as in a long-lived service
        get_t, pre_t = [], []
        for i in rng.choice(len(keys), 2000, replace=False):
            start = time.perf_counter()
            reg.get([keys[i]])
            get_t.append(time.perf_counter() - start)
        for code in rng.integers(0, SIZES[0], 1000):
            start = time.perf_counter()
            reg.lookup(str(code), limit=100)
            pre_t.append(time.perf_counter() - start)
    p50_target, p99_target = LOOKUP_MS[kind]
    for what, times in (("key -> ID", get_t), ("prefix -> first 100", pre_t)):
        p50, p99 = percentiles(times)
        out.append([f"lookup {what} at {len(keys):,}, {kind}", f"p50 {p50:.2f} ms, p99 "
                    f"{p99:.2f} ms", f"p50 < {p50_target} ms, p99 < {p99_target} ms",
                    f"{p50 / p50_target:.2f} / {p99 / p99_target:.2f}",
                    _ok(p50 < p50_target and p99 < p99_target)])
        print(out[-1])
    return out


def wall(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    return time.perf_counter() - start


def startup(url: str, kind: str, key: str, repeat: int = 7) -> list[list[str]]:
    """Medians of ``repeat`` rounds, each a bare import and then each command: this VM's
    speed drifts over a run, so the runs compared are taken in turns."""
    commands = {"get": ("get", key), "lookup": ("lookup", "1", "--limit", "5")}
    script = str(Path(sys.executable).parent / "registry")
    times: dict[str, list[float]] = {"bare": [], **{name: [] for name in commands}}
    for _ in range(repeat):
        times["bare"].append(wall([sys.executable, "-c", "import sqlalchemy, click"]))
        for name, args in commands.items():
            times[name].append(wall([script, "--db", url, *args]))
    bare = statistics.median(times["bare"])
    out = []
    for name in commands:
        wall_s = statistics.median(times[name])
        ratio = wall_s / bare
        out.append([f"`registry {name}` start-up, {kind}", f"{wall_s * 1000:.0f} ms",
                    f"<= {STARTUP_RATIO}x bare imports ({bare * 1000:.0f} ms)",
                    f"{ratio:.2f}x", _ok(ratio <= STARTUP_RATIO)])
        print(out[-1])
    return out


def _runs(seconds: list[float]) -> str:
    return " / ".join(f"{s:.1f}" for s in seconds) + " s"


def _ok(ok: bool) -> str:
    return "yes" if ok else "NO"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100k items, 10k new")
    ap.add_argument("--items", type=int, default=None)
    ap.add_argument("--databases", default="sqlite,postgresql")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--repeat", type=int, default=3,
                    help="train runs (and bare runs) per database, medians compared")
    args = ap.parse_args()
    n = args.items or (100_000 if args.quick else 1_000_000)
    new = n // 10
    x = clustered_vectors(n + new, DIM, seed=1)
    keys = [f"item{i:08d}" for i in range(n + new)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        npy = Path(tmp) / "vectors.npy"
        np.save(npy, x[:n])
        for kind in args.databases.split(","):
            rows += run_database(kind, n, new, x, keys, Path(tmp), npy, args.repeat)
    body = (f"{n:,} generated {DIM}-d vectors (a mixture of 2,000 Gaussians) + {new:,} new, "
            f"3 x 256 with the default parameters (nearest-free); {machine()}. Command: "
            f"`python bench/bench_scale.py{' --quick' if args.quick else ''}`. Train and "
            "assign times are what each command reports for its own work (the bare run "
            "times `engine.train` alone, under the same memory settings); the bare "
            f"computation and the command run in turns, {args.repeat} times each on each "
            "database, and their medians are compared (the second and third trains add "
            "versions 2 and 3 beside the version 1 that the lookups use). Assign runs once "
            "into each of those versions, frozen, each holding the IDs of its train; the "
            "median rate is the figure. Before each, the bare computation it wraps runs in a "
            "process of its own: encode and nearest-free of the same new vectors in memory, "
            "in the command's batches, against that version's codebooks and issued codes. "
            "RSS is the peak of each process, start-up included. Lookups go through a "
            "long-lived `Registry` (2,000 keys, 1,000 level-1 prefixes at random); start-up "
            "is the median of 7 fresh processes, each round a bare import and then each "
            "command.\n\n"
            + table(["scenario", "figure", "target", "ratio", "met"], rows))
    print(body)
    if not args.no_write and not args.quick:
        record("Performance at catalog scale (issue 6)", body)


if __name__ == "__main__":
    main()
