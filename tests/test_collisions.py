"""Collision strategies: nearest-free keeps IDs fully semantic; suffix only numbers them."""

from __future__ import annotations

import numpy as np
import pytest

from registry import engine
from registry.engine import TrainParams
from registry.ids import CodeSpace
from registry.quality import semantic_unique_share

from .conftest import make_keys, make_vectors

SIZES = (16, 16, 16)


@pytest.fixture(scope="module")
def x():
    return make_vectors(2000, dim=24, seed=7)


@pytest.fixture(scope="module")
def both(x):
    greedy = engine.train(x, TrainParams(SIZES, seed=1, collisions="suffix"))
    free = engine.train(x, TrainParams(SIZES, seed=1, collisions="nearest-free"))
    return greedy, free


def test_nearest_free_makes_ids_unique_where_there_is_room(both):
    greedy, free = both
    # 12 clusters share 16 level-1 codes: a big cluster can hold more items than the 256
    # tuples under its level-1 code, and level 1 never moves, so a few collisions remain
    assert semantic_unique_share(greedy.codes) < 0.75
    assert semantic_unique_share(free.codes) > 0.94
    assert free.stats["moved"] == int((free.codes != greedy.codes).any(axis=1).sum()) > 0
    # the codebooks are the same: only the crowded items moved
    for a, b in zip(greedy.codebooks, free.codebooks, strict=True):
        np.testing.assert_array_equal(a, b)


def test_moved_items_stay_under_their_prefix_unless_it_is_full(both):
    greedy, free = both
    space = CodeSpace(SIZES)
    taken = set(space.pack(free.codes).tolist())
    left = (free.codes[:, :2] != greedy.codes[:, :2]).any(axis=1)
    for row in np.flatnonzero(left):
        head = tuple(greedy.codes[row, :2])
        assert all(space.pack_one((*head, c)) in taken for c in range(SIZES[-1])), row
    assert (free.codes[:, 0] == greedy.codes[:, 0]).all()  # level 1 never changes


def test_a_moved_item_takes_the_nearest_code_that_was_free(both, x):
    greedy, free = both
    space = CodeSpace(SIZES)
    taken = set(space.pack(free.codes).tolist())
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    books = free.codebooks
    moved = np.flatnonzero((free.codes[:, :2] == greedy.codes[:, :2]).all(axis=1)
                           & (free.codes[:, 2] != greedy.codes[:, 2]))
    assert moved.size > 0
    for row in moved:
        r = xn[row] - books[0][free.codes[row, 0]] - books[1][free.codes[row, 1]]
        d = np.square(r - books[2]).sum(axis=1)
        closer = np.flatnonzero(d < d[free.codes[row, 2]] - 1e-6)
        # every code closer than the one it got was taken (taken codes stay taken)
        assert all(space.pack_one((*free.codes[row, :2], c)) in taken for c in closer)


def test_nearest_free_is_deterministic_and_lowers_fit_only_a_little(both, x):
    _, free = both
    again = engine.train(x, TrainParams(SIZES, seed=1))
    np.testing.assert_array_equal(again.codes, free.codes)
    greedy = both[0]
    # on this crowded toy catalog almost a third of the items move; the fit suffers
    assert greedy.stats["reconstruction_error"] < free.stats["reconstruction_error"] < \
        greedy.stats["reconstruction_error"] * 1.5


def test_when_no_code_is_free_the_number_remains(x):
    from registry.quality import collision_rate

    # 300 items for 8 tuples: every tuple gets used, and the rest share (they will be told
    # apart by their disambiguation numbers)
    crowded = engine.train(x[:300], TrainParams((4, 2), seed=0))
    assert len({tuple(c) for c in crowded.codes}) == 8
    assert collision_rate(crowded.codes) == pytest.approx(1 - 8 / 300)


