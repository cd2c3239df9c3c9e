"""Collision strategies: nearest-free keeps IDs fully semantic; suffix only numbers them."""

from __future__ import annotations

import numpy as np
import pytest

from registry import collisions, engine
from registry.collisions import UP_CANDIDATES
from registry.engine import TrainParams
from registry.ids import CodeSpace
from registry.quality import semantic_unique_share
from registry.stable import NOISE_NORM_SQ

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
    with pytest.raises(InputError, match="balanced version cannot be trained from another"):
        reg.train(from_version=1, balance=0.2)
    with pytest.raises(InputError, match="balance slack must be"):
        reg.train(balance=-1)


def ref_nearest_free(xn, codes, books, mode, sizes, issued=(), prefer=None):
    """One row at a time, float64: the documented nearest-free rule."""
    space = CodeSpace(sizes)
    books = [b.astype(np.float64) for b in books]
    codes = codes.copy()
    n, levels = codes.shape
    packed = space.pack(codes).tolist()

    def residual(row, tup, depth):
        r = xn[row].astype(np.float64)
        for lvl in range(depth):
            r = r - books[lvl][tup[lvl]]
            if mode == "normalized":
                norm = np.linalg.norm(r)
                r = r / norm if norm * norm >= NOISE_NORM_SQ else r * 0
        return r

    taken = set(int(c) for c in issued)
    home = [-1] * n
    if prefer is not None:
        home = [space.pack_one(tuple(p)) if (p >= 0).all() else -1 for p in prefer]
    held = {h: row for row, h in enumerate(home) if h >= 0}

    def blocked(code, row):
        return code in taken or held.get(code, row) != row

    count = {}
    for c in packed:
        count[c] = count.get(c, 0) + 1
    crowded = [r for r in range(n) if count[packed[r]] > 1 or blocked(packed[r], r)]
    taken |= {packed[r] for r in range(n) if r not in set(crowded)}
    # the distance to the tuple itself: the last level's residual is not rescaled
    near = {r: float(np.square(residual(r, codes[r], levels - 1) - books[-1][codes[r, -1]])
                     .sum()) for r in crowded}
    crowded.sort(key=lambda r: (home[r] != packed[r], near[r], r))
    seen, movers = set(), []
    for r in crowded:
        if packed[r] not in seen and not blocked(packed[r], r):
            taken.add(packed[r])
        else:
            movers.append(r)
        seen.add(packed[r])
    k = sizes[-1]

    def nearest_free_under(r_up, head):  # head: packed depth L-1 prefix
        d = np.square(r_up - books[-1]).sum(axis=1)
        free = [c for c in np.argsort(d, kind="stable") if not blocked(head * k + c, -2)]
        return free[0] if free else None

    for r in movers:
        if home[r] >= 0 and not blocked(home[r], r):
            codes[r] = prefer[r]
            taken.add(home[r])
            continue
        own = packed[r] // k
        c = nearest_free_under(residual(r, codes[r], levels - 1), own)
        if c is not None:
            codes[r, -1] = c
            taken.add(own * k + c)
            continue
        if levels < 2:
            continue
        up = residual(r, codes[r], levels - 2)
        d = np.square(up - books[-2]).sum(axis=1)
        d[codes[r, -2]] = np.inf
        for alt in np.argsort(d, kind="stable")[:UP_CANDIDATES]:
            head = own // sizes[-2] * sizes[-2] + alt
            nxt = up - books[-2][alt]
            if mode == "normalized":
                nxt = nxt / np.linalg.norm(nxt)
            c = nearest_free_under(nxt, head)
            if c is not None:
                codes[r, -2:] = (alt, c)
                taken.add(head * k + c)
                break
    return codes


