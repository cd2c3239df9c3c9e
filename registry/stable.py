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

New items (no earlier code) always take the nearest centroid.
"""

from __future__ import annotations

import faiss
import numpy as np


def nearest(residual: np.ndarray, codebook: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, squared distances) of the nearest centroid of each row."""
    index = faiss.IndexFlatL2(codebook.shape[1])
    index.add(codebook)
    dist, labels = index.search(residual, 1)
    return labels.ravel().astype(np.int64), dist.ravel()


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
    k = init.shape[0]
    rows = residual.shape[0]
    if rows > max_points:
        pick = np.sort(np.random.default_rng(seed).choice(rows, max_points, replace=False))
        sample = residual[pick]
        keep = None if keep is None else keep[pick]
    else:
        sample = residual
    centroids = np.array(init, dtype=np.float32, copy=True)
    for _ in range(niter):
        labels = sticky_assign(sample, centroids, keep, stickiness)
        order = np.argsort(labels, kind="stable")
        counts = np.bincount(labels, minlength=k)
        filled = np.flatnonzero(counts)
        starts = np.concatenate([[0], np.cumsum(counts[filled])[:-1]])
        sums = np.add.reduceat(sample[order].astype(np.float64), starts, axis=0)
        centroids[filled] = (sums / counts[filled, None]).astype(np.float32)
    return np.ascontiguousarray(centroids)
