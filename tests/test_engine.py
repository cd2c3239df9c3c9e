"""The residual k-means engine against a short numpy reference (as faiss's contrib tests do)."""

from __future__ import annotations

import numpy as np
import pytest

from registry import InputError, defaults, engine
from registry.engine import TrainParams

from .conftest import make_vectors


def ref_encode(x, codebooks, residual="plain", follow=None):
    """Greedy residual quantisation in float64 numpy: the definition, spelled out. With
    ``follow`` (codes), the residual follows those codes instead of the reference's own, and
    the distance gap to the best code is returned too."""
    r = x.astype(np.float64)
    r /= np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-30)
    codes, gaps = [], []
    for level, cb in enumerate(codebooks):
        cb = cb.astype(np.float64)
        d2 = (r**2).sum(1)[:, None] - 2 * r @ cb.T + (cb**2).sum(1)[None, :]
        c = d2.argmin(1)
        codes.append(c)
        chosen = c if follow is None else follow[:, level]
        gaps.append(d2[np.arange(len(r)), chosen] - d2.min(1))
        r = r - cb[chosen]
        if residual == "normalized":
            norm = np.linalg.norm(r, axis=1, keepdims=True)
            r = np.where(norm < 1e-4, 0.0, r / np.maximum(norm, 1e-30))
    return np.stack(codes, 1) if follow is None else (np.stack(codes, 1), np.stack(gaps, 1))


def ref_beam(x, codebooks, beam):
    """Beam search over levels 2..L in float64 numpy, every path's residual spelled out:
    level 1 nearest, then the ``beam`` best partial paths, then the best final one."""
    r = x.astype(np.float64)
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    books = [cb.astype(np.float64) for cb in codebooks]
    first = (-2 * r @ books[0].T + (books[0] ** 2).sum(1)).argmin(1)
    n = len(r)
    paths = first[:, None, None]  # (rows, paths, levels)
    resid = (r - books[0][first])[:, None, :]
    for level, cb in enumerate(books[1:], start=1):
        width = 1 if level == len(books) - 1 else beam
        # every extension of every path: (rows, paths * codes)
        ext = resid[:, :, None, :] - cb[None, None, :, :]
        d = (ext ** 2).sum(-1).reshape(n, -1)
        best = np.argsort(d, axis=1, kind="stable")[:, :width]
        parent, code = best // len(cb), best % len(cb)
        rows = np.arange(n)[:, None]
        paths = np.concatenate([paths[rows, parent], code[:, :, None]], axis=2)
        resid = ext.reshape(n, -1, r.shape[1])[rows, best]
    return paths[:, 0, :], (resid[:, 0, :] ** 2).sum(1)


def ref_decode(codes, codebooks):
    return sum(cb.astype(np.float64)[codes[:, i]] for i, cb in enumerate(codebooks))


@pytest.fixture(scope="module")
def x():
    return make_vectors(2000, dim=24, seed=7)


@pytest.mark.parametrize("residual", ["plain", "normalized"])
def test_train_codes_match_reference_encoding(x, residual):
    result = engine.train(x, TrainParams((16, 8, 4), seed=1, residual=residual,
                                         collisions="suffix", beam=1))
    assert [cb.shape for cb in result.codebooks] == [(16, 24), (8, 24), (4, 24)]
    assert result.codes.shape == (2000, 3)
    np.testing.assert_array_equal(engine.encode(x, result.codebooks, residual), result.codes)
    # every code faiss chose is the nearest one, up to float32 rounding in near-ties ...
    ref, gaps = ref_encode(x, result.codebooks, residual, follow=result.codes)
    assert gaps.max() < 1e-5
    # ... and near-ties are rare: the float64 reference agrees on almost every code
    assert (ref == result.codes).mean() > 0.998


def test_decode_matches_reference_and_reconstruction_error(x):
    result = engine.train(x, TrainParams((16, 8, 4), seed=1))
    decoded = engine.decode(result.codes, result.codebooks)
    np.testing.assert_allclose(decoded, ref_decode(result.codes, result.codebooks), atol=1e-5)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    err = ((xn - decoded) ** 2).sum() / ((xn - xn.mean(0)) ** 2).sum()
    assert result.stats["reconstruction_error"] == pytest.approx(err, rel=1e-4)
    # each level must remove error: one level alone reconstructs worse than three
    one = engine.train(x, TrainParams((16,), seed=1))
    assert one.stats["reconstruction_error"] > result.stats["reconstruction_error"]


def test_same_seed_same_codes_other_seed_other_codebooks(x):
    a = engine.train(x, TrainParams((16, 8), seed=5))
    b = engine.train(x, TrainParams((16, 8), seed=5))
    c = engine.train(x, TrainParams((16, 8), seed=6))
    np.testing.assert_array_equal(a.codes, b.codes)
    for ca, cb in zip(a.codebooks, b.codebooks, strict=True):
        np.testing.assert_array_equal(ca, cb)
    assert not np.array_equal(a.codebooks[0], c.codebooks[0])


