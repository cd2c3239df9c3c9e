"""Cold training on a catalog read in chunks: memory that does not grow with its vectors.

:func:`registry.engine.train` holds every vector, then every residual, at once: 1.5 GB per
million 384-d items. Yet k-means only ever looks at a seeded sample per level (at most
``max_points_per_centroid * k`` rows), the refinement passes at another, and encoding is row
by row. :func:`train` here draws the same samples from the same generators, reads just those
rows, trains the same codebooks, then encodes the whole catalog a chunk at a time through
the same steps in the same order, so that its codebooks and codes are those of
:func:`registry.engine.train` on the same rows (tests/test_chunked.py). What stays in memory
is the samples, a few numbers per item (codes, squared residuals) and one chunk of vectors.
Nearest-free needs the final residuals of the rows it moves, in an order only known at the
end: they are written to a temporary file as each chunk is encoded and read back row by row.
A catalog within IN_MEMORY_BYTES is trained in memory as a whole, which is faster.

Numpy in, numpy out: the rows come from a :class:`Rows` source (an array in memory, or the
database's live items, :class:`registry.store.scan.LiveVectors`).
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Protocol

import numpy as np

from . import engine, kmeans, stable
from .ids import CodeSpace
from .quality import collision_rate

# rows encoded at a time: 384 MB of 384-d float32 vectors (a multiple of the engine's
# sum-of-squares blocks)
CHUNK_ROWS = 1 << 18
# a catalog whose vectors take no more than this is read whole and trained in memory: the
# in-memory engine holds the final residuals nearest-free reads back, where a chunked train
# writes them to a file and reads them again, and draws its samples from memory, where a
# chunked train reads them from the database at random (BENCHMARKS.md, Design figures:
# chunked train against the in-memory engine)
IN_MEMORY_BYTES = 2 << 30


class Rows(Protocol):
    """Where a chunked train reads its rows: ``n`` float32 vectors of ``dim``, in a fixed
    order."""

    n: int
    dim: int

    def rows(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``start`` up to ``stop``, as a new (stop - start, dim) array or in ``out``."""

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The rows at the sorted positions ``rows``, as a new array in that order."""


class ArrayRows:
    """A :class:`Rows` over an array (a ``np.load(..., mmap_mode="r")`` file too)."""

    def __init__(self, x: np.ndarray):
        self.x = x
        self.n, self.dim = x.shape

    def rows(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            return np.array(self.x[start:stop], dtype=np.float32)
        out[:] = self.x[start:stop]
        return out

    def take(self, rows: np.ndarray) -> np.ndarray:
        return np.array(self.x[rows], dtype=np.float32)


def in_memory(n: int, dim: int, params: engine.TrainParams, chunk: int) -> bool:
    """Whether a train of ``n`` rows of ``dim`` reads them all at once: a catalog within
    IN_MEMORY_BYTES or two chunks, a balanced version (its capacity-constrained assignment
    sees every row together), or samples that would hold every row anyway."""
    return n * dim * 4 <= IN_MEMORY_BYTES or n < 2 * chunk or params.balance is not None \
        or n <= sum(_sample_sizes(params))


def _sample_sizes(params: engine.TrainParams) -> list[int]:
    """The rows each level's k-means samples, and the refinement passes (where they run)."""
    sizes = [params.max_points_per_centroid * k for k in params.codebook_sizes]
    if params.refine:  # (only ever set where it applies: plain residuals, 2+ levels)
        sizes.append(params.max_points_per_centroid * max(params.codebook_sizes))
    return sizes


def _refined(params: engine.TrainParams) -> bool:
    return params.residual == "plain" and kmeans.refines(params.levels, params.refine,
                                                         params.beam)


