"""Quality figures: hand-computed on a small fixed example, and `registry stats` end to end."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from registry import engine, quality

CODES = np.array([[0, 0], [0, 0], [0, 1], [1, 1]])


def test_figures_on_a_small_fixed_example():
    assert quality.collision_rate(CODES) == pytest.approx(0.25)  # 3 tuples for 4 items
    assert quality.semantic_unique_share(CODES) == pytest.approx(0.5)
    head = quality.headline(CODES, (2, 4))
    assert head["largest_bucket"] == 2
    # bucket sizes 1, 1, 2: Gini = 2 * (1*1 + 2*1 + 3*2) / (3 * 4) - 4 / 3
    assert head["bucket_gini"] == pytest.approx(1.5 - 4 / 3)
    level1, level2 = head["levels"]
    assert level1["used"] == 1.0 and level2["used"] == 0.5
    assert level1["perplexity"] == pytest.approx(math.exp(-(0.75 * math.log(0.75)
                                                             + 0.25 * math.log(0.25))))
    assert level2["perplexity"] == pytest.approx(2.0)
    assert quality.gini(np.array([3, 3, 3])) == 0.0
    # the same figures from tuples and from their packed integers
    rng = np.random.default_rng(0)
    tuples = rng.integers(0, 6, size=(500, 3))
    packed = tuples @ np.array([36, 6, 1])
    assert quality.headline(tuples, (6, 6, 6))["largest_bucket"] == \
        np.unique(packed, return_counts=True)[1].max()
    assert quality.collision_rate(tuples) == quality.collision_rate(packed)


def test_neighbourhood_agreement_and_reconstruction_error_by_hand():
    # two tight pairs on the x and y axes; items 0, 1 share code 0 and items 2, 3 code 1
    x = np.array([[1, 0.01], [1, -0.01], [0.01, 1], [-0.01, 1]], dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    codes = np.array([[0, 0], [0, 1], [1, 0], [1, 0]])
    # each item's single nearest neighbour is its pair: depth 1 always agrees; depth 2 only
    # for items 2 and 3
    assert quality.neighbourhood_agreement(x, codes, neighbours=1, sample=4) == [1.0, 0.5]
    rebuilt = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=np.float32)
    total = np.square(x - x.mean(0)).sum()
    assert quality.reconstruction_error(x, rebuilt) == pytest.approx(
        np.square(x - rebuilt).sum() / total)
    labels = np.array(["a", "a", "b", "a"])
    assert quality.prefix_purity(codes, labels, 1) == pytest.approx(0.75)


def test_stats_command_and_stored_headline(trained, run):
    reg, v = trained
    out = json.loads(run("stats", "--sample", "200", "--json").output)
    assert out["version"] == 1 and out["items"] == 600
    assert out["semantic_unique_share"] == pytest.approx(v.stats["semantic_unique_share"])
    # before collision handling: the version's encoder on every item, as at train time
    raw = quality.collision_rate(engine.encode(reg.embeddings([f"item{i:05d}" for i in
                                                               range(600)]),
                                               reg.codebooks(1), v.residual, v.beam))
    assert out["raw_collision_rate"] == pytest.approx(raw) == v.stats["raw_collision_rate"]
    assert "collision_rate" not in out  # one name per figure (DESIGN: Metrics)
    assert len(out["neighbourhood_agreement"]) == 3 and out["agreement_sample"] == 200
    a1, a2, a3 = out["neighbourhood_agreement"]
    assert 1 >= a1 >= a2 >= a3 >= 0 and a1 > 0.8  # 12 clear clusters on 8 level-1 codes
    assert 0 < out["reconstruction_error"] < 1
    records = reg.get([f"item{i:05d}" for i in range(600)])
    tuples = [tuple(r.codes) for r in records]
    assert out["largest_bucket"] == max(tuples.count(t) for t in set(tuples))
    text = run("stats", "1").output
    assert "semantic-unique share" in text and "neighbourhood agreement" in text
    # versions shows the share as trained, beside the items the version holds now
    header, row = run("versions").output.splitlines()[:2]
    cells = dict(zip(re.split(r"\s{2,}", header), re.split(r"\s{2,}", row), strict=True))
    assert cells["unique at train"] == f"{v.stats['semantic_unique_share']:.1%}"
    assert cells["items now"] == "600"
    bad = run("stats", "--sample", "1")
    assert bad.exit_code == 1 and "sample must be" in bad.output


@pytest.mark.parametrize("residual", ["plain", "normalized"])
def test_a_warm_starts_raw_collision_rate_is_of_the_nearest_codes(reg, residual):
    """A retrain --from keeps earlier codes where it can: its raw collision rate is still
    one of the codes the version's encoder gives (as stats measures it), not of the kept."""
    from .conftest import make_keys, make_vectors

    reg.add(make_keys(600), make_vectors(600))
    reg.train(codebook_size=[8, 4, 4], seed=1, residual=residual, name="one")
    reg.add(make_keys(200, start=600), make_vectors(200, seed=9) + 0.3)
    summary = reg.train(from_version="one", name="two")
    v = summary.version
    x = reg.embeddings(make_keys(800))
    raw = quality.collision_rate(engine.encode(x, reg.codebooks("two"), v.residual, v.beam))
    assert summary.raw_collision_rate == pytest.approx(raw)
    assert reg.stats("two", sample=50).figures["raw_collision_rate"] == pytest.approx(raw)


def test_figures_over_chunks_match_a_numpy_reference():
    """Reconstruction error and neighbour agreement added a chunk at a time: the figures of
    the whole array, and of a plain numpy computation of their definitions."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((500, 12)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    rebuilt = x + 0.1 * rng.standard_normal(x.shape).astype(np.float32)
    codes = rng.integers(0, 3, size=(500, 2))
    sums = quality.ReconstructionSums()
    near = quality.Neighbours(x.__getitem__, 500, sample=40, neighbours=5, seed=2)
    for at in range(0, 500, 99):  # the last chunk, of 5 rows, is shorter than 5 + 1
        sums.add(x[at:at + 99], rebuilt[at:at + 99])
        near.add(x[at:at + 99], at)
    want = np.square(x - rebuilt).sum() / np.square(x - x.mean(axis=0)).sum()
    assert sums.value() == pytest.approx(want, rel=1e-5)
    assert sums.value() == pytest.approx(quality.reconstruction_error(x, rebuilt), rel=1e-9)
    # exact neighbours by brute force: each sampled row's 5 most similar other rows
    rows = np.random.default_rng(2).choice(500, 40, replace=False)
    sims = x[rows] @ x.T
    sims[np.arange(40), rows] = -np.inf
    hits = np.argsort(-sims, axis=1)[:, :5]
    want = [float(np.mean([(codes[h, :d] == codes[r, :d]).all(axis=1).mean()
                           for r, h in zip(rows, hits, strict=True)])) for d in (1, 2)]
    assert near.agreement(codes) == pytest.approx(want) == near.agreement(codes)
    assert quality.neighbourhood_agreement(x, codes, sample=40, neighbours=5, seed=2) == \
        pytest.approx(want)


def test_reconstruction_error_of_vectors_all_alike_is_zero():
    x = np.tile(np.array([[0.6, 0.8]], dtype=np.float32), (1000, 1))
    assert quality.reconstruction_error(x, x + 0.01) == 0.0
