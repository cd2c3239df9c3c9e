"""k-means building blocks for the engine: seeding, Lloyd rounds, centroid means and the
refinement of the deeper levels. Numpy, scipy and faiss only; arrays are float32 and C-contiguous.

Why not ``faiss.Kmeans`` alone: it seeds with random rows. On the residuals of the deeper
levels that wastes centroids on the dense core and leaves the long tail poorly served; greedy
k-means++ seeding gives clearly lower distortion there for the same number of Lloyd rounds
(measured in bench/bench_quality.py). Seeding runs on a sample projected onto its leading
principal axes, which keeps it at a small fraction of the Lloyd rounds' cost.
"""

from __future__ import annotations

import faiss
import numpy as np

# Lloyd rounds run on the data projected onto this many principal axes (a third of the cost
# at 384 dimensions, and a smoother objective), then POLISH_ROUNDS more in full dimension
PROJECT_DIMS = 128
POLISH_ROUNDS = 2
# k-means++ looks at no more rows than this, in the leading SEED_DIMS of those axes: seeding
# only needs rough geometry
SEED_ROWS = 8192
SEED_DIMS = 64


# rows x centroids of one block of distances in :func:`nearest` (16 MB of float32)
NEAREST_BLOCK = 1 << 22


def nearest(x: np.ndarray, codebook: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, squared distances) of the nearest centroid of each row.

    One matrix product per block of rows and the argmin of ``|c|^2 - 2 x.c`` (ties to the
    lower index), as faiss's flat index computes it, with the same labels in less time than
    its search (BENCHMARKS.md, Design figures: nearest centroid without faiss). Distances
    below zero (rounding, for a row on its centroid) are 0."""
    n, k = x.shape[0], codebook.shape[0]
    labels = np.empty(n, dtype=np.int64)
    dist = np.empty(n, dtype=np.float32)
    c_sq = np.einsum("ij,ij->i", codebook, codebook)
    rows = max(1, NEAREST_BLOCK // max(k, 1))
    for start in range(0, n, rows):
        part = x[start:start + rows]
        d = part @ codebook.T
        d *= -2.0
        d += c_sq
        best = d.argmin(axis=1)
        labels[start:start + rows] = best
        near = np.take_along_axis(d, best[:, None], axis=1)[:, 0]
        near += np.einsum("ij,ij->i", part, part)
        np.maximum(near, 0.0, out=dist[start:start + rows])
    return labels, dist


def group_sums(x: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(per-code sums of the rows of ``x``, per-code row counts).

    A sparse (k, N) indicator times ``x``: one pass over the data, where sorting the rows by
    label and reducing them costs far more (BENCHMARKS.md, Design figures: group sums).
    """
    # only training refines; assign never loads scipy, whose import is slow
    # (BENCHMARKS.md, Design figures: scipy import)
    import scipy.sparse

    n = x.shape[0]
    indicator = scipy.sparse.csr_matrix(
        (np.ones(n, dtype=np.float32), (labels, np.arange(n))), shape=(k, n))
    return np.asarray(indicator @ x, dtype=np.float32), np.bincount(labels, minlength=k)


def update_means(centroids: np.ndarray, x: np.ndarray, labels: np.ndarray) -> None:
    """Move each centroid (in place) to the mean of its rows; codes with none stay put."""
    sums, counts = group_sums(x, labels, centroids.shape[0])
    filled = counts > 0
    centroids[filled] = sums[filled] / counts[filled, None]


def principal_axes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, axes): the mean of ``x`` and its principal axes as columns, by decreasing
    variance."""
    mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    centred = x - mean
    _, axes = np.linalg.eigh(centred.T @ centred)
    return mean, np.ascontiguousarray(axes[:, ::-1], dtype=np.float32)


def plusplus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``k`` rows of ``x`` chosen by greedy k-means++: each step draws
    2 + ln k candidates in proportion to squared distance and keeps the one that lowers the
    total most."""
    m = x.shape[0]
    sq = np.einsum("ij,ij->i", x, x)
    trials = 2 + int(np.log(k))
    chosen = [int(rng.integers(m))]
    best = np.maximum(sq - 2.0 * (x @ x[chosen[0]]) + sq[chosen[0]], 0.0)
    for _ in range(1, k):
        cum = np.cumsum(best, dtype=np.float64)
        if cum[-1] > 0:
            cand = np.minimum(np.searchsorted(cum, rng.random(trials) * cum[-1]), m - 1)
        else:  # every row sits on a chosen one: the rest are duplicates anyway
            cand = rng.integers(m, size=trials)
        dist = sq[:, None] - 2.0 * (x @ x[cand].T) + sq[cand][None, :]
        np.minimum(dist, best[:, None], out=dist)
        j = int(np.argmin(dist.sum(axis=0)))
        chosen.append(int(cand[j]))
        best = np.maximum(dist[:, j], 0.0)
    return np.asarray(chosen, dtype=np.int64)