def test_caller_arrays_are_never_modified(x):
    before = x.copy()
    result = engine.train(x, TrainParams((8, 4), seed=0))
    books_before = [cb.copy() for cb in result.codebooks]
    engine.encode(x, result.codebooks)
    engine.decode(result.codes, result.codebooks)
    np.testing.assert_array_equal(x, before)
    for cb, cb0 in zip(result.codebooks, books_before, strict=True):
        np.testing.assert_array_equal(cb, cb0)


def test_overwrite_consumes_the_input_instead_of_copying(x):
    mine = x.copy()
    engine.train(mine, TrainParams((8,), seed=0), overwrite=True)
    # the array was used as the working residual, so it no longer holds the input
    assert not np.array_equal(mine, x)


def test_float64_and_non_contiguous_inputs_give_the_same_codes(x):
    params = TrainParams((8, 4), seed=0, collisions="suffix")
    result = engine.train(x, params)
    wide = np.asfortranarray(x.astype(np.float64))
    np.testing.assert_array_equal(engine.encode(wide, result.codebooks, beam=params.beam),
                                  result.codes)


def test_per_level_codebook_sizes(x):
    result = engine.train(x, TrainParams((32, 4), seed=0))
    assert result.codes[:, 0].max() < 32 and result.codes[:, 1].max() < 4
    assert len(np.unique(result.codes[:, 0])) > 16


def test_fewer_items_than_codes_is_a_clear_error():
    with pytest.raises(InputError, match="at least 64 items for 64 codes, but there are only 50"):
        engine.train(make_vectors(50), TrainParams((64,)))


def test_few_items_per_code_is_reported_not_printed(capfd):
    result = engine.train(make_vectors(300), TrainParams((16,), seed=0))
    assert any("under 39 per code" in w for w in result.stats["warnings"])
    assert "WARNING" not in capfd.readouterr().err


@pytest.mark.parametrize("bad, message", [
    (np.array([[1.0, np.nan], [0.0, 1.0]]), "row 1: vector contains NaN"),
    (np.array([[1.0, 0.0], [np.inf, 1.0]]), "row 2: vector contains NaN or infinity"),
    (np.zeros((0, 4)), "non-empty 2-d array"),
    (np.ones(4), "non-empty 2-d array"),
    (np.array([["a", "b"]]), "real numbers"),
])
def test_bad_vectors(bad, message):
    with pytest.raises(InputError, match=message):
        engine.encode(bad, [np.ones((2, bad.shape[-1] if bad.ndim == 2 else 4), np.float32)])


def test_bad_vector_row_is_counted_across_check_blocks():
    # rows are checked a block at a time (2**20 numbers): the row number stays the row's own
    bad = np.ones((300_000, 4), np.float32)
    bad[280_000, 3] = np.inf
    with pytest.raises(InputError, match="row 280001: vector contains NaN"):
        engine.prepare(bad)


def test_encode_checks_codebook_dimension(x):
    with pytest.raises(InputError, match="dimension 24"):
        engine.encode(x, [np.ones((4, 8), np.float32)])


def test_normalized_codes_cannot_be_decoded(x):
    result = engine.train(x, TrainParams((8,), residual="normalized"))
    with pytest.raises(InputError, match="cannot be decoded"):
        engine.decode(result.codes, result.codebooks, residual="normalized")


@pytest.mark.parametrize("kwargs, message", [
    ({"codebook_sizes": (1,)}, "between 2 and"),
    ({"codebook_sizes": (256,) * 9}, "levels must be between 1 and 8"),
    ({"codebook_sizes": (65536,) * 5}, "more than 2\\^62"),
    ({"codebook_sizes": (8,), "residual": "fancy"}, "residual mode"),
    ({"codebook_sizes": (8,), "niter": 0}, "iterations"),
    ({"codebook_sizes": (8,), "seed": -1}, "seed"),
])
def test_bad_params(kwargs, message):
    with pytest.raises(InputError, match=message):
        TrainParams(**kwargs)


def test_beam_is_the_default_for_plain_cold_training_only():
    assert TrainParams((16, 8)).beam == defaults.BEAM > 1
    assert TrainParams((16, 8), residual="normalized").beam == 1
    assert TrainParams((16, 8), balance=0.25).beam == 1
    for bad, match in [(dict(beam=0), "between 1 and"), (dict(beam=17), "between 1 and"),
                       (dict(beam=2, residual="normalized"), "plain residuals"),
                       (dict(beam=2, balance=0.5), "plain residuals")]:
        with pytest.raises(InputError, match=match):
            TrainParams((16, 8), **bad)
    with pytest.raises(InputError, match="beam width 2 does not apply"):
        engine.encode(make_vectors(10), [np.eye(24, dtype=np.float32)] * 2, "normalized", 2)