@pytest.mark.parametrize("dense", [True, False], ids=["bit-table", "sorted-and-set"])
@pytest.mark.parametrize("case", range(12))
def test_nearest_free_matches_a_row_by_row_reference(case, dense, monkeypatch):
    if not dense:  # the occupancy kept for code spaces too large for one bit per tuple
        monkeypatch.setattr(collisions, "DENSE_CODES", 0)
    rng = np.random.default_rng(case)
    sizes = [(4, 4, 4), (3, 5, 6), (8, 8), (2, 3, 4, 4), (40,), (5, 4, 6, 3)][case % 6]
    mode = "plain" if case < 6 else "normalized"
    n = int(np.prod(sizes) * rng.uniform(0.6, 1.4))
    centres = rng.standard_normal((6, 12))
    xn = centres[rng.integers(0, 6, n)] + 0.7 * rng.standard_normal((n, 12))
    xn = (xn / np.linalg.norm(xn, axis=1, keepdims=True)).astype(np.float32)
    books = [rng.standard_normal((k, 12)).astype(np.float32) * 0.5 for k in sizes]
    codes = np.stack([rng.integers(0, k, n) for k in sizes], axis=1)
    space = CodeSpace(sizes)
    # already issued tuples (incremental assignment), and tuples an earlier version gave
    issued = np.unique(space.pack(np.stack([rng.integers(0, k, n // 4) for k in sizes], 1)))
    prefer = np.full_like(codes, -1)
    had = rng.random(n) < 0.3
    prefer[had] = np.stack([rng.integers(0, k, had.sum()) for k in sizes], axis=1)
    same = had & (rng.random(n) < 0.5)  # some keep the tuple they had
    prefer[same] = codes[same]
    want = ref_nearest_free(xn, codes, books, mode, sizes, issued, prefer)
    got, moved = collisions.nearest_free(lambda rows: xn[rows], codes, books, mode, space,
                                         collisions.Occupancy(space, issued), prefer=prefer)
    np.testing.assert_array_equal(got, want)
    assert moved == int((got != codes).any(axis=1).sum()) > 0
    if mode == "plain" and len(sizes) >= 3:
        # from the level-1 residuals' inner products and the squared final residuals, as
        # the encoder hands them on: no vector is read
        level1 = [(xn - books[0][codes[:, 0]]) @ b.T for b in books[1:]]
        final = xn - sum(b[codes[:, lvl]] for lvl, b in enumerate(books))

        def no_vectors(rows):
            raise AssertionError("read the vectors")

        again, _ = collisions.nearest_free(
            no_vectors, codes, books, mode, space, collisions.Occupancy(space, issued),
            prefer=prefer, products=collisions.up_products(level1, codes, books),
            residual_sq=np.einsum("ij,ij->i", final, final))
        np.testing.assert_array_equal(again, want)


@pytest.mark.parametrize("dense", [True, False], ids=["bit-table", "sorted-and-set"])
@pytest.mark.parametrize("mode", ["plain", "normalized"])
@pytest.mark.parametrize("sizes", [(3, 4, 8), (2, 3, 4, 6)])
def test_nearest_free_matches_the_reference_when_prefixes_fill_up(sizes, mode, dense,
                                                                   monkeypatch):
    # most rows crowd onto two tuples: their prefixes have room when the movers start and
    # fill up while many of them still wait for a code there (those then look one level up,
    # ranked together)
    if not dense:
        monkeypatch.setattr(collisions, "DENSE_CODES", 0)
    rng = np.random.default_rng(len(sizes))
    n = 6 * sizes[-1] * sizes[-2]
    xn = rng.standard_normal((n, 12))
    xn = (xn / np.linalg.norm(xn, axis=1, keepdims=True)).astype(np.float32)
    books = [rng.standard_normal((k, 12)).astype(np.float32) * 0.5 for k in sizes]
    codes = np.stack([rng.integers(0, k, n) for k in sizes], axis=1)
    crowd = rng.random(n) < 0.8
    codes[crowd] = np.where(rng.random(crowd.sum()) < 0.5, 0, 1)[:, None]
    space = CodeSpace(sizes)
    want = ref_nearest_free(xn, codes, books, mode, sizes)
    got, _ = collisions.nearest_free(lambda rows: xn[rows], codes, books, mode, space,
                                     collisions.Occupancy(space))
    np.testing.assert_array_equal(got, want)
    # some rows of the crowded prefixes did leave them one level up
    assert ((got[:, -2] != codes[:, -2]) & crowd).sum() > sizes[-1]