def train(source: Rows, params: engine.TrainParams, *, warm: list[np.ndarray] | None = None,
          keep: np.ndarray | None = None, stickiness: float = 0.0, chunk: int | None = None,
          spill_dir: str | None = None) -> engine.TrainResult:
    """Codebooks and codes of a train of ``source``'s rows, cold or warm (``warm``, ``keep``
    and ``stickiness`` as for :func:`registry.engine.train`), as that function gives them,
    holding one chunk of ``chunk`` rows at a time (:data:`CHUNK_ROWS` by default; every row
    at once where :func:`in_memory` says so). The nearest-free step's residuals
    (``n * dim * 4`` bytes) go to a temporary file in ``spill_dir`` (the system's temporary
    directory by default), unlinked as soon as it is made."""
    n = source.n
    chunk = CHUNK_ROWS if chunk is None else chunk
    if in_memory(n, source.dim, params, chunk):
        return engine.train(source.rows(0, n), params, overwrite=True, warm=warm, keep=keep,
                            stickiness=stickiness)
    start = time.perf_counter()
    warnings = engine.size_warnings(n, params)
    warm, keep = engine.check_warm(params, warm, keep, n, source.dim)
    if warm is None and keep is not None:
        raise ValueError("a chunked train keeps earlier codes in a warm start only: give "
                         "`warm` with `keep`")
    if warm is not None and keep is None:  # no earlier codes: the same as none kept
        keep = np.full((n, params.levels), -1, dtype=np.int64)
    # every sample drawn first (each from its own generator, which the level's k-means
    # then goes on with) and read in one pass, in id order
    draws = []
    for level, m in enumerate(_sample_sizes(params)):
        rng = np.random.default_rng(params.seed + level if level < params.levels
                                    else params.seed)
        draws.append((rng, kmeans.sample_rows(n, m, rng)))
    wanted = np.unique(np.concatenate([pick for _, pick in draws]))
    raw = source.take(wanted)

    def sample(pick: np.ndarray) -> np.ndarray:
        return engine.prepare(raw[np.searchsorted(wanted, pick)], overwrite=True)

    books: list[np.ndarray] = []
    for level, k in enumerate(params.codebook_sizes):
        rng, pick = draws[level]
        if warm is None:
            x = sample(pick)
            _encode_greedy(x, books, params.residual)  # to the level's residual
            books.append(kmeans.fit_sample(x, k, niter=params.niter, rng=rng,
                                           project=level > 0))
            continue
        x, held = sample(pick), keep[pick].copy()
        _sticky(x, np.empty((len(pick), level), dtype=np.int64), books, held, stickiness,
                params)
        # exactly its sample's rows: anchored_kmeans draws no other
        books.append(stable.anchored_kmeans(
            x, warm[level], held[:, level], niter=params.niter, stickiness=stickiness,
            max_points=len(pick), seed=params.seed + level))
    refine_sample = sample(draws[-1][1]) if len(draws) > params.levels else None
    raw = None  # the samples' rows, no longer needed
    # the codebooks the level-by-level codes were found with: the refinement moves the
    # deeper ones, and the whole catalog is encoded as it was in memory, greedily with these
    # and then again with the refined ones
    greedy_books = [b.copy() for b in books] if warm is None else books
    deeper = _refined(params)
    if refine_sample is not None:
        part_codes = _encode_greedy(refine_sample, greedy_books, params.residual)
        kmeans.refine_passes(refine_sample, part_codes, books, params.refine, params.beam)
        del refine_sample, part_codes

    plain = params.residual == "plain"
    free = params.collisions == "nearest-free"
    codes = np.empty((n, params.levels), dtype=np.int64)
    # a warm start's raw collision rate is one of the nearest codes, encoded afresh
    nearest = None if warm is None else np.empty(n, dtype=np.int64)
    space = CodeSpace(params.codebook_sizes)
    residual_sq = np.empty(n, dtype=np.float32) if plain and free else None
    row_sum = np.zeros(source.dim, dtype=np.float64)
    total_sq = error = 0.0
    buffer = np.empty((min(n, chunk), source.dim), dtype=np.float32)  # reused: no new pages
    with _Spill(n, source.dim, spill_dir) if plain and free else _NoSpill() as spill:
        for at in range(0, n, chunk):
            stop = min(n, at + chunk)
            x = engine.prepare(source.rows(at, stop, out=buffer[:stop - at]), overwrite=True)
            row_sum += x.sum(axis=0, dtype=np.float64)
            total_sq += engine.sum_squares(x)
            part = codes[at:stop]
            if warm is None:
                part[:] = _encode_greedy(x, greedy_books, params.residual)
                if deeper:
                    kmeans.add_back(x, part, greedy_books)
                    kmeans.encode_deeper(x, part, books, params.beam)
            else:
                original = x.copy() if not plain else None
                nearest[at:stop] = space.pack(_warm_chunk(x, part, books, keep[at:stop],
                                                          stickiness, params, original))
            if plain:
                error += engine.sum_squares(x)
            if residual_sq is not None:
                residual_sq[at:stop] = np.einsum("ij,ij->i", x, x)
            spill.write(at, x)
            del x, part
        del buffer
        mean = row_sum / n
        total = total_sq - n * float(mean @ mean)
        stats: dict = {"items": n, "dim": source.dim, "raw_collision_rate":
                       collision_rate(codes if nearest is None else nearest)}
        del nearest
        if free:
            def rows_x(rows: np.ndarray) -> np.ndarray:
                if not plain:  # normalized residuals cannot be undone: read the rows again
                    order = np.argsort(rows, kind="stable")
                    x = np.empty((rows.size, source.dim), dtype=np.float32)
                    x[order] = engine.prepare(source.take(rows[order]), overwrite=True)
                    return x
                x = spill.read(rows)
                kmeans.add_centroids(x, codes[rows], books)
                return x

            codes, stats["moved"], error = engine.free_tuples(
                rows_x, spill.read, codes, books, params, error if plain else None,
                prefer=keep, residual_sq=residual_sq)
    if plain:
        stats["reconstruction_error"] = error / total if total > 0 else 0.0
    stats["train_seconds"] = round(time.perf_counter() - start, 3)
    if warnings:
        stats["warnings"] = warnings
    return engine.TrainResult(codebooks=books, codes=codes, stats=stats)