@pytest.mark.parametrize("beam", [2, 3])
def test_trained_codes_are_the_beam_search_of_the_reference(x, beam):
    params = TrainParams((16, 8, 4), seed=1, collisions="suffix", beam=beam)
    result = engine.train(x, params)
    # encode gives exactly what training gave, and both follow the float64 reference
    np.testing.assert_array_equal(engine.encode(x, result.codebooks, beam=beam), result.codes)
    ref, ref_err = ref_beam(x, result.codebooks, beam)
    assert (ref == result.codes).mean() > 0.998
    err = ((engine.prepare(x) - engine.decode(result.codes, result.codebooks)) ** 2).sum(1)
    np.testing.assert_allclose(err, ref_err, atol=2e-5)
    # level 1 is never part of the search: always the nearest centroid
    np.testing.assert_array_equal(result.codes[:, 0], ref_encode(x, result.codebooks[:1])[:, 0])


def test_beam_search_never_ends_worse_than_greedy_and_a_full_beam_is_exhaustive(x):
    books = engine.train(x, TrainParams((16, 8, 4), seed=3, collisions="suffix",
                                        beam=1)).codebooks
    xn = engine.prepare(x)

    def per_row(codes):
        return ((xn - engine.decode(codes, books)) ** 2).sum(1)

    greedy = per_row(engine.encode(x, books))
    beam2 = per_row(engine.encode(x, books, beam=2))
    # with 3 levels the greedy path is among the two kept at level 2
    assert (beam2 <= greedy + 1e-5).all() and beam2.sum() < greedy.sum()
    # a beam as wide as level 2 keeps every path: the best (level 2, level 3) pair by brute force
    full = engine.encode(x, books, beam=8)
    r1 = xn - books[0][full[:, 0]]
    pairs = books[1][:, None, :] + books[2][None, :, :]  # (8, 4, dim)
    d = ((r1[:, None, None, :] - pairs[None]) ** 2).sum(-1).reshape(len(x), -1)
    np.testing.assert_allclose(per_row(full), d.min(1), atol=2e-5)


def test_warm_start_takes_no_refinement_but_encodes_with_its_beam(x):
    books = engine.train(x, TrainParams((16, 8, 4), seed=0)).codebooks
    with pytest.raises(InputError, match="refine: does not apply to a warm start"):
        engine.train(x, TrainParams((16, 8, 4), seed=0), warm=books)
    for beam in (1, 3):
        warm = engine.train(x, TrainParams((16, 8, 4), seed=0, refine=0, beam=beam,
                                           collisions="suffix"), warm=books)
        np.testing.assert_array_equal(engine.encode(x, warm.codebooks, beam=beam), warm.codes)



def test_a_warm_start_from_a_beam_version_keeps_its_tuples(x):
    params = TrainParams((16, 8, 4), seed=0, collisions="suffix")
    parent = engine.train(x, params)
    grown = np.concatenate([x, make_vectors(200, dim=24, seed=8)])
    keep = np.full((len(grown), 3), -1, dtype=np.int64)
    keep[:len(x)] = parent.codes
    warm = {beam: engine.train(grown, TrainParams((16, 8, 4), seed=0, niter=5, refine=0,
                                                  beam=beam, collisions="suffix"),
                               warm=parent.codebooks, keep=keep, stickiness=0.02)
            for beam in (1, params.beam)}
    same = {b: (w.codes[:len(x)] == parent.codes).all(axis=1) for b, w in warm.items()}
    # the beam's level-2 choices are not the nearest level-2 centroids, yet the items keep
    # their whole tuples as often as with greedy encoding, and the new items are encoded
    # as the version's encoder does
    assert same[params.beam].mean() > 0.85
    assert same[params.beam].mean() >= same[1].mean() - 0.01
    new = warm[params.beam].codes[len(x):]
    np.testing.assert_array_equal(
        new, engine.encode(grown[len(x):], warm[params.beam].codebooks, beam=params.beam))


def test_encode_hands_on_the_level_1_residuals_inner_products(x):
    result = engine.train(x, TrainParams((8, 6, 5, 4), seed=3, beam=2))
    books = result.codebooks
    kept = engine.Kept()
    codes = engine.encode(x, books, "plain", 2, kept=kept)
    np.testing.assert_array_equal(codes, engine.encode(x, books, "plain", 2))
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    level1 = xn - books[0][codes[:, 0]]
    assert len(kept.products) == 3
    for p, b in zip(kept.products, books[1:], strict=True):
        np.testing.assert_allclose(p, level1 @ b.T, atol=1e-5)
    # and each row's squared final residual under the codes it returns
    final = xn - engine.decode(codes, books)
    np.testing.assert_allclose(kept.residual_sq, np.einsum("ij,ij->i", final, final),
                               atol=1e-5)
    # greedy encoding, two levels or normalized residuals compute none to hand on
    for args in [("plain", 1), ("normalized", 1)]:
        none = engine.Kept()
        engine.encode(x, books, *args, kept=none)
        assert none == engine.Kept()
    none = engine.Kept()
    engine.encode(x, books[:2], "plain", 2, kept=none)
    assert none == engine.Kept()
