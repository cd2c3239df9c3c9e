"""Stable retraining: residual k-means that starts from an earlier version's codebooks and
keeps the codes its items already had wherever the data allows. Numpy and faiss only.

k-means labels are arbitrary, so a cold retrain renumbers everything, and even a plain warm
start lets most items drift to a neighbouring centroid once the centroids move. Here, at
every level:

- the centroids start from the earlier codebook and are refined by k-means whose assignment
  step is *sticky*: an item that had a code keeps it while that centroid is nearly as close
  as the nearest one (squared distance within ``1 + stickiness`` of the best), so the
  centroids move towards where new items crowd in without dragging the old items away;
- the final assignment is sticky in the same way; an item whose code changes at one level is
  free at the levels below (its tuple has changed already, so it may as well fit best).

New items (no earlier code) always take the nearest centroid. With a beam (plain residuals,
the parent's width by default), the rows that did not keep their whole earlier tuple then have
levels 2..L encoded by the beam search, as a cold version's are; an earlier tuple still
comes back where it reconstructs the item within ``1 + stickiness`` of the tuple the
level-by-level pass found.

It also holds the balanced option: capacity-constrained k-means, where no code may take more
than ``1 + slack`` times its even share of the items.
"""

from __future__ import annotations

import faiss
import numpy as np

from .kmeans import nearest, update_means

# residuals shorter than this (1e-4 of a unit vector) are rounding noise
NOISE_NORM_SQ = 1e-8


def renormalize(r: np.ndarray) -> None:
    """Rescale the rows of ``r`` (C-contiguous float32) to unit length in place, as the
    ``normalized`` residual mode does at every level. A row that is rounding noise (an item
    sitting on its centroid) becomes zero instead: rescaled, that noise would pick its deeper
    codes at random."""
    r[np.einsum("ij,ij->i", r, r) < NOISE_NORM_SQ] = 0.0
    faiss.normalize_L2(r)


def sticky_assign(residual: np.ndarray, codebook: np.ndarray, keep: np.ndarray | None,
                  stickiness: float) -> np.ndarray:
    """Nearest centroids, except that rows keep their earlier code (``keep`` >= 0) while it
    is within ``1 + stickiness`` of the nearest one's squared distance."""
    labels, best = nearest(residual, codebook)
    if keep is None:
        return labels
    old = np.flatnonzero((keep >= 0) & (keep < codebook.shape[0]))
    if old.size:
        diff = residual[old] - codebook[keep[old]]
        d_old = np.einsum("ij,ij->i", diff, diff)
        stay = d_old <= (1.0 + stickiness) * best[old] + 1e-12
        labels[old[stay]] = keep[old[stay]]
    return labels


def anchored_kmeans(residual: np.ndarray, init: np.ndarray, keep: np.ndarray | None, *,
                    niter: int, stickiness: float, max_points: int, seed: int) -> np.ndarray:
    """Refine ``init`` centroids by ``niter`` rounds of k-means with sticky assignment, on a
    seeded sample of at most ``max_points`` rows. Empty codes keep their centroid."""
    rows = residual.shape[0]
    if rows > max_points:
        pick = np.sort(np.random.default_rng(seed).choice(rows, max_points, replace=False))
        sample = residual[pick]
        keep = None if keep is None else keep[pick]
    else:
        sample = residual
    centroids = np.array(init, dtype=np.float32, copy=True)
    for _ in range(niter):
        update_means(centroids, sample, sticky_assign(sample, centroids, keep, stickiness))
    return np.ascontiguousarray(centroids)


def capacity_assign(residual: np.ndarray, codebook: np.ndarray, capacity: int,
                    candidates: int = 16) -> np.ndarray:
    """Balanced assignment: every row goes to one of its ``candidates`` nearest centroids,
    no centroid takes more than ``capacity`` rows, and where a centroid is over-asked the
    rows closest to it win. Rows left without a place (rare) take their nearest centroid."""
    k = codebook.shape[0]
    m = min(candidates, k)
    index = faiss.IndexFlatL2(codebook.shape[1])
    index.add(codebook)
    dist, cand = index.search(residual, m)
    n = residual.shape[0]
    labels = np.full(n, -1, dtype=np.int64)
    pointer = np.zeros(n, dtype=np.int64)
    room = np.full(k, capacity, dtype=np.int64)
    for _ in range(m):
        todo = np.flatnonzero((labels < 0) & (pointer < m))
        if todo.size == 0:
            break
        want = cand[todo, pointer[todo]]
        order = np.lexsort((dist[todo, pointer[todo]], want))
        wanted = want[order]
        first = np.r_[0, np.flatnonzero(wanted[1:] != wanted[:-1]) + 1]
        rank = np.arange(wanted.size) - np.repeat(first, np.diff(np.r_[first, wanted.size]))
        accept = rank < room[wanted]
        labels[todo[order[accept]]] = wanted[accept]
        room -= np.bincount(wanted[accept], minlength=k)
        pointer[todo[order[~accept]]] += 1
    left = labels < 0
    labels[left] = cand[left, 0]
    return labels


def balanced_kmeans(residual: np.ndarray, init: np.ndarray, *, niter: int, slack: float,
                    max_points: int, seed: int) -> np.ndarray:
    """Refine centroids with k-means whose assignment is capacity-constrained (at most
    ``(1 + slack) * n / k`` rows a centroid), on a seeded sample of at most ``max_points``."""
    k = init.shape[0]
    rows = residual.shape[0]
    sample = residual
    if rows > max_points:
        sample = residual[np.sort(np.random.default_rng(seed).choice(rows, max_points,
                                                                     replace=False))]
    cap = capacity(sample.shape[0], k, slack)
    centroids = np.array(init, dtype=np.float32, copy=True)
    for _ in range(niter):
        update_means(centroids, sample, capacity_assign(sample, centroids, cap))
    return np.ascontiguousarray(centroids)


def capacity(rows: int, k: int, slack: float) -> int:
    return max(1, int(np.ceil((1.0 + slack) * rows / k)))