def _sticky(x: np.ndarray, codes: np.ndarray, books: list[np.ndarray], keep: np.ndarray,
            stickiness: float, params: engine.TrainParams) -> None:
    """The level loop of a warm :func:`registry.engine.train` on rows of ``x`` (stepped in
    place) through ``books``, ``codes`` filled; ``keep`` (the rows' earlier codes, our copy)
    loses the levels below one whose code changed, as there."""
    for level, cb in enumerate(books):
        held = keep[:, level]
        labels = stable.sticky_assign(x, cb, held, stickiness)
        if level + 1 < params.levels:
            keep[labels != held, level + 1:] = -1
        codes[:, level] = labels
        engine.step_residual(x, cb, labels, params.residual)


def _warm_chunk(x: np.ndarray, codes: np.ndarray, books: list[np.ndarray],
                preferred: np.ndarray, stickiness: float, params: engine.TrainParams,
                original: np.ndarray | None) -> np.ndarray:
    """A chunk of a warm start as :func:`registry.engine.train` encodes it: ``codes`` filled
    and ``x`` left the final residual under them; returns the rows' nearest codes (the raw
    collision rate's), encoded afresh from ``original`` (normalized residuals) or from the
    final residual and the centroids."""
    _sticky(x, codes, books, preferred.copy(), stickiness, params)
    level_err = np.einsum("ij,ij->i", x, x)
    engine.beam_rows(x, codes, books, params.beam,
                     np.flatnonzero((codes != preferred).any(axis=1)))
    if params.residual == "plain":
        engine.keep_whole_tuples(x, codes, books, preferred, stickiness, level_err)
        original = x.copy()
        kmeans.add_centroids(original, codes, books)
    return engine.encode(original, books, params.residual, params.beam)


def _encode_greedy(x: np.ndarray, books: list[np.ndarray], mode: str) -> np.ndarray:
    """Codes of ``x`` level by level (``x`` becomes the final residual), as the level loop
    of :func:`registry.engine.train` gives them."""
    codes = np.empty((x.shape[0], len(books)), dtype=np.int64)
    for level, cb in enumerate(books):
        codes[:, level], _ = kmeans.nearest(x, cb)
        engine.step_residual(x, cb, codes[:, level], mode)
    return codes


class _Spill:
    """The final residuals, a float32 row per item, in a temporary file, read back a row at
    a time: through a memory map, the pages faulted in around each row counted as the
    process's own, and a chunked train's peak memory grew with the catalog (BENCHMARKS.md,
    Design figures: spilled residuals read back)."""

    def __init__(self, n: int, dim: int, where: str | None):
        self.shape = (n, dim)
        fd, self.path = tempfile.mkstemp(prefix="registry-train-", suffix=".f32", dir=where)
        # unlinked at once: the open file is all there is, and it goes with the process
        # however that ends (an error, Ctrl-C, kill -9)
        os.unlink(self.path)
        self.file = os.fdopen(fd, "w+b")

    def __enter__(self) -> _Spill:
        return self

    def __exit__(self, *exc_info) -> None:
        self.file.close()

    def write(self, at: int, x: np.ndarray) -> None:
        self.file.seek(at * x.shape[1] * 4)
        self.file.write(np.ascontiguousarray(x, dtype=np.float32).data)

    def read(self, rows: np.ndarray) -> np.ndarray:
        self.file.flush()
        out = np.empty((len(rows), self.shape[1]), dtype=np.float32)
        size = self.shape[1] * 4
        fd, buffers = self.file.fileno(), memoryview(out).cast("B")
        for i, row in enumerate(np.asarray(rows).tolist()):
            if os.preadv(fd, [buffers[i * size:(i + 1) * size]], row * size) != size:
                raise OSError(f"short read from the residuals spilled to {self.path}")
        return out


class _NoSpill:
    """No residuals kept: normalized ones cannot be decoded (nearest-free reads the rows
    again), and suffix collisions never move a row."""

    def __enter__(self) -> _NoSpill:
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def write(self, at: int, x: np.ndarray) -> None:
        pass

    def read(self, rows: np.ndarray) -> np.ndarray:
        raise AssertionError("no residuals kept")
