"""Performance at catalog scale (issues 6 and 26), each figure against its target, on SQLite
and PostgreSQL, at 1M, 3M and 10M items in one command:

- `registry add` of the catalog from 20 Parquet shards (as Spark writes them), its time and
  peak RSS, and the database's size per item;
- train end to end (`registry train`: read the vectors from the database a chunk at a time,
  train 3 x 256, write every assignment) against the bare in-memory computation
  (`engine.train` on the same array, same parameters), with the peak RSS of each process,
  and train's time per item at each size against that at the first;
- assign 100k new items against a frozen version holding the catalog, end to end, items/s
  (once into each version the trains made, median), against the bare computation it wraps
  (encode and nearest-free of the same vectors in memory, in the same batches);
- lookups through the Python API: key -> ID, and prefix -> first 100 items (p50, p99);
- `registry get` / `registry lookup` start-up as fresh processes against a bare
  `python -c "import sqlalchemy, click"`.

    python bench/bench_scale.py                     # 1M items (about half an hour)
    python bench/bench_scale.py --items 10000000    # 1M, 3M and 10M (hours)
    python bench/bench_scale.py --quick             # 100k items, not written to BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import clustered_blocks, database, machine, record, table

from registry import Registry, chunked, engine
from registry.defaults import ASSIGN_BATCH as DEFAULT_BATCH

DIM, SIZES = 384, (256, 256, 256)
STEPS = (1_000_000, 3_000_000, 10_000_000)
NEW = 100_000
SHARDS = 20
TRAIN_RATIO, TRAIN_RSS_GB, ADD_RSS_GB, SCALE_RATIO, ASSIGN_RATIO = 1.15, 3.0, 2.0, 1.3, 0.8
ASSIGN_RATE = {"sqlite": 50_000, "postgresql": 30_000}
LOOKUP_MS = {"sqlite": (0.5, 2.0), "postgresql": (2.0, 5.0)}
STARTUP_RATIO = 1.5

BARE = """
import glob, json, sys, time
import numpy as np
import pyarrow.parquet as pq
from registry import engine
from registry.allocator import tune
tune()  # the process's memory settings of the registry command it is compared with
folder, n = sys.argv[1], int(sys.argv[2])
x = np.empty((n, {dim}), dtype=np.float32)
at = 0
for path in sorted(glob.glob(folder + "/part-*.parquet")):
    for batch in pq.ParquetFile(path).iter_batches(batch_size=65536, columns=["vector"]):
        v = batch.column(0).flatten().to_numpy().reshape(-1, {dim})
        x[at:at + len(v)] = v
        at += len(v)
assert at == n
start = time.perf_counter()
engine.train(x, engine.TrainParams({sizes}), overwrite=True)
print(json.dumps({{"seconds": time.perf_counter() - start}}))
"""
# the engine as train runs it on a catalog too large to hold (registry.chunked), with the rows
# in a .npy file instead of the database: the same samples, chunks and spilled residuals
BARE_CHUNKED = """
import json, sys, time
import numpy as np
from registry import chunked, engine
from registry.allocator import tune
tune()
rows = chunked.ArrayRows(np.load(sys.argv[1], mmap_mode="r"))
start = time.perf_counter()
chunked.train(rows, engine.TrainParams({sizes}))
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


def key(i: int) -> str:
    return f"item{i:08d}"


def write_shards(folder: Path, n: int) -> None:
    """Rows 0..n of the generated catalog as SHARDS Parquet files (key, vector), row groups
    of 65,536, as Spark writes part files."""
    folder.mkdir(parents=True)
    bounds = np.linspace(0, n, SHARDS + 1).astype(int)
    vector_type = pa.list_(pa.float32(), DIM)
    for s, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        schema = pa.schema([("key", pa.string()), ("vector", vector_type)])
        with pq.ParquetWriter(folder / f"part-{s:05d}.parquet", schema) as w:
            for first, block in clustered_blocks(int(lo), int(hi), DIM, seed=1):
                w.write_table(pa.table({
                    "key": [key(i) for i in range(first, first + len(block))],
                    "vector": pa.FixedSizeListArray.from_arrays(pa.array(block.ravel()), DIM)},
                    schema=schema))