def _lloyd(x: np.ndarray, init: np.ndarray, niter: int) -> np.ndarray:
    km = faiss.Kmeans(x.shape[1], init.shape[0], niter=niter, max_points_per_centroid=x.shape[0],
                      min_points_per_centroid=1, verbose=False)
    km.train(x, init_centroids=np.ascontiguousarray(init, dtype=np.float32))
    return np.ascontiguousarray(km.centroids, dtype=np.float32)


def train_level(x: np.ndarray, k: int, *, niter: int, seed: int,
                max_points_per_centroid: int, project: bool = True) -> np.ndarray:
    """A (k, dim) codebook for ``x``, trained on a seeded sample of at most
    ``max_points_per_centroid * k`` rows: greedy k-means++ seeding, then ``niter`` Lloyd
    rounds, with ``project`` in a principal-axes projection followed by a few rounds in full
    dimension."""
    rng = np.random.default_rng(seed)
    pick = sample_rows(x.shape[0], max_points_per_centroid * k, rng)
    return fit_sample(x if pick is None else x[pick], k, niter=niter, rng=rng, project=project)


def sample_rows(n: int, m: int, rng: np.random.Generator) -> np.ndarray | None:
    """The sorted rows of a seeded sample of ``m`` out of ``n``, or None when ``m`` covers
    them all (then nothing is drawn from ``rng``). A caller that reads its rows from
    elsewhere draws the same sample as :func:`train_level` with the same generator."""
    if n <= m:
        return None
    return np.sort(rng.choice(n, m, replace=False))


def fit_sample(sample: np.ndarray, k: int, *, niter: int, rng: np.random.Generator,
               project: bool = True) -> np.ndarray:
    """:func:`train_level` on the rows of its sample, with the generator that drew them."""
    m, dim = sample.shape
    seeding = np.arange(m) if m <= SEED_ROWS else rng.choice(m, SEED_ROWS, replace=False)
    mean, axes = principal_axes(sample[seeding])
    start = seeding[plusplus(np.ascontiguousarray((sample[seeding] - mean) @ axes[:, :SEED_DIMS]),
                             k, rng)]
    if not project or dim <= PROJECT_DIMS:
        return _lloyd(sample, sample[start], niter)
    projected = np.ascontiguousarray((sample - mean) @ axes[:, :PROJECT_DIMS])
    centroids = _lloyd(projected, projected[start], niter) @ axes[:, :PROJECT_DIMS].T + mean
    return _lloyd(sample, centroids, POLISH_ROUNDS)


def shift(residual: np.ndarray, codebook: np.ndarray, labels: np.ndarray, sign: float,
          chunk: int = 4096) -> None:
    """``residual += sign * codebook[labels]`` in place, in chunks that stay in cache (the
    whole-array expression builds a full-size temporary and is slower: BENCHMARKS.md,
    Design figures: residual shift in chunks)."""
    for start in range(0, residual.shape[0], chunk):
        part = residual[start:start + chunk]
        if sign > 0:
            part += codebook[labels[start:start + chunk]]
        else:
            part -= codebook[labels[start:start + chunk]]


def refine_deeper(residual: np.ndarray, codes: np.ndarray, books: list[np.ndarray],
                  passes: int, *, beam: int = 1, sample: int | None = None,
                  seed: int = 0) -> None:
    """Jointly improve levels 2..L of a plain residual quantizer, in place.

    Greedy training fits each level once, to what the levels above left; here each pass
    re-encodes levels 2..L (see :func:`encode_deeper`) and then moves every deeper centroid
    to the mean of what its rows need given all the other levels (block coordinate descent).
    Level-1 codes and centroids never change, so the top-level grouping (and neighbourhood
    agreement at depth 1) stays exactly as k-means made it. It ends with a final
    re-encoding, so ``codes`` are what :func:`registry.engine.encode` gives with the same
    ``beam``. ``residual`` is the final residual on the way in and on the way out. With more
    than ``sample`` rows the passes run on a seeded sample of that many (as the Lloyd rounds
    do), and only the final re-encoding on all.
    """
    if not refines(len(books), passes, beam):
        return
    part_r, part_c = residual, codes
    if passes and sample is not None and residual.shape[0] > sample:
        pick = np.sort(np.random.default_rng(seed).choice(residual.shape[0], sample,
                                                          replace=False))
        part_r, part_c = residual[pick], codes[pick]
    if part_r is not residual:
        # back to the level-1 residual while the codebooks are still the ones it was made
        # with; the whole is encoded again at the end
        add_back(residual, codes, books)
    refine_passes(part_r, part_c, books, passes, beam)
    if part_r is residual:
        reencode(residual, codes, books, beam)
    else:
        encode_deeper(residual, codes, books, beam)


def refines(levels: int, passes: int, beam: int) -> bool:
    """Whether :func:`refine_deeper` changes anything."""
    return levels >= 2 and (passes >= 1 or beam > 1)


def refine_passes(residual: np.ndarray, codes: np.ndarray, books: list[np.ndarray],
                  passes: int, beam: int = 1) -> None:
    """The passes of :func:`refine_deeper` on rows given with their final residuals:
    ``books`` 2..L move (in place), and so do ``residual`` and ``codes``."""
    for _ in range(passes):
        reencode(residual, codes, books, beam)
        for level in range(1, len(books)):
            shift(residual, books[level], codes[:, level], +1.0)
            update_means(books[level], residual, codes[:, level])
            shift(residual, books[level], codes[:, level], -1.0)


