"""IDs back to items at model speed (issue 24), on SQLite and PostgreSQL, each figure beside
the bare numpy computation it wraps, in one run:

- snapshot load: a frozen version's IDs, keys and states read into memory;
- resolve of N canonical IDs in one call, against ``np.searchsorted`` of the same packed
  codes in the snapshot's sorted codes; the same IDs in token form, against the canonical;
- ``allowed_next`` of prefixes of issued IDs (depths 0 to L, as a beam search asks), one core;
- the snapshot's memory per ID (arrays and the list of keys; the keys' own strings apart).

    python bench/bench_resolve.py            # 1M IDs at 3 x 256
    python bench/bench_resolve.py --quick    # 100k IDs, not written to BENCHMARKS.md

The vectors are 32-d: what resolve does depends on the IDs, not on the dimension.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import clustered_vectors, database, machine, record, table

from registry import Registry
from registry.ids import format_tokens

SIZES = (256, 256, 256)
LOAD_S, RESOLVE_RATE, RESOLVE_RATIO, TOKEN_RATIO = 2.0, 1_000_000, 0.5, 0.3
NEXT_RATE, BYTES_PER_ID = 200_000, 48


def best(fn, repeat: int = 3) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), times


def run_database(kind: str, n: int, tmp: Path) -> list[list[object]]:
    rows: list[list[object]] = []
    with database(kind, tmp) as url, Registry(url) as reg:
        reg.init()
        reg.add([f"item{i:08d}" for i in range(n)], clustered_vectors(n, 32, seed=1))
        reg.train(codebook_size=list(SIZES), name="v", collisions="suffix")
        reg.freeze("v")
        reg.activate("v")
        load, loads = best(lambda: reg.snapshot("v"))
        snap = reg.snapshot("v")
        print(f"{kind}: snapshot of {len(snap):,} IDs in {load:.2f} s")
        rows.append([f"snapshot load, {len(snap):,} IDs, {kind} (best of 3: "
                     f"{' / '.join(f'{t:.2f}' for t in loads)} s)", f"{load:.2f} s",
                     f"<= {LOAD_S} s", f"{load / LOAD_S:.2f}", "yes" if load <= LOAD_S
                     else "NO"])
        order = np.random.default_rng(0).permutation(len(snap))
        ids = snap.ids(order)
        tokens = format_tokens(snap.space.unpack(snap.codes[order]),
                               snap.disambiguation[order])
        sorted_codes = np.sort(snap.codes)
        wanted = snap.codes[order]
        bare, _ = best(lambda: np.searchsorted(sorted_codes, wanted))
        canon, canons = best(lambda: snap.resolve(ids))
        token, tokenss = best(lambda: snap.resolve(tokens))
        assert snap.resolve(ids[:1000]).statuses == ["found"] * 1000
        assert snap.resolve(tokens[:1000]).statuses == ["found"] * 1000
        m = len(ids)
        rows.append([f"bare np.searchsorted of {m:,} packed codes, {kind} run (best of 3)",
                     f"{m / bare:,.0f} IDs/s", "-", "1.00x", "-"])
        rows.append([f"resolve {m:,} canonical IDs in one call, {kind} (best of 3: "
                     f"{' / '.join(f'{t:.3f}' for t in canons)} s)", f"{m / canon:,.0f} IDs/s",
                     f">= {RESOLVE_RATE:,} IDs/s and >= {RESOLVE_RATIO}x bare",
                     f"{bare / canon:.2f}x bare",
                     "yes" if m / canon >= RESOLVE_RATE and bare / canon >= RESOLVE_RATIO
                     else "NO"])
        rows.append([f"resolve {m:,} token-form IDs in one call, {kind} (best of 3: "
                     f"{' / '.join(f'{t:.3f}' for t in tokenss)} s)", f"{m / token:,.0f} IDs/s",
                     f">= {TOKEN_RATIO}x canonical", f"{canon / token:.2f}x canonical",
                     "yes" if canon / token >= TOKEN_RATIO else "NO"])
        rng = np.random.default_rng(1)
        pick = rng.integers(0, len(snap), 200_000)
        full = np.column_stack([snap.space.unpack(snap.codes[pick]), snap.disambiguation[pick]])
        depth = rng.integers(0, snap.space.levels + 1, pick.size)
        prefixes = [row[:d] for row, d in zip(full.tolist(), depth.tolist(), strict=True)]
        fresh = reg.snapshot("v")  # nothing cached yet
        start = time.perf_counter()
        for p in prefixes:
            fresh.allowed_next(p)
        rate = len(prefixes) / (time.perf_counter() - start)
        rows.append([f"allowed_next of {len(prefixes):,} prefixes of issued IDs (depths 0-3), "
                     f"{kind}, one core", f"{rate:,.0f} prefixes/s", f">= {NEXT_RATE:,}/s",
                     f"{rate / NEXT_RATE:.2f}", "yes" if rate >= NEXT_RATE else "NO"])
        arrays = sum(a.nbytes for a in (snap._key if snap._key is not None else snap.codes,
                                        snap.removed))
        per_id = (arrays + 8 * len(snap.keys)) / len(snap)
        keys = statistics.mean(sys.getsizeof(k) for k in snap.keys[:10_000])
        rows.append([f"snapshot memory, {kind}: arrays and the list of keys (the keys' strings, "
                     f"{keys:.0f} bytes each, apart)", f"{per_id:.1f} bytes/ID",
                     f"<= {BYTES_PER_ID} bytes/ID", f"{per_id / BYTES_PER_ID:.2f}",
                     "yes" if per_id <= BYTES_PER_ID else "NO"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--items", type=int, default=None)
    args = ap.parse_args()
    n = args.items or (100_000 if args.quick else 1_000_000)
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("sqlite", "postgresql"):
            rows += run_database(kind, n, Path(tmp))
    body = (f"{n:,} IDs at 3 x 256 (32-d generated vectors, suffix collisions); {machine()}. "
            f"Command: `python bench/bench_resolve.py{' --quick' if args.quick else ''}`.\n\n"
            + table(["scenario", "figure", "target", "ratio", "met"], rows))
    print(body)
    if not args.quick and args.items is None:
        record("IDs back to items: resolve, snapshots, allowed_next (issue 24)", body)


if __name__ == "__main__":
    main()