def test_incremental_assignment_moves_new_items_only(reg):
    keys, vectors = make_keys(700), make_vectors(700, seed=2)
    reg.add(keys[:500], vectors[:500])
    v = reg.train(codebook_size=[8, 8, 8], seed=4).version
    assert v.params["collisions"] == "nearest-free"
    reg.freeze(1)
    before = {r.key: r.id for r in reg.get(keys[:500], 1)}
    reg.add(keys[500:], vectors[500:])
    reg.assign(1, batch_size=64)
    after = {r.key: r.id for r in reg.get(keys, 1)}
    assert all(after[k] == before[k] for k in before)  # nobody already there moved
    tuples = {i.rsplit("-", 1)[0] for i in after.values()}
    assert len(after) == 700 and len(set(after.values())) == 700
    # the same items with suffix collisions share far more tuples
    greedy_tuples = {tuple(c) for c in engine.encode(vectors, reg.codebooks(1), beam=v.beam)}
    assert len(tuples) > len(greedy_tuples) + 100
    greedy = engine.encode(vectors[500:], reg.codebooks(1), beam=v.beam)
    got = np.array([r.codes for r in reg.get(keys[500:], 1)])
    assert (got[:, 0] == greedy[:, 0]).all()  # moves keep the level-1 code



def test_assign_into_a_full_nearest_free_version_numbers_on(reg):
    # 8 tuples for 300 items: every new item lands on a taken tuple, and its number must
    # come after the largest one issued there (read from the database), batch after batch
    keys, vectors = make_keys(360), make_vectors(360, dim=16, seed=9)
    reg.add(keys[:300], vectors[:300])
    reg.train(codebook_size=[4, 2], seed=0)
    reg.freeze(1)
    reg.add(keys[300:], vectors[300:])
    reg.assign(1, batch_size=16)
    records = reg.get(keys, 1)
    by_tuple: dict[str, list[int]] = {}
    for r in records:
        by_tuple.setdefault(r.id.rsplit("-", 1)[0], []).append(r.disambiguation)
    assert len(by_tuple) == 8
    assert all(sorted(n) == list(range(len(n))) for n in by_tuple.values())

def test_suffix_versions_only_number_collisions(reg):
    keys, vectors = make_keys(400), make_vectors(400, seed=3)
    reg.add(keys[:300], vectors[:300])
    reg.train(codebook_size=[8, 8], collisions="suffix")
    reg.add(keys[300:], vectors[300:])
    reg.assign(1)
    got = np.array([r.codes for r in reg.get(keys, 1)])
    np.testing.assert_array_equal(got, engine.encode(vectors, reg.codebooks(1)))


def test_balanced_codebooks_cap_every_code(x):
    from registry import quality

    plain = engine.train(x, TrainParams(SIZES, seed=1, collisions="suffix"))
    balanced = engine.train(x, TrainParams(SIZES, seed=1, collisions="suffix", balance=0.1))
    cap = int(np.ceil(1.1 * 2000 / 16))
    assert np.bincount(plain.codes[:, 0], minlength=16).max() > cap
    assert np.bincount(balanced.codes[:, 0], minlength=16).max() <= cap
    spread = [lvl["perplexity"] for lvl in quality.level_usage(balanced.codes, SIZES)]
    assert spread[0] > quality.level_usage(plain.codes, SIZES)[0]["perplexity"]


def test_balance_is_kept_with_the_version_and_refused_with_from(reg):
    from registry import InputError

    reg.add(make_keys(800), make_vectors(800, seed=9))
    # suffix: the capacity shows as it is (nearest-free may move items one level up, which
    # with two levels is level 1)
    v = reg.train(codebook_size=[8, 8], balance=0.2, collisions="suffix").version
    assert v.params["balance"] == 0.2 and v.params["collisions"] == "suffix"
    counts = np.bincount([r.codes[0] for r in reg.get(make_keys(800), 1)], minlength=8)
    assert counts.max() <= int(np.ceil(1.2 * 800 / 8))
    with pytest.raises(InputError, match="balanced version cannot be trained --from"):
        reg.train(from_version=1, balance=0.2)
    with pytest.raises(InputError, match="balance slack must be"):
        reg.train(balance=-1)
