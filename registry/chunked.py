"""Cold training on a catalog read in chunks: memory that does not grow with its vectors.

:func:`registry.engine.train` holds every vector, then every residual, at once: 1.5 GB per
million 384-d items. Yet k-means only ever looks at a seeded sample per level (at most
``max_points_per_centroid * k`` rows), the refinement passes at another, and encoding is row
by row. :func:`train` here draws the same samples from the same generators, reads just those
rows, trains the same codebooks, then encodes the whole catalog a chunk at a time through
the same steps in the same order, so that its codebooks and codes are those of
:func:`registry.engine.train` on the same rows (tests/test_chunked.py). What stays in memory
is a few numbers per item (codes, squared residuals) and one chunk of vectors. Nearest-free
needs the final residuals of the rows it moves, in an order only known at the end: they are
kept as each chunk is encoded, in memory up to RESIDUALS_IN_MEMORY and in a temporary file
beyond it, and read back row by row.

Numpy in, numpy out: the rows come from a :class:`Rows` source (an array in memory, or the
database's live items, :class:`registry.store.scan.LiveVectors`).
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Protocol

import numpy as np

from . import engine, kmeans
from .quality import collision_rate

# rows encoded at a time: 384 MB of 384-d float32 vectors (a multiple of the engine's
# sum-of-squares blocks). Below twice this, the whole catalog is read and trained in memory.
CHUNK_ROWS = 1 << 18
# the final residuals nearest-free reads back stay in memory up to this size, and go to a
# temporary file beyond it: writing them there and reading them back costs a sixth of the
# time of the rest of a train at 1M items (BENCHMARKS.md, Design figures: residuals spilled)
RESIDUALS_IN_MEMORY = 2 << 30


class Rows(Protocol):
    """Where a chunked train reads its rows: ``n`` float32 vectors of ``dim``, in a fixed
    order."""

    n: int
    dim: int

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start`` up to ``stop``, as a new (stop - start, dim) array."""

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The rows at the sorted positions ``rows``, as a new array in that order."""


class ArrayRows:
    """A :class:`Rows` over an array (a ``np.load(..., mmap_mode="r")`` file too)."""

    def __init__(self, x: np.ndarray):
        self.x = x
        self.n, self.dim = x.shape

    def rows(self, start: int, stop: int) -> np.ndarray:
        return np.array(self.x[start:stop], dtype=np.float32)

    def take(self, rows: np.ndarray) -> np.ndarray:
        return np.array(self.x[rows], dtype=np.float32)


def in_memory(n: int, params: engine.TrainParams, chunk: int) -> bool:
    """Whether a train of ``n`` rows reads them all at once: a small catalog, a balanced
    version (its capacity-constrained assignment sees every row together), or samples that
    would hold every row anyway."""
    samples = [params.max_points_per_centroid * k for k in params.codebook_sizes]
    if params.refine:
        samples.append(params.max_points_per_centroid * max(params.codebook_sizes))
    return n < 2 * chunk or params.balance is not None or n <= max(samples)


def train(source: Rows, params: engine.TrainParams, *, chunk: int | None = None,
          spill_dir: str | None = None) -> engine.TrainResult:
    """Codebooks and codes of a cold train of ``source``'s rows, as
    :func:`registry.engine.train` gives them, holding one chunk of ``chunk`` rows at a time
    (:data:`CHUNK_ROWS` by default; every row at once where :func:`in_memory` says so).
    The nearest-free step's residuals (``n * dim * 4`` bytes) stay in memory up to
    :data:`RESIDUALS_IN_MEMORY`, and go to a temporary file in ``spill_dir`` (the system's
    temporary directory by default) beyond it, removed before returning."""
    n = source.n
    chunk = CHUNK_ROWS if chunk is None else chunk
    if in_memory(n, params, chunk):
        return engine.train(source.rows(0, n), params, overwrite=True)
    start = time.perf_counter()
    warnings = engine.size_warnings(n, params)
    books: list[np.ndarray] = []
    for level, k in enumerate(params.codebook_sizes):
        rng = np.random.default_rng(params.seed + level)
        pick = kmeans.sample_rows(n, params.max_points_per_centroid * k, rng)
        sample = _greedy(engine.prepare(source.take(pick), overwrite=True), books,
                         params.residual)
        books.append(kmeans.fit_sample(sample, k, niter=params.niter, rng=rng,
                                       project=level > 0))
        del sample
    # the codebooks the level-by-level codes were found with: the refinement moves the
    # deeper ones, and the whole catalog is encoded as it was in memory, greedily with these
    # and then again with the refined ones
    greedy_books = [b.copy() for b in books]
    deeper = params.residual == "plain" and kmeans.refines(params.levels, params.refine,
                                                           params.beam)
    if deeper and params.refine:
        rng = np.random.default_rng(params.seed)
        pick = np.sort(rng.choice(n, params.max_points_per_centroid * max(params.codebook_sizes),
                                  replace=False))
        part = engine.prepare(source.take(pick), overwrite=True)
        part_codes = _encode_greedy(part, greedy_books, params.residual)
        kmeans.refine_passes(part, part_codes, books, params.refine, params.beam)
        del part, part_codes

    plain = params.residual == "plain"
    free = params.collisions == "nearest-free"
    codes = np.empty((n, params.levels), dtype=np.int64)
    residual_sq = np.empty(n, dtype=np.float32) if plain and free else None
    row_sum = np.zeros(source.dim, dtype=np.float64)
    total_sq = error = 0.0
    if not (plain and free):
        kept = _NoResiduals()
    elif n * source.dim * 4 <= RESIDUALS_IN_MEMORY:
        kept = _Residuals(n, source.dim)
    else:
        kept = _Spill(n, source.dim, spill_dir)
    with kept as spill:
        for at in range(0, n, chunk):
            x = engine.prepare(source.rows(at, min(n, at + chunk)), overwrite=True)
            row_sum += x.sum(axis=0, dtype=np.float64)
            total_sq += engine.sum_squares(x)
            part = codes[at:at + x.shape[0]]
            part[:] = _encode_greedy(x, greedy_books, params.residual)
            if deeper:
                kmeans.add_back(x, part, greedy_books)
                kmeans.encode_deeper(x, part, books, params.beam)
            if plain:
                error += engine.sum_squares(x)
            if residual_sq is not None:
                residual_sq[at:at + x.shape[0]] = np.einsum("ij,ij->i", x, x)
            spill.write(at, x)
            del x, part
        mean = row_sum / n
        total = total_sq - n * float(mean @ mean)
        stats: dict = {"items": n, "dim": source.dim, "raw_collision_rate": collision_rate(codes)}
        if free:
            def rows_x(rows: np.ndarray) -> np.ndarray:
                if not plain:  # normalized residuals cannot be undone: read the rows again
                    order = np.argsort(rows, kind="stable")
                    x = np.empty((rows.size, source.dim), dtype=np.float32)
                    x[order] = engine.prepare(source.take(rows[order]), overwrite=True)
                    return x
                x = spill.read(rows)
                for lvl, cb in enumerate(books):
                    kmeans.shift(x, cb, codes[rows, lvl], +1.0)
                return x

            codes, stats["moved"], error = engine.free_tuples(
                rows_x, spill.read, codes, books, params, error if plain else None,
                residual_sq=residual_sq)
    if plain:
        stats["reconstruction_error"] = error / total if total > 0 else 0.0
    stats["train_seconds"] = round(time.perf_counter() - start, 3)
    if warnings:
        stats["warnings"] = warnings
    return engine.TrainResult(codebooks=books, codes=codes, stats=stats)


def _greedy(x: np.ndarray, books: list[np.ndarray], mode: str) -> np.ndarray:
    """``x`` (ours) stepped in place through ``books``, each level to its nearest centroid:
    the residual the next level is trained on."""
    for cb in books:
        labels, _ = kmeans.nearest(x, cb)
        engine.step_residual(x, cb, labels, mode)
    return x


def _encode_greedy(x: np.ndarray, books: list[np.ndarray], mode: str) -> np.ndarray:
    """Codes of ``x`` level by level (``x`` becomes the final residual), as the level loop
    of :func:`registry.engine.train` gives them."""
    codes = np.empty((x.shape[0], len(books)), dtype=np.int64)
    for level, cb in enumerate(books):
        codes[:, level], _ = kmeans.nearest(x, cb)
        engine.step_residual(x, cb, codes[:, level], mode)
    return codes


class _Spill:
    """The final residuals, a float32 row per item, in a temporary file. Read back through a
    short-lived memory map: its pages leave the process with it, so the rows read never add
    up in its resident memory."""

    def __init__(self, n: int, dim: int, where: str | None):
        self.shape = (n, dim)
        fd, self.path = tempfile.mkstemp(prefix="registry-train-", suffix=".f32", dir=where)
        self.file = os.fdopen(fd, "w+b")

    def __enter__(self) -> _Spill:
        return self

    def __exit__(self, *exc_info) -> None:
        self.file.close()
        os.unlink(self.path)

    def write(self, at: int, x: np.ndarray) -> None:
        self.file.seek(at * x.shape[1] * 4)
        self.file.write(np.ascontiguousarray(x, dtype=np.float32).data)

    def read(self, rows: np.ndarray) -> np.ndarray:
        self.file.flush()
        view = np.memmap(self.path, dtype=np.float32, mode="r", shape=self.shape)
        try:
            return np.array(view[rows])
        finally:
            del view


class _Residuals:
    """The final residuals, in memory (as the in-memory engine holds them)."""

    def __init__(self, n: int, dim: int):
        self.x = np.empty((n, dim), dtype=np.float32)

    def __enter__(self) -> _Residuals:
        return self

    def __exit__(self, *exc_info) -> None:
        del self.x

    def write(self, at: int, x: np.ndarray) -> None:
        self.x[at:at + x.shape[0]] = x

    def read(self, rows: np.ndarray) -> np.ndarray:
        return self.x[rows]


class _NoResiduals(_Residuals):
    """None kept: normalized residuals are not decoded (nearest-free reads the rows again),
    and suffix collisions never move a row."""

    def __init__(self) -> None:
        pass

    def __exit__(self, *exc_info) -> None:
        pass

    def write(self, at: int, x: np.ndarray) -> None:
        pass

    def read(self, rows: np.ndarray) -> np.ndarray:
        raise AssertionError("no residuals kept")
