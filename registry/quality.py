"""Quality figures of a version's codes, one definition each (see DESIGN.md, "Metrics").

- raw collision rate = 1 - distinct code tuples / N of the nearest codes, before any collision
  handling (nearest-free moves, disambiguation numbers);
- semantic-unique share = items whose issued code tuple no other item has / N, after handling;
- largest bucket and the Gini coefficient of bucket sizes (0: all tuples equally full);
- per level: used codes / k, and perplexity exp(-sum p log p) of code usage;
- relative reconstruction error = sum ||x - x_hat||^2 / sum ||x - mean||^2 (plain residuals);
- neighbourhood agreement at depth d = mean over sampled items of the share of their 10 exact
  nearest neighbours (cosine) that share their first d codes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


def _buckets(codes: np.ndarray) -> np.ndarray:
    """Sizes of the distinct code tuples; ``codes`` is (N, L) or packed (N,)."""
    codes = np.asarray(codes)
    if codes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    if codes.ndim == 2:
        # one integer per tuple (mixed radix): np.unique on rows is far slower
        # (BENCHMARKS.md, Design figures: bucket sizes by packed tuple)
        radix = [int(r) for r in codes.max(axis=0) + 1]
        if math.prod(radix) < 2**62:
            weights = [math.prod(radix[i + 1:]) for i in range(len(radix))]
            codes = codes.astype(np.int64) @ np.asarray(weights, dtype=np.int64)
    _, counts = np.unique(codes, axis=0 if codes.ndim == 2 else None, return_counts=True)
    return counts


def collision_rate(codes: np.ndarray) -> float:
    """1 - distinct code tuples / N: the raw collision rate of nearest codes, before any
    collision handling.

    ``codes`` is either (N, L) code tuples or (N,) packed codes; both give the same figure.
    """
    sizes = _buckets(codes)
    n = int(sizes.sum())
    return 0.0 if n == 0 else 1.0 - sizes.size / n


def semantic_unique_share(codes: np.ndarray) -> float:
    """Share of items whose code tuple no other item has."""
    sizes = _buckets(codes)
    n = int(sizes.sum())
    return 0.0 if n == 0 else float((sizes == 1).sum()) / n


def gini(sizes: np.ndarray) -> float:
    """Gini coefficient of bucket sizes: 0 when all are equal, towards 1 when a few hold all."""
    s = np.sort(np.asarray(sizes, dtype=np.float64))
    n = s.size
    if n == 0 or s.sum() == 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float((2 * (ranks * s).sum()) / (n * s.sum()) - (n + 1) / n)


def level_usage(codes: np.ndarray, sizes: tuple[int, ...]) -> list[dict]:
    """Per level: share of the k codes in use, and the perplexity of code usage."""
    out = []
    for level, k in enumerate(sizes):
        counts = np.bincount(codes[:, level], minlength=k).astype(np.float64)
        p = counts[counts > 0] / counts.sum() if counts.sum() else counts[:0]
        out.append({"used": float((counts > 0).sum()) / k,
                    "perplexity": float(np.exp(-(p * np.log(p)).sum())) if p.size else 0.0})
    return out


def reconstruction_error(x: np.ndarray, rebuilt: np.ndarray) -> float:
    """sum ||x - x_hat||^2 / sum ||x - mean||^2, with ``x`` the normalized vectors."""
    return ReconstructionSums().add(x, rebuilt).value()


class ReconstructionSums:
    """:func:`reconstruction_error` over a catalog read a chunk at a time: :meth:`add` each
    chunk's normalized vectors and their reconstructions, then :meth:`value`. Sums in
    float64; sum ||x - mean||^2 as sum ||x||^2 - N ||mean||^2."""

    def __init__(self) -> None:
        self.n, self.squares, self.errors = 0, 0.0, 0.0
        self.total: np.ndarray | None = None

    def add(self, x: np.ndarray, rebuilt: np.ndarray) -> ReconstructionSums:
        if x.shape[0]:
            part = x.sum(axis=0, dtype=np.float64)
            self.total = part if self.total is None else self.total + part
            self.n += x.shape[0]
            self.squares += float(np.einsum("ij,ij->", x, x, dtype=np.float64))
            diff = x - rebuilt
            self.errors += float(np.einsum("ij,ij->", diff, diff, dtype=np.float64))
        return self

    def value(self) -> float:
        if self.total is None:
            return 0.0
        spread = self.squares - float(self.total @ self.total) / self.n
        # vectors all alike: what is left of the spread is rounding, not a figure to divide by
        return self.errors / spread if spread > 1e-9 * self.squares else 0.0


def neighbourhood_agreement(x: np.ndarray, codes: np.ndarray, *, sample: int = 1000,
                            neighbours: int = 10, seed: int = 0) -> list[float]:
    """For depths 1..L: mean share of a sampled item's exact cosine neighbours (``x`` is
    L2-normalized) that share its first d codes."""
    found = Neighbours(x.__getitem__, x.shape[0], sample=sample, neighbours=neighbours,
                       seed=seed)
    found.add(x, 0)
    return found.agreement(codes)


class Neighbours:
    """:func:`neighbourhood_agreement` over a catalog of ``n`` rows read a chunk at a time:
    the sampled rows (:attr:`rows`, drawn as there) are the queries, whose normalized vectors
    ``vectors_of(rows)`` gives; :meth:`add` each chunk with the position of its first row,
    then :meth:`agreement`."""

    def __init__(self, vectors_of: Callable[[np.ndarray], np.ndarray], n: int, *,
                 sample: int = 1000, neighbours: int = 10, seed: int = 0):
        import faiss

        self.n, self.neighbours = n, min(neighbours, max(n - 1, 0))
        self.rows = np.random.default_rng(seed).choice(n, min(sample, n), replace=False) \
            if n >= 2 else np.empty(0, dtype=np.int64)
        self.queries = np.ascontiguousarray(vectors_of(self.rows), dtype=np.float32) \
            if self.rows.size else np.empty((0, 0), dtype=np.float32)
        self._found: np.ndarray | None = None
        # the neighbours, and each row itself, by inner product (cosine: x is normalized)
        self.heap = faiss.ResultHeap(self.rows.size, self.neighbours + 1, keep_max=True)

    def add(self, x: np.ndarray, first: int) -> None:
        import faiss

        if not self.rows.size or not x.shape[0]:
            return
        k = min(self.neighbours + 1, x.shape[0])
        dists, at = faiss.knn(self.queries, np.ascontiguousarray(x, dtype=np.float32), k,
                              metric=faiss.METRIC_INNER_PRODUCT)
        if k < self.neighbours + 1:  # a chunk with fewer rows than the heap keeps
            # positions of -1 once ``first`` is added below, and never a neighbour (-inf)
            pad = self.neighbours + 1 - k
            dists = np.pad(dists, ((0, 0), (0, pad)), constant_values=-np.inf)
            at = np.pad(at, ((0, 0), (0, pad)), constant_values=-1 - first)
        self.heap.add_result(np.ascontiguousarray(dists, dtype=np.float32),
                             np.ascontiguousarray(at + first, dtype=np.int64))

    def agreement(self, codes: np.ndarray) -> list[float]:
        """For depths 1..L: the mean share of the rows' neighbours that share their first d
        codes (``codes``: every row's)."""
        if self.n < 2:
            return [1.0] * codes.shape[1]
        if self._found is None:
            self.heap.finalize()
            self._found = self.heap.I
        out = []
        for depth in range(1, codes.shape[1] + 1):
            shares = []
            for row, hits in zip(self.rows, self._found, strict=True):
                hits = hits[(hits != row) & (hits >= 0)][:self.neighbours]
                same = (codes[hits, :depth] == codes[row, :depth]).all(axis=1)
                shares.append(same.mean())
            out.append(float(np.mean(shares)))
        return out


def prefix_purity(codes: np.ndarray, labels: np.ndarray, depth: int = 1) -> float:
    """Share of items whose label is the most common one under their first ``depth`` codes."""
    prefixes = np.unique(codes[:, :depth], axis=0, return_inverse=True)[1].ravel()
    _, lab = np.unique(labels, return_inverse=True)
    table = np.zeros((prefixes.max() + 1, lab.max() + 1), dtype=np.int64)
    np.add.at(table, (prefixes, lab), 1)
    return float(table.max(axis=1).sum()) / len(labels)


def headline(codes: np.ndarray, sizes: tuple[int, ...]) -> dict:
    """The cheap figures of codes as issued (after collision handling), stored with a version
    at train time. The raw collision rate is a figure of the nearest codes, before handling:
    see :func:`collision_rate`."""
    buckets = _buckets(codes)
    n = int(buckets.sum())
    return {"semantic_unique_share": 0.0 if n == 0 else float((buckets == 1).sum()) / n,
            "largest_bucket": int(buckets.max()) if n else 0,
            "bucket_gini": gini(buckets),
            "levels": level_usage(codes, sizes)}