def reencode(residual: np.ndarray, codes: np.ndarray, books: list[np.ndarray],
             beam: int = 1) -> None:
    """Final residual -> levels 2..L encoded again (see :func:`encode_deeper`) and the new
    final residual, in place."""
    add_back(residual, codes, books)
    encode_deeper(residual, codes, books, beam)


def add_centroids(residual: np.ndarray, codes: np.ndarray, books: list[np.ndarray]) -> None:
    """Final residual -> the vector it was left from (the sum of its centroids added back,
    every level), in place."""
    for level, cb in enumerate(books):
        shift(residual, cb, codes[:, level], +1.0)


def add_back(residual: np.ndarray, codes: np.ndarray, books: list[np.ndarray]) -> None:
    """Final residual -> level-1 residual, in place."""
    for level in range(1, len(books)):
        shift(residual, books[level], codes[:, level], +1.0)


def encode_deeper(residual: np.ndarray, codes: np.ndarray, books: list[np.ndarray],
                  beam: int = 1, chunk: int = 8192,
                  products: list[np.ndarray] | None = None, final: bool = True,
                  residual_sq: np.ndarray | None = None) -> None:
    """Level-1 residual -> codes of levels 2..L and the final residual, in place.

    ``beam`` 1 is greedy: each level takes the centroid nearest to what the levels above
    left. A wider beam keeps that many best partial code paths per row from level 2 on and
    ends with the path whose final residual is smallest (the search of
    ``faiss.ResidualQuantizer``). Level 1 is never part of the search: a row's level-1 code
    stays its nearest centroid, so the top-level grouping means the same either way.

    ``products`` (beam search only): one (N, k) array per level 2..L, filled with the
    level-1 residual's inner products with that level's codebook, which the search computes.
    ``residual_sq`` (beam search only): (N,), filled with each row's squared final residual,
    the cost the search ranked its path by.
    ``final=False``: the caller wants the codes only; the beam search then leaves
    ``residual`` a level-1 residual.
    """
    if beam == 1 or len(books) == 2:  # (with one level to search, a beam is greedy)
        for level in range(1, len(books)):
            codes[:, level], _ = nearest(residual, books[level])
            shift(residual, books[level], codes[:, level], -1.0)
        return
    deeper = books[1:]
    # a path's residual is never formed: its inner products with the next codebook are the
    # level-1 residual's minus those of the centroids it took, from these tables
    cross = {(j, i): deeper[j] @ deeper[i].T for i in range(len(deeper)) for j in range(i)}
    sq = [np.einsum("ij,ij->i", b, b) for b in deeper]
    for start in range(0, residual.shape[0], chunk):
        part = residual[start:start + chunk]
        keep = None if products is None else [p[start:start + chunk] for p in products]
        codes[start:start + chunk, 1:], cost = _beam_search(part, deeper, cross, sq, beam, keep)
        if residual_sq is not None:
            residual_sq[start:start + chunk] = cost
    for level in range(1, len(books) if final else 1):
        shift(residual, books[level], codes[:, level], -1.0)


def _beam_search(x: np.ndarray, books: list[np.ndarray], cross: dict, sq: list[np.ndarray],
                 beam: int, keep: list[np.ndarray] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Codes (m, len(books)) of the path with the smallest final residual for each row, and
    that residual's squared norm (m,)."""
    m = x.shape[0]
    each = np.arange(m)
    rows = each[:, None]
    paths = np.zeros((m, 1, 0), dtype=np.int64)  # (rows, live paths, levels so far)
    cost = np.einsum("ij,ij->i", x, x)[:, None]  # squared residual of each live path
    for level, book in enumerate(books):
        k = book.shape[0]
        # kept products are computed where they are kept, and left as they are
        prod = x @ book.T if keep is None else np.matmul(x, book.T, out=keep[level])
        if level:
            taken = cross[0, level][paths[:, :, 0]]
            dist = np.subtract(prod[:, None, :], taken, out=taken)
            for j in range(1, level):
                dist -= cross[j, level][paths[:, :, j]]
            dist *= -2.0
        else:  # in place, unless ``prod`` is kept
            dist = np.multiply(prod, -2.0, out=None if keep is not None else prod)[:, None, :]
        dist += cost[:, :, None]
        dist += sq[level]
        dist = dist.reshape(m, -1)
        width = 1 if level == len(books) - 1 else min(beam, dist.shape[1])
        # the ``width`` best by repeated argmin: in order, ties to the lower index, and far
        # cheaper than argpartition along rows this short
        best = np.empty((m, width), dtype=np.int64)
        cost = np.empty((m, width), dtype=dist.dtype)
        for w in range(width):
            best[:, w] = dist.argmin(axis=1)
            cost[:, w] = dist[each, best[:, w]]
            dist[each, best[:, w]] = np.inf
        paths = np.concatenate([paths[rows, best // k], (best % k)[:, :, None]], axis=2)
    return paths[:, 0, :], cost[:, 0]
