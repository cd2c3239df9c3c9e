"""The comparison arithmetic on small hand-checked examples."""

from __future__ import annotations

import numpy as np
import pytest

from registry import compare


def test_churn_counts_rows_whose_prefix_differs():
    a = np.array([[0, 0, 0], [1, 2, 3], [1, 2, 3], [4, 4, 4]])
    b = np.array([[0, 0, 1], [1, 0, 3], [2, 2, 3], [4, 4, 4]])
    assert compare.churn(a, b) == [0.25, 0.5, 0.75]
    assert compare.churn(a, a) == [0.0, 0.0, 0.0]


def test_alignment_recovers_a_relabelling():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, size=(200, 2))
    perm = np.array([3, 0, 4, 1, 2])
    b = perm[a]
    b[:10, 0] = (b[:10, 0] + 1) % 5  # a little real disagreement
    aligned, maps = compare.align(a, b, (5, 5), (5, 5))
    np.testing.assert_array_equal(maps[1][perm], np.arange(5))
    assert compare.churn(a, aligned)[0] == pytest.approx(10 / 200)
    assert compare.churn(a, aligned)[1] == pytest.approx(10 / 200)


def test_alignment_with_more_labels_on_one_side():
    a = np.array([0, 0, 1, 1])
    b = np.array([2, 2, 0, 1])
    mapping = compare.align_level(a, b, 2, 3)
    assert mapping[2] == 0 and mapping[[0, 1]].tolist().count(1) == 1
    assert mapping[[0, 1]].tolist().count(-1) == 1


def test_js_divergence_bounds_and_a_known_value():
    p = np.array([0.5, 0.5, 0.0])
    assert compare.js_divergence(p, p) == 0.0
    assert compare.js_divergence(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1)
    q = np.array([0.25, 0.25, 0.5])
    m = (p + q) / 2
    kl_p = 0.5 * np.log2(0.5 / m[0]) * 2
    kl_q = 0.25 * np.log2(0.25 / m[0]) * 2 + 0.5 * np.log2(0.5 / m[2])
    assert compare.js_divergence(p, q) == pytest.approx((kl_p + kl_q) / 2)


def test_usage_and_centroid_movement():
    np.testing.assert_allclose(compare.usage(np.array([0, 0, 2]), 4), [2 / 3, 0, 1 / 3, 0])
    old = np.array([[0.0, 0.0], [1.0, 0.0]])
    new = np.array([[1.0, 0.5], [0.0, 0.0]])
    assert compare.centroid_movement(old, new) == {"mean": pytest.approx((1.25**0.5 + 1) / 2),
                                                   "max": pytest.approx(1.25**0.5)}
    assert compare.centroid_movement(old, new, np.array([1, 0])) == {
        "mean": pytest.approx(0.25), "max": pytest.approx(0.5)}


def test_drift_verdicts():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 8, size=(2000, 2))
    same = rng.integers(0, 8, size=(400, 2))
    d = compare.drift(a, same, (8, 8), error_a=np.ones(2000), error_b=np.ones(400))
    assert d.verdict == "ok" and d.error_ratio == pytest.approx(1.0)
    shifted = np.column_stack([rng.choice([3, 5], 400), rng.integers(0, 8, 400)])
    d = compare.drift(a, shifted, (8, 8))
    assert d.verdict == "retrain"
    assert {c.code for c in d.grew} == {3, 5}
    # each names a few rows of the new population that hold its code
    assert all(c.rows and (shifted[c.rows, 0] == c.code).all() for c in d.grew)
    assert "level 1 code usage diverges" in d.reasons[0]
    worse = compare.drift(a, same, (8, 8), error_a=np.ones(2000), error_b=np.full(400, 1.2))
    assert worse.verdict == "watch" and "quantised 1.20x worse" in worse.reasons[0]
    few = compare.drift(a, shifted[:10], (8, 8))
    assert few.verdict == "ok" and "too few to judge" in few.reasons[-1]
