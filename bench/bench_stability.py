"""Retrain stability: how many items keep their IDs when a catalog grows and is retrained.

On the real Debian catalog (../shared/data: 63,666 packages, all-MiniLM-L6-v2 embeddings), a
version is trained (3 x 256) on 40,000 packages, the catalog grows by 10%, 25% or 50%, and a
new version is trained on the grown catalog three ways:

- cold: a fresh residual k-means (another seed);
- plain warm start: faiss k-means started from the old codebook at every level (20 rounds),
  nearest-centroid assignment;
- registry (`train --from`): sticky warm start (registry.stable) with the defaults of the
  command line.

Growth is drawn at random from the rest of the catalog, or concentrated in six sections
(libdevel, python, perl, haskell, rust, golang: a shifted catalog, whose base version was
trained without them). Reported: the share of the old items whose full code tuple is
unchanged, and whose first 1 and 2 codes are; the relative reconstruction error on the grown
catalog (lower fits better; "frozen" is the old version's codebooks applied unchanged); time.
Target (issue 4): the registry's method keeps at least 90% of full code tuples at 25% growth.

    python bench/bench_stability.py            # 10/25/50% growth, random and shifted
    python bench/bench_stability.py --quick    # 25% growth, random only, 20k base
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import debian, machine, record, table

from registry import engine
from registry.defaults import WARM_NITER
from registry.engine import TrainParams

SHIFTED_SECTIONS = ("libdevel", "python", "perl", "haskell", "rust", "golang")
STICKINESS = 0.02  # the command line's default
TARGET = 0.9


def plain_warm_start(x: np.ndarray, books: list[np.ndarray]) -> tuple[np.ndarray, list]:
    """faiss k-means from the old codebook at every level, nearest assignment."""
    r = engine.prepare(x)
    codes = np.empty((r.shape[0], len(books)), dtype=np.int64)
    out = []
    for level, init in enumerate(books):
        km = faiss.Kmeans(r.shape[1], init.shape[0], niter=20, seed=level,
                          min_points_per_centroid=1)
        km.train(r, init_centroids=init)
        labels = km.index.search(r, 1)[1].ravel()
        codes[:, level] = labels
        out.append(km.centroids)
        r -= km.centroids[labels]
    return codes, out


def error(x: np.ndarray, codes: np.ndarray, books: list[np.ndarray]) -> float:
    xn = engine.prepare(x)
    rest = xn - engine.decode(codes, books)
    return float(np.square(rest).sum() / np.square(xn - xn.mean(0)).sum())


def kept(old: np.ndarray, new: np.ndarray) -> list[float]:
    same = np.cumsum(old != new, axis=1) == 0
    return [float(x) for x in same.mean(axis=0)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    vectors, sections = debian()
    base_n = 20_000 if args.quick else 40_000
    growths = (0.25,) if args.quick else (0.10, 0.25, 0.50)
    kinds = ("random",) if args.quick else ("random", "shifted")
    sizes = (256, 256, 256)
    rng = np.random.default_rng(0)
    rows = []
    for kind in kinds:
        if kind == "random":
            order = rng.permutation(len(vectors))
            base, pool = order[:base_n], order[base_n:]
        else:
            inside = np.isin(sections, SHIFTED_SECTIONS)
            base = rng.permutation(np.flatnonzero(~inside))[:base_n]
            pool = rng.permutation(np.flatnonzero(inside))
        base_params = TrainParams(sizes, seed=0)
        old = engine.train(vectors[base], base_params)
        for growth in growths:
            grown = np.concatenate([base, pool[: int(growth * base_n)]])
            x = vectors[grown]
            frozen = error(x, engine.encode(x, old.codebooks, beam=base_params.beam),
                           old.codebooks)
            keep = np.full((len(grown), 3), -1, dtype=np.int64)
            keep[:base_n] = old.codes
            runs = {}
            start = time.perf_counter()
            cold = engine.train(x, TrainParams(sizes, seed=1))
            runs["cold retrain"] = (cold.codes, cold.codebooks, time.perf_counter() - start)
            start = time.perf_counter()
            codes, books = plain_warm_start(x, old.codebooks)
            runs["plain warm start"] = (codes, books, time.perf_counter() - start)
            start = time.perf_counter()
            ours = engine.train(x, TrainParams(sizes, seed=0, niter=WARM_NITER, refine=0,
                                               beam=base_params.beam),
                                warm=old.codebooks, keep=keep, stickiness=STICKINESS)
            runs["registry train --from"] = (ours.codes, ours.codebooks,
                                             time.perf_counter() - start)
            for method, (codes, books, seconds) in runs.items():
                d1, d2, full = kept(old.codes, codes[:base_n])
                ok = "-" if method != "registry train --from" or growth != 0.25 else \
                    ("yes" if full >= TARGET else "NO")
                rows.append([kind, f"{growth:.0%}", method, f"{full:.1%}", f"{d1:.1%}",
                             f"{d2:.1%}", f"{error(x, codes, books):.4f}", f"{frozen:.4f}",
                             f"{seconds:.1f}", ok])
                print(rows[-1])
    body = (f"Debian catalog (all-MiniLM-L6-v2), base version 3 x 256 on {base_n} packages, "
            f"seed 0; registry method: stickiness {STICKINESS}, {WARM_NITER} rounds; "
            f"{machine()}. Command: `python bench/bench_stability.py"
            f"{' --quick' if args.quick else ''}`. Shifted growth comes from the sections "
            f"{', '.join(SHIFTED_SECTIONS)}, which the base version never saw. Target: at "
            f"least {TARGET:.0%} of old items keep their full code tuple at 25% growth.\n\n"
            + table(["growth drawn", "growth", "method", "same full tuple", "same depth 1",
                     "same depth 1-2", "rel. error", "error, old codebooks frozen",
                     "seconds", "within target"], rows))
    print(body)
    if not args.no_write and not args.quick:
        record("retrain stability (issue 4)", body)


if __name__ == "__main__":
    main()