def write_npy(path: Path, n: int) -> None:
    """Rows 0..n of the generated catalog as one .npy file, written a block at a time."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_2_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (n, DIM)})
        for _, block in clustered_blocks(0, n, DIM, seed=1):
            f.write(block.astype("<f4").tobytes())


def db_bytes(url: str) -> int:
    """The database's size on disk: the SQLite file and its WAL, or the benchmark schema's
    tables, indexes and TOAST on PostgreSQL."""
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        return sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))
    with Registry(url) as reg, reg._tx(write=False) as conn:
        return int(conn.exec_driver_sql(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace s "
            "ON s.oid = c.relnamespace WHERE s.nspname = current_schema() "
            "AND c.relkind = 'r'").scalar())


def run_database(kind: str, n: int, shards: Path, npy: Path | None, new_x: np.ndarray,
                 workdir: Path, repeat: int) -> tuple[list[list[str]], float]:
    """The rows of one database at one size, and train's median seconds. ``npy``: the
    catalog as one file, where train runs in chunks (the bare engine is then the chunked
    one, reading it; the in-memory engine runs once beside, for reference)."""
    rows = []
    with database(kind, workdir) as url:
        with Registry(url) as reg:
            reg.init()
        added, _add_wall, add_rss = child(registry_cmd(url, "add", str(shards), "--vector",
                                                      "vector", "--json"))
        assert added["added"] == n, added
        size = db_bytes(url)
        rows.append([f"add {n:,} x {DIM} from {SHARDS} Parquet shards, {kind} ({size / n:,.0f}"
                     f" bytes per item on disk, {size / 2**30:.1f} GB)",
                     f"{added['seconds']:.0f} s ({n / added['seconds']:,.0f} items/s)",
                     f"RSS <= {ADD_RSS_GB} GB", f"RSS {add_rss:.2f} GB",
                     _ok(add_rss <= ADD_RSS_GB)])
        print(rows[-1])
        # the bare computation and the command in turns, ``repeat`` times each, medians
        # compared: this machine's speed drifts by 10-30% over the minutes of a run, and
        # one process's k-means alone differs from the next one's by up to a tenth
        bares, trains, insides, peak, bare_peak = [], [], [], 0.0, 0.0
        whole = []
        if npy is not None:
            try:
                whole.append(child(["-c", BARE.format(sizes=SIZES, dim=DIM), str(shards),
                                    str(n)]))
            except SystemExit as e:  # out of memory, most likely
                print(f"the in-memory engine did not run at {n:,}: {str(e)[-300:]}")
        for _ in range(repeat):
            if npy is None:
                bare, _, bare_rss = child(["-c", BARE.format(sizes=SIZES, dim=DIM),
                                           str(shards), str(n)])
            else:
                bare, _, bare_rss = child(["-c", BARE_CHUNKED.format(sizes=SIZES), str(npy)])
            out, _, rss = child(registry_cmd(url, "train", "--json"))
            bares.append(bare["seconds"])
            trains.append(out["seconds"])
            # the engine's own part of it (train_seconds): the rest is the database's
            insides.append(out["version"]["stats"]["train_seconds"])
            peak, bare_peak = max(peak, rss), max(bare_peak, bare_rss)
            print(f"{kind} {n:,}: bare {bares[-1]:.1f} s, train {trains[-1]:.1f} s "
                  f"(engine {insides[-1]:.1f} s), RSS {rss:.2f} GB")
        trained = db_bytes(url)
        bare_s, train_s = statistics.median(bares), statistics.median(trains)
        ratio = train_s / bare_s
        if whole:
            (w, _, w_rss), = whole
            rows.append([f"engine.train {n:,} x {DIM} in memory, for reference, {kind} run "
                         "(one run)", f"{w['seconds']:.1f} s", "-",
                         f"{w['seconds'] / statistics.median(bares):.2f}x the bare",
                         f"RSS {w_rss:.2f} GB"])
        what = "engine.train in memory" if npy is None else \
            "chunked engine (registry.chunked) reading a .npy file"
        rows.append([f"bare {what}, {n:,} x {DIM}, {kind} run ({_median_of(bares)})",
                     f"{bare_s:.1f} s", "-", "1.00x", f"RSS {bare_peak:.2f} GB"])
        rows.append([f"train {n:,} x {DIM} end to end, {kind} ({_median_of(trains)}; "
                     f"engine inside {_runs(insides)}; IDs {(trained - size) / n / repeat:,.0f}"
                     " bytes per item on disk)", f"{train_s:.1f} s "
                     f"({train_s / n * 1e6:.1f} us per item)",
                     f"<= {TRAIN_RATIO}x bare ({bare_s:.1f} s)", f"{ratio:.2f}x",
                     _ok(ratio <= TRAIN_RATIO)])
        rows.append([f"train peak RSS, {kind}", f"{peak:.2f} GB", f"<= {TRAIN_RSS_GB} GB",
                     f"{peak / TRAIN_RSS_GB:.2f}", _ok(peak <= TRAIN_RSS_GB)])
        print(rows[-3], rows[-2], rows[-1])
        new = len(new_x)
        with Registry(url) as reg:
            for version in range(1, repeat + 1):
                reg.freeze(version)
            reg.activate(1)
            start = time.perf_counter()
            reg.add([key(i) for i in range(n, n + new)], new_x)
            print(f"{kind}: added {new} new items in {time.perf_counter() - start:.1f} s")
        # the same assign once into each version the trains made (each holds the n IDs of
        # its train): the median of ``repeat`` runs, as for train; each after the bare
        # computation on that version's codebooks and issued codes
        rates, bare_rates = [], []
        for version in range(1, repeat + 1):
            inputs = workdir / f"assign-{kind}-{version}.npz"
            params = bare_assign_inputs(url, version, new_x, inputs)
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
                     f"(batches of {DEFAULT_BATCH:,}; {_median_of(bare_rates, '')})",
                     f"{bare_rate:,.0f} items/s", "-", "1.00x", "-"])
        rows.append([f"assign {new:,} new against {n:,}, {kind} ({_median_of(rates, '')})",
                     f"{rate:,.0f} items/s", f">= {ASSIGN_RATIO}x bare, >= {target:,} items/s",
                     f"{rate / bare_rate:.2f}x, {rate / target:.2f}",
                     _ok(rate >= ASSIGN_RATIO * bare_rate and rate >= target)])
        print(rows[-2], rows[-1])
        rows += lookups(url, kind, n)
        rows += startup(url, kind, key(0))
    return rows, train_s


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


def lookups(url: str, kind: str, n: int) -> list[list[str]]:
    rng = np.random.default_rng(0)
    out = []
    with Registry(url) as reg:
        reg.get([key(0)])  # connection and version cache warm, as in a long-lived service
        get_t, pre_t = [], []
        for i in rng.choice(n, 2000, replace=False):
            start = time.perf_counter()
            reg.get([key(int(i))])
            get_t.append(time.perf_counter() - start)
        for code in rng.integers(0, SIZES[0], 1000):
            start = time.perf_counter()
            reg.lookup(str(code), limit=100)
            pre_t.append(time.perf_counter() - start)
    p50_target, p99_target = LOOKUP_MS[kind]
    for what, times in (("key -> ID", get_t), ("prefix -> first 100", pre_t)):
        p50, p99 = percentiles(times)
        out.append([f"lookup {what} at {n:,}, {kind}", f"p50 {p50:.2f} ms, p99 "
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


def _median_of(values: list[float], unit: str = " s") -> str:
    if len(values) == 1:
        return "one run"
    shown = " / ".join(f"{v:,.1f}" if unit else f"{v:,.0f}" for v in values)
    return f"median of {len(values)}: {shown}{unit}"


def _ok(ok: bool) -> str:
    return "yes" if ok else "NO"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100k items, 10k new")
    ap.add_argument("--items", type=int, default=None,
                    help="the largest catalog: 1M, 3M and 10M up to it [default: 1M]")
    ap.add_argument("--databases", default="sqlite,postgresql")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--repeat", type=int, default=3,
                    help="train runs (and bare runs) per database at 1M and below, medians "
                         "compared")
    ap.add_argument("--repeat-large", type=int, default=1,
                    help="the same above 1M items")
    ap.add_argument("--workdir", default=None, help="where shards and SQLite files go")
    args = ap.parse_args()
    top = args.items or (100_000 if args.quick else STEPS[0])
    sizes = [s for s in STEPS if s < top] + [top]
    new = NEW // 10 if args.quick else NEW
    rows, per_item = [], {}
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        workdir = Path(tmp)
        for n in sizes:
            shards = workdir / f"shards-{n}"
            start = time.perf_counter()
            write_shards(shards, n)
            print(f"{n:,} rows in {SHARDS} shards in {time.perf_counter() - start:.0f} s")
            npy = None
            if not chunked.in_memory(n, DIM, engine.TrainParams(SIZES), chunked.CHUNK_ROWS):
                npy = workdir / f"vectors-{n}.npy"
                write_npy(npy, n)
            new_x = np.concatenate([b for _, b in clustered_blocks(n, n + new, DIM, seed=1)])
            for kind in args.databases.split(","):
                got, train_s = run_database(kind, n, shards, npy, new_x, workdir,
                                            args.repeat if n <= STEPS[0] else args.repeat_large)
                rows += got
                per_item.setdefault(kind, []).append((n, train_s / n))
            shutil.rmtree(shards)
            if npy is not None:
                npy.unlink()
    for kind, steps in per_item.items():
        (n0, t0), (n1, t1) = steps[0], steps[-1]
        if n1 > n0:
            rows.append([f"train time per item at {n1:,} against {n0:,}, {kind}",
                         f"{t1 * 1e6:.1f} against {t0 * 1e6:.1f} us", f"<= {SCALE_RATIO}x",
                         f"{t1 / t0:.2f}x", _ok(t1 / t0 <= SCALE_RATIO)])
    command = "python bench/bench_scale.py" + (" --quick" if args.quick else "") + \
        (f" --items {args.items}" if args.items else "")
    body = (f"Catalogs of {', '.join(f'{n:,}' for n in sizes)} generated {DIM}-d vectors (a "
            f"mixture of 2,000 Gaussians) + {new:,} new, 3 x 256 with the default parameters "
            f"(nearest-free), float32 storage; {machine()}. Command: `{command}`. Each "
            f"catalog is written as {SHARDS} Parquet shards and added with `registry add "
            "DIR`. Train and assign times are what each command reports for its own work. "
            "The bare train runs the engine alone, under the same memory settings: "
            "`engine.train` on the whole catalog in memory where `registry train` does that "
            f"too (catalogs up to {chunked.IN_MEMORY_BYTES / 2**30:.0f} GB of vectors), and "
            "beyond it the chunked engine train then runs (`registry.chunked`) on the catalog "
            "in a .npy file, with `engine.train` in memory once beside it for reference; the "
            "bare computation and the command run in turns "
            f"({args.repeat} runs each at 1M and below, {args.repeat_large} above) on each "
            "database, and their medians are compared (the later trains add versions beside "
            "the version 1 that the lookups use). Assign runs once into each of those "
            "versions, frozen, each holding the IDs of its train; the median rate is the "
            "figure. Before each, the bare computation it wraps runs in a process of its "
            "own: encode and nearest-free of the same new vectors in memory, in the "
            "command's batches, against that version's codebooks and issued codes. RSS is "
            "the peak of each process, start-up included. Lookups go through a long-lived "
            "`Registry` (2,000 keys, 1,000 level-1 prefixes at random); start-up is the "
            "median of 7 fresh processes, each round a bare import and then each command."
            "\n\n" + table(["scenario", "figure", "target", "ratio", "met"], rows))
    print(body)
    if not args.no_write and not args.quick:
        record("Performance at catalog scale (issue 26)", body)


if __name__ == "__main__":
    main()
