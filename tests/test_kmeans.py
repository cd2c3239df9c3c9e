"""k-means building blocks (seeding, centroid means, deeper-level refinement) against short
numpy references."""

from __future__ import annotations

import numpy as np
import pytest

from registry import InputError, defaults, engine, kmeans
from registry.engine import TrainParams

from .conftest import make_vectors


@pytest.fixture(scope="module")
def x():
    v = make_vectors(3000, dim=160, seed=5, clusters=20)
    return np.ascontiguousarray(v / np.linalg.norm(v, axis=1, keepdims=True), dtype=np.float32)


def test_update_means_matches_a_loop_and_keeps_empty_codes():
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((500, 7)).astype(np.float32)
    labels = rng.integers(0, 9, 500)
    labels[labels == 4] = 3  # code 4 holds no row
    centroids = rng.standard_normal((9, 7)).astype(np.float32)
    before = centroids.copy()
    kmeans.update_means(centroids, rows, labels)
    for c in range(9):
        expected = before[c] if c == 4 else rows[labels == c].astype(np.float64).mean(0)
        np.testing.assert_allclose(centroids[c], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("block", [kmeans.NEAREST_BLOCK, 256 * 7])
def test_nearest_matches_a_float64_reference(x, monkeypatch, block):
    """Labels and squared distances against float64 numpy, in one block of rows or in many
    (the second ends with a short block); a row sitting on its centroid is at distance 0."""
    monkeypatch.setattr(kmeans, "NEAREST_BLOCK", block)
    rng = np.random.default_rng(3)
    codebook = np.ascontiguousarray(x[rng.choice(x.shape[0], 256, replace=False)] +
                                    0.05 * rng.standard_normal((256, x.shape[1])),
                                    dtype=np.float32)
    codebook[17] = x[5]
    labels, dist = kmeans.nearest(x, codebook)
    x64, c64 = x.astype(np.float64), codebook.astype(np.float64)
    d = (x64 ** 2).sum(1)[:, None] - 2 * x64 @ c64.T + (c64 ** 2).sum(1)[None, :]
    want = d.argmin(axis=1)
    # float32 may swap two centroids that float64 finds within rounding of each other
    off = np.flatnonzero(labels != want)
    assert off.size <= 3
    np.testing.assert_allclose(d[off, labels[off]], d[off, want[off]], rtol=1e-5)
    np.testing.assert_allclose(dist, d[np.arange(x.shape[0]), want], rtol=1e-4, atol=1e-5)
    assert labels.dtype == np.int64 and dist.dtype == np.float32
    assert labels[5] == 17 and dist[5] == 0.0


def test_plusplus_is_seeded_and_picks_distinct_rows_far_apart():
    rng = np.random.default_rng(1)
    # four tight, far-apart groups: k-means++ must take one row from each
    centres = np.eye(4, 8, dtype=np.float32) * 10
    x = np.concatenate([c + 0.01 * rng.standard_normal((50, 8)).astype(np.float32)
                        for c in centres])
    a = kmeans.plusplus(x, 4, np.random.default_rng(7))
    b = kmeans.plusplus(x, 4, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert sorted(set(a // 50)) == [0, 1, 2, 3]
    # all rows equal: still k picks, no division by zero
    same = np.ones((10, 3), dtype=np.float32)
    assert kmeans.plusplus(same, 4, np.random.default_rng(0)).shape == (4,)


def test_principal_axes_are_orthonormal_and_sorted(x):
    mean, axes = kmeans.principal_axes(x)
    np.testing.assert_allclose(axes.T @ axes, np.eye(x.shape[1]), atol=1e-4)
    var = ((x - mean) @ axes).var(axis=0)
    assert (np.diff(var) <= 1e-6).all()
    np.testing.assert_allclose(mean, x.mean(0), atol=1e-6)


def test_train_level_beats_random_codebooks_and_is_deterministic(x):
    a = kmeans.train_level(x, 20, niter=10, seed=3, max_points_per_centroid=256)
    b = kmeans.train_level(x, 20, niter=10, seed=3, max_points_per_centroid=256)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (20, 160) and a.dtype == np.float32
    rows = np.random.default_rng(0).choice(len(x), 20, replace=False)
    assert kmeans.nearest(x, a)[1].sum() < 0.8 * kmeans.nearest(x, x[rows])[1].sum()
    # projected (160 > PROJECT_DIMS dims) and full-dimension training both find the 20 groups
    full = kmeans.train_level(x, 20, niter=10, seed=3, max_points_per_centroid=256,
                              project=False)
    assert abs(kmeans.nearest(x, full)[1].sum() / kmeans.nearest(x, a)[1].sum() - 1) < 0.1


def test_refinement_keeps_level1_lowers_error_and_matches_encode(x):
    plain = engine.train(x, TrainParams((20, 8, 8), seed=2, refine=0, collisions="suffix",
                                        beam=1))
    refined = engine.train(x, TrainParams((20, 8, 8), seed=2, refine=3, collisions="suffix",
                                          beam=1))
    np.testing.assert_array_equal(refined.codebooks[0], plain.codebooks[0])
    np.testing.assert_array_equal(refined.codes[:, 0], plain.codes[:, 0])
    assert refined.stats["reconstruction_error"] < plain.stats["reconstruction_error"]
    np.testing.assert_array_equal(engine.encode(x, refined.codebooks), refined.codes)
    # the reported error is the error of the codes it returns
    rebuilt = engine.decode(refined.codes, refined.codebooks)
    total = ((x - x.mean(0)) ** 2).sum()
    assert refined.stats["reconstruction_error"] == pytest.approx(
        ((x - rebuilt) ** 2).sum() / total, rel=1e-4)


def test_refinement_needs_plain_unbalanced_residuals():
    with pytest.raises(InputError, match="set `refine` to 0"):
        TrainParams((8, 4), residual="normalized", refine=2)
    with pytest.raises(InputError, match="plain residuals"):
        TrainParams((8, 4), balance=0.2, refine=1)
    assert TrainParams((8, 4), residual="normalized").refine == 0
    assert TrainParams((8, 4)).refine == defaults.REFINE
    assert TrainParams((8, 4), residual="normalized", refine=0).refine == 0


def test_refinement_on_a_sample_still_matches_encode_and_helps(x):
    base = engine.train(x, TrainParams((20, 8, 8), seed=4, refine=0, collisions="suffix",
                                       max_points_per_centroid=40))
    # 40 points per code x 20 codes = 800 of the 3000 rows refine the deeper levels
    refined = engine.train(x, TrainParams((20, 8, 8), seed=4, refine=3, collisions="suffix",
                                          max_points_per_centroid=40))
    np.testing.assert_array_equal(engine.encode(x, refined.codebooks, beam=2), refined.codes)
    assert refined.stats["reconstruction_error"] < base.stats["reconstruction_error"]


def test_train_seconds_are_timed_when_items_move(x):
    crowded = engine.train(x, TrainParams((4, 2, 2), seed=0))
    assert crowded.stats["moved"] > 0
    assert 0 <= crowded.stats["train_seconds"] < 60
