"""Collision strategies: what happens when two items get the same code tuple.

``suffix`` (TIGER's) leaves both on the tuple and tells them apart by the disambiguation
number alone, which a generative model cannot guess for an item it has not memorised.

``nearest-free`` keeps every ID fully semantic where it can: in each crowded tuple one item
stays (the one an earlier version gave it, else the closest to the tuple), and each other
item moves to the closest free last-level code under the same prefix; when that prefix is
full, to the closest free code under the next-best prefix one level up. Only when both fail
does it keep the tuple and a disambiguation number. The first L-2 codes never change. Items
that already hold a tuple (in the database, for incremental assignment) never move. Numpy and
faiss only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import numpy as np

from .ids import CodeSpace
from .stable import renormalize

STRATEGIES = ("nearest-free", "suffix")
# rows -> the inner products of their residuals with the codebooks of levels L-1 and L
Products = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
# how many next-best codes one level up are tried when a whole prefix is full
UP_CANDIDATES = 8
# movers whose distances to every last-level code are computed at once
MOVER_CHUNK = 8192
# code spaces up to this many tuples keep their occupancy as one boolean per tuple (64 MB)
DENSE_CODES = 1 << 26


def find_sorted(ordered: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position, found) of each of ``values`` in the sorted array ``ordered``: where it
    sits when found (elsewhere, where it would go)."""
    at = np.searchsorted(ordered, values)
    found = at < ordered.size
    found[found] = ordered[at[found]] == values[found]
    return at, found


class Occupancy:
    """The code tuples already taken: ``issued``, a sorted array of the packed codes a
    version holds already (for incremental assignment; read once per run, see
    registry.assigning), plus the tuples taken during this run.

    Up to DENSE_CODES possible tuples (3 x 256 has 16.7M) this is one boolean per tuple, so
    that a whole table of prefixes is one slice (``dense`` gives that table ready made, and
    is then changed in place); beyond, the issued array and a set.
    """

    def __init__(self, space: CodeSpace, issued: np.ndarray | None = None, *,
                 dense: np.ndarray | None = None):
        self.space = space
        self.last = space.sizes[-1]
        issued = np.empty(0, dtype=np.int64) if issued is None else issued
        total = math.prod(space.sizes)
        self.dense: np.ndarray | None = None
        if dense is not None:  # the table itself, given (and taken over)
            if dense.shape != (total,) or total > DENSE_CODES:
                raise ValueError("a dense occupancy has one boolean per tuple")
            self.dense = dense
        elif total <= DENSE_CODES:
            self.dense = np.zeros(total, dtype=bool)
            self.dense[issued] = True
            issued = issued[:0]
        self.issued = issued
        self.taken: set[int] = set()  # without the dense table
        # tuples an earlier version gave to rows of this run: held for them
        self.reserved: dict[int, int] = {}

    def taken_mask(self, packed: np.ndarray) -> np.ndarray:
        """Which of ``packed`` are given (not counting what is held for rows)."""
        if self.dense is not None:
            return self.dense[packed]
        _, ok = find_sorted(self.issued, packed)
        if self.taken:
            ok |= np.fromiter(map(self.taken.__contains__, packed.tolist()), bool, packed.size)
        return ok

    def held_for_others(self, packed: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Which of ``packed`` are held for a row other than the one beside it."""
        if not self.reserved:
            return np.zeros(packed.size, dtype=bool)
        return np.fromiter((self.reserved.get(p, r) != r for p, r in
                            zip(packed.tolist(), rows.tolist(), strict=True)), bool, packed.size)

    def is_taken(self, packed: int, row: int = -1) -> bool:
        """Whether ``packed`` is given, or held for a row other than ``row``."""
        if self.reserved.get(packed, row) != row:
            return True
        if self.dense is not None:
            return bool(self.dense[packed])
        if packed in self.taken:
            return True
        at = int(np.searchsorted(self.issued, packed))
        return at < self.issued.size and int(self.issued[at]) == packed

    def take(self, packed: int) -> None:
        if self.dense is not None:
            self.dense[packed] = True
        else:
            self.taken.add(packed)

    def take_many(self, packed: np.ndarray) -> None:
        if self.dense is not None:
            self.dense[packed] = True
        else:
            self.taken.update(packed.tolist())

    def taken_under(self, prefix: int) -> np.ndarray:
        """(k_last,) booleans: which last-level codes under the depth-(L-1) ``prefix`` are
        given or held."""
        return self.table(np.array([prefix], dtype=np.int64))[0]

    def table(self, prefixes: np.ndarray) -> np.ndarray:
        """(len(prefixes), k_last) booleans: code c under ``prefixes[i]`` (sorted, unique) is
        given or held."""
        k = self.last
        groups: list = [self.reserved]
        if self.dense is not None:
            out = self.dense.reshape(-1, k)[prefixes]
        else:
            out = np.zeros((prefixes.size, k), dtype=bool)
            lo = np.searchsorted(self.issued, prefixes * k)
            counts = np.searchsorted(self.issued, (prefixes + 1) * k) - lo
            if counts.sum():
                # every issued code under each prefix, without a Python loop over prefixes
                row = np.repeat(np.arange(prefixes.size), counts)
                start = np.repeat(lo - np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
                codes = self.issued[start + np.arange(counts.sum())]
                out[row, codes - prefixes[row] * k] = True
            groups.append(self.taken)
        for group in groups:
            if not group:
                continue
            codes = np.fromiter(group, dtype=np.int64, count=len(group))
            at, ok = find_sorted(prefixes, codes // k)
            out[at[ok], codes[ok] % k] = True
        return out


def _residuals(x: np.ndarray, codes: np.ndarray, books: list[np.ndarray], mode: str,
               depth: int, start: int = 0) -> np.ndarray:
    """The residual of each row after its first ``depth`` levels, as the engine steps
    (``x`` being the residual after the first ``start``)."""
    r = np.array(x, dtype=np.float32, order="C", copy=True)
    for level in range(start, depth):
        r -= books[level][codes[:, level]]
        if mode == "normalized":
            renormalize(r)
    return r


def _sq_dists(r: np.ndarray, cb: np.ndarray, cb_sq: np.ndarray | None = None) -> np.ndarray:
    if cb_sq is None:
        cb_sq = np.square(cb).sum(1)
    return np.square(r).sum(1)[:, None] - 2 * r @ cb.T + cb_sq[None, :]


def nearest_free(rows_x: Callable[[np.ndarray], np.ndarray], codes: np.ndarray,
                 books: list[np.ndarray], mode: str, space: CodeSpace, occupancy: Occupancy,
                 prefer: np.ndarray | None = None, products: Products | None = None,
                 residual_sq: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Move colliding rows to free tuples; returns (new codes, rows moved).

    ``rows_x(rows)`` gives the L2-normalized vectors of those rows. ``prefer`` (N, L; -1
    for none) holds the tuples an earlier version gave the rows: those tuples are held for
    them, so no other row lands on one, and a row that has to move goes back to its own.
    ``products`` (plain residuals, see :func:`up_products`) gives the inner products the
    distances one and two levels up are made of, already computed by the encoder; without
    it they are computed here from the vectors. ``residual_sq`` (N,), where given, is each
    row's squared final residual under ``codes`` (the encoder's own figure), which orders
    the rows of a crowded tuple; without it that too comes from the vectors.

    In three phases: which rows keep their tuple (:func:`_settle`), the table of the codes
    taken under the movers' prefixes (:class:`_Taken`), and the movers, chunk by chunk
    (:class:`_Movers`).
    """
    codes = np.array(codes, dtype=np.int64, copy=True)
    packed = space.pack(codes)
    home = np.full(codes.shape[0], -1, dtype=np.int64)  # packed earlier tuple
    if prefer is not None:
        prefer = np.asarray(prefer, dtype=np.int64)
        had = np.flatnonzero((prefer >= 0).all(axis=1))
        home[had] = space.pack(prefer[had])
        occupancy.reserved.update(zip(home[had].tolist(), had.tolist(), strict=True))
    rows, movers = _settle(packed, home, occupancy, residual_sq, rows_x, codes, books, mode)
    if not movers.size:
        return codes, 0
    chosen = rows[movers]
    before = codes[chosen]
    prefixes = packed[chosen] // space.sizes[-1]
    taken = _Taken(occupancy, prefixes, space.sizes[-1])
    job = _Movers(codes, books, mode, space, occupancy, taken, prefixes, home, prefer, rows_x,
                  products)
    for start in range(0, movers.size, MOVER_CHUNK):
        job.chunk(chosen[start:start + MOVER_CHUNK], start)
    # an item whose earlier tuple was its own code may go back to it: not a move
    return codes, int((codes[chosen] != before).any(axis=1).sum())


def _settle(packed: np.ndarray, home: np.ndarray, occupancy: Occupancy,
            residual_sq: np.ndarray | None, rows_x: Callable[[np.ndarray], np.ndarray],
            codes: np.ndarray, books: list[np.ndarray], mode: str
            ) -> tuple[np.ndarray, np.ndarray]:
    """Which rows keep their tuple. Rows alone on a free tuple take it at once; of each
    crowded tuple (or one already taken, or held for another row), the first row in order
    of (it is its earlier tuple, distance to the tuple, row) stays if the tuple is free.
    Returns the crowded rows and, as positions among them, those that must move, in that
    order."""
    n = packed.shape[0]
    _, inverse, counts = np.unique(packed, return_inverse=True, return_counts=True)
    crowded = counts[inverse.ravel()] > 1
    priority = np.ones(n, dtype=np.int8)
    priority[home == packed] = 0
    crowded |= occupancy.taken_mask(packed)
    crowded |= occupancy.held_for_others(packed, np.arange(n))
    occupancy.take_many(packed[~crowded])
    rows = np.flatnonzero(crowded)
    if rows.size == 0:
        return rows, rows
    if residual_sq is not None:
        near = np.asarray(residual_sq, dtype=np.float32)[rows]
    else:
        # in chunks: a crowded catalog of millions must not hold all their vectors at once
        levels = codes.shape[1]
        near = np.empty(rows.size, dtype=np.float32)
        for start in range(0, rows.size, MOVER_CHUNK):
            part = rows[start:start + MOVER_CHUNK]
            last = _residuals(rows_x(part), codes[part], books, mode, levels - 1)
            last -= books[-1][codes[part, -1]]
            near[start:start + MOVER_CHUNK] = np.einsum("ij,ij->i", last, last)
    order = np.lexsort((rows, near, priority[rows]))
    ranked_rows = rows[order]
    ranked_packed = packed[ranked_rows]
    first = np.zeros(order.size, dtype=bool)
    first[np.unique(ranked_packed, return_index=True)[1]] = True
    blocked = occupancy.taken_mask(ranked_packed)
    blocked |= occupancy.held_for_others(ranked_packed, ranked_rows)
    stays = first & ~blocked
    occupancy.take_many(ranked_packed[stays])
    return rows, order[~stays]


class _Taken:
    """Which last-level codes are taken under the movers' prefixes (depth L-1), as a bit
    table kept current with the occupancy: one numpy argmin per mover instead of walking its
    ranked codes through a Python set. ``table[slot[i]]`` is the row of the i-th mover's own
    prefix; :meth:`under` gives any prefix's row, :meth:`take` takes a code."""

    def __init__(self, occupancy: Occupancy, prefixes: np.ndarray, k_last: int):
        self.occupancy, self.k_last = occupancy, k_last
        if occupancy.dense is not None and not occupancy.reserved:
            # the bit table itself: a prefix's row is a view of it, current after every take,
            # so that under and take are the table's own (bound here, over the methods below,
            # which serve the other case)
            self.table = occupancy.dense.reshape(-1, k_last)
            self.slot = prefixes
            self.under = self.table.__getitem__
            self.take = occupancy.take
            return
        # a table of the movers' prefixes, kept current here along with the occupancy;
        # prefix -> its row (a view), and the same for prefixes one level up that movers out
        # of a full prefix look at, built once each: many movers leave the same full prefix
        # for the same neighbours. A dict: the loop asks once or twice per mover
        unique, self.slot = np.unique(prefixes, return_inverse=True)
        self.table = occupancy.table(unique)
        self._rows: dict[int, np.ndarray] = dict(zip(unique.tolist(), self.table, strict=True))

    def under(self, prefix: int) -> np.ndarray:
        row = self._rows.get(prefix)
        if row is None:
            row = self._rows[prefix] = self.occupancy.taken_under(prefix)
        return row

    def take(self, code: int) -> None:
        self.occupancy.take(code)
        row = self._rows.get(code // self.k_last)
        if row is not None:
            row[code % self.k_last] = True


class _Movers:
    """The rows that must move, a chunk at a time (:meth:`chunk`): each goes back to its
    earlier tuple where it is free; else to the nearest free last-level code under its own
    prefix; else under the next-best prefix one level up; else it keeps its tuple (and a
    disambiguation number). Writes the new codes into ``codes``."""

    def __init__(self, codes: np.ndarray, books: list[np.ndarray], mode: str,
                 space: CodeSpace, occupancy: Occupancy, taken: _Taken, prefixes: np.ndarray,
                 home: np.ndarray, prefer: np.ndarray | None,
                 rows_x: Callable[[np.ndarray], np.ndarray], products: Products | None):
        self.codes, self.books, self.mode, self.occupancy = codes, books, mode, occupancy
        self.taken, self.prefixes, self.home, self.prefer = taken, prefixes, home, prefer
        self.rows_x, self.products = rows_x, products
        self.levels = codes.shape[1]
        self.k_last = space.sizes[-1]
        self.k_up = space.sizes[-2] if self.levels >= 2 else 1
        self.norms = [np.square(cb).sum(1) for cb in books]
        self.cross_last = books[-2] @ books[-1].T if products is not None else None

    def chunk(self, chunk_rows: np.ndarray, offset: int) -> None:
        """Move ``chunk_rows`` (rows of the codes; the movers ``offset`` onwards)."""
        codes, taken, levels, k_up, k_last = (self.codes, self.taken, self.levels, self.k_up,
                                               self.k_last)
        n = chunk_rows.size
        own_prefix = self.prefixes[offset:offset + n]  # as encoded, before any move
        mine_at_start = taken.table[taken.slot[offset:offset + n]]
        # full already: these leave their prefix (or, with nowhere to go, keep their tuple);
        # the others look under it first. Each group gets only the distances it uses: in a
        # crowded catalog most movers leave, and they need none under their own prefix
        leaving = mine_at_start.all(axis=1)
        staying = np.flatnonzero(~leaving)
        went = np.flatnonzero(leaving)
        if self.products is not None:
            near = _FromProducts(self.products(chunk_rows), codes[chunk_rows], self.books,
                                 self.norms, self.cross_last)
        else:
            near = _FromVectors(self.rows_x(chunk_rows), codes[chunk_rows], self.books,
                                self.mode, self.norms)
        # each staying row's nearest free code under its own prefix as things stand; like the
        # guesses one level up, it stands while it stays free
        dists = near.own(staying)
        pre = np.where(mine_at_start[staying], np.inf, dists).argmin(axis=1)
        guess = np.full(n, -1, dtype=np.int64)
        if levels >= 2:
            heads = own_prefix // k_up
            guess[went] = np.arange(went.size)
            d_up = near.up(went)
            d_up[np.arange(went.size), codes[chunk_rows[went], -2]] = np.inf  # not its own
            alts, alt_dists, alt_picks = _guess_up(heads[went], d_up, k_up, self.occupancy,
                                                   partial(near.under, went))
        # Python scalars for the loop: indexing numpy arrays one element at a time costs
        # more than the work done with the element
        place = np.zeros(n, dtype=np.int64)
        place[staying] = np.arange(staying.size)
        homes = self.home[chunk_rows].tolist()
        own, place_l, pre_l = own_prefix.tolist(), place.tolist(), pre.tolist()
        guess_l, leaving_l = guess.tolist(), leaving.tolist()
        heads_l = heads.tolist() if levels >= 2 else []
        alts_l = alts.tolist() if levels >= 2 else []
        picks_l = alt_picks.tolist() if levels >= 2 else []
        # the new codes are written for the whole chunk afterwards, not row by row
        went_home: list[int] = []
        moved_last: tuple[list[int], list[int]] = ([], [])
        moved_two: tuple[list[int], list[int], list[int]] = ([], [], [])
        # chunk position -> (next-best codes one level up, distances under the first)
        ranked_later: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        for j, row in enumerate(chunk_rows.tolist()):
            if homes[j] >= 0 and not self.occupancy.is_taken(homes[j], row):
                # an item that must move anyway goes back to the tuple it had before
                went_home.append(row)
                taken.take(homes[j])
                continue
            if not leaving_l[j]:  # its own prefix had room at the start of the chunk
                mine = taken.under(own[j])
                choice = pre_l[place_l[j]]
                if mine[choice]:  # taken since: look again
                    choice = int(np.where(mine, np.inf, dists[place_l[j]]).argmin())
                if not mine[choice]:
                    moved_last[0].append(row)
                    moved_last[1].append(choice)
                    taken.take(own[j] * k_last + choice)
                    continue
            if levels < 2:
                continue
            g, head = guess_l[j], heads_l[j]
            found = None
            if g >= 0:
                # the candidates before the guessed one were full at the start of the
                # chunk and can only have filled up since (with none open then, none is
                # now); while the guessed one has room, it is the answer
                alt = alts_l[g]
                if alt < 0:
                    continue
                t = taken.under(head * k_up + alt)
                if not t[picks_l[g]]:  # nearest free at the start, so still nearest
                    found = (alt, picks_l[g])
                elif not t.all():
                    found = (alt, int(np.where(t, np.inf, alt_dists[g]).argmin()))
            if found is None:
                # a leaving row's distances one level up were computed for the guess
                candidates, first_dists = (_ranked(d_up[g:g + 1].copy())[0], None) if g >= 0 \
                    else ranked_later.pop(j, (None, None))
                if candidates is None:
                    # a staying row whose own prefix filled up during the chunk: so has every
                    # later staying row under it (nothing is freed), ranked here at once
                    later = j + np.flatnonzero(own_prefix[j:] == own[j])
                    later = later[~leaving[later]]
                    ranked = _ranked_up_with_first(near, later, codes[chunk_rows[later], -2])
                    ranked_later.update(zip(later[1:].tolist(), ranked[1:], strict=True))
                    candidates, first_dists = ranked[0]
                found = _one_level_up(candidates, head, k_up, taken.under,
                                      partial(near.under_one, j), first_dists)
            if found is None:
                continue
            moved_two[0].append(row)
            moved_two[1].append(found[0])
            moved_two[2].append(found[1])
            taken.take((head * k_up + found[0]) * k_last + found[1])
        if went_home:
            codes[went_home] = self.prefer[went_home]
        codes[moved_last[0], -1] = moved_last[1]
        if moved_two[0]:
            codes[moved_two[0], -2] = moved_two[1]
            codes[moved_two[0], -1] = moved_two[2]



def up_products(level1: list[np.ndarray], codes: np.ndarray, books: list[np.ndarray]
                ) -> Products:
    """From each row's level-1 residual's inner products with the codebooks of levels 2..L
    (what :func:`registry.engine.encode` hands back), rows -> the inner products of their
    residual after L-2 levels with the codebooks of levels L-1 and L: each a (rows, k) array.
    Plain residuals only: levels 2..L-2 are taken off through their centroids' own inner
    products with those codebooks."""
    levels = len(books)
    between = range(1, levels - 2)
    cross = {(lvl, m): books[lvl] @ books[m].T for lvl in between for m in (levels - 2,
                                                                          levels - 1)}

    def get(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = []
        for m in (levels - 2, levels - 1):
            p = level1[m - 1][rows]
            for lvl in between:
                p -= cross[lvl, m][codes[rows, lvl]]
            out.append(p)
        return out[0], out[1]

    return get


class _Near:
    """The distances a chunk of movers needs (rows are positions in the chunk)."""

    def own(self, rows: np.ndarray) -> np.ndarray:
        """(rows, k_L): to the last-level codes under each row's own prefix."""
        raise NotImplementedError

    def up(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def under(self, rows: np.ndarray, alt: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def under_one(self, j: int, alt: int) -> np.ndarray:
        """(k_L,): row ``j``'s distances to the last-level codes under ``alt``."""
        return self.under(np.array([j]), np.array([alt]))[0]


class _FromVectors(_Near):
    """From the movers' vectors: each row's residual after L-2 levels (``up``), and from it
    the squared distances to codes one and two levels up."""

    def __init__(self, x: np.ndarray, codes: np.ndarray, books: list[np.ndarray], mode: str,
                 norms: list[np.ndarray]):
        self.codes, self.books, self.mode, self.norms = codes, books, mode, norms
        self.depth = max(len(books) - 2, 0)
        self.residual = _residuals(x, codes, books, mode, self.depth)

    def own(self, rows: np.ndarray) -> np.ndarray:
        """(rows, k_L): to the last-level codes under each row's own prefix."""
        last = _residuals(self.residual[rows], self.codes[rows], self.books, self.mode,
                          len(self.books) - 1, start=self.depth)
        return _sq_dists(last, self.books[-1], self.norms[-1])

    def up(self, rows: np.ndarray) -> np.ndarray:
        """(rows, k_{L-1}): to the second-to-last codes."""
        return _sq_dists(self.residual[rows], self.books[-2], self.norms[-2])

    def under(self, rows: np.ndarray, alt: np.ndarray) -> np.ndarray:
        """(rows, k_L): to the last-level codes under second-to-last code ``alt`` (per row)."""
        nxt = self.residual[rows] - self.books[-2][alt]
        if self.mode == "normalized":
            renormalize(nxt)
        return _sq_dists(nxt, self.books[-1], self.norms[-1])


class _FromProducts(_Near):
    """The same distances as :class:`_FromVectors` from inner products the encoder computed
    (plain residuals): each less the row's own squared norm, which no choice depends on. No
    residual is formed, nor the rows' vectors read."""

    def __init__(self, products: tuple[np.ndarray, np.ndarray], codes: np.ndarray,
                 books: list[np.ndarray], norms: list[np.ndarray], cross_last: np.ndarray):
        self.p_up, self.p_last = products
        self.codes, self.books, self.norms, self.cross = codes, books, norms, cross_last

    def own(self, rows: np.ndarray) -> np.ndarray:
        return self.under(rows, self.codes[rows, -2])

    def up(self, rows: np.ndarray) -> np.ndarray:
        return self.norms[-2] - 2.0 * self.p_up[rows]

    def under(self, rows: np.ndarray, alt: np.ndarray) -> np.ndarray:
        # |r - a - c|^2 = |r - a|^2 + |c|^2 - 2 (r.c - a.c); |r - a|^2 is the same for all c
        return self.norms[-1] - 2.0 * (self.p_last[rows] - self.cross[alt])


def _ranked_up(d: np.ndarray, own: np.ndarray) -> np.ndarray:
    """(N, UP_CANDIDATES): from each row's distances ``d`` to the second-to-last codes
    (overwritten), its next-best codes after its own, closest first."""
    d[np.arange(d.shape[0]), own] = np.inf
    return _ranked(d)


def _ranked_up_with_first(near: _Near, rows: np.ndarray, own: np.ndarray
                          ) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """For each of ``rows`` (positions in the chunk of ``near``), which must leave its
    prefix: its next-best codes one level up (as :func:`_ranked_up`, ``own`` its own code
    there), and its distances under the first of them, where most such rows land
    (BENCHMARKS.md, Design figures: movers land under the first code up); None where it has
    no other code."""
    ranked = _ranked_up(near.up(rows), own)
    if not ranked.shape[1]:
        return [(r, None) for r in ranked]
    return list(zip(ranked, near.under(rows, ranked[:, 0]), strict=True))


def _ranked(d: np.ndarray) -> np.ndarray:
    """(N, min(UP_CANDIDATES, k - 1)): the positions of each row's smallest entries of
    ``d`` (N, k; overwritten), smallest first, ties to the lower position. By repeated
    argmin, as in the beam search: faster than argpartition and a sort (BENCHMARKS.md,
    Design figures: ranking by repeated argmin)."""
    want = min(UP_CANDIDATES, d.shape[1] - 1)
    out = np.empty((d.shape[0], max(want, 0)), dtype=np.int64)
    each = np.arange(d.shape[0])
    for w in range(want):
        out[:, w] = best = d.argmin(axis=1)
        d[each, best] = np.inf
    return out


def _guess_up(heads: np.ndarray, d: np.ndarray, k_up: int, occupancy: Occupancy,
              under: Callable[[np.ndarray], np.ndarray]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where :func:`_one_level_up` would look for each of these rows as things stand, all
    rows at once, from ``d``, their distances to the second-to-last codes (their own at
    inf): (the first of the UP_CANDIDATES next-best codes with room, or -1 for none; the
    squared distances from each row to every last-level code under it, ``under(alt)``; the
    nearest of those codes that is free)."""
    if not len(heads):
        none = np.empty(0, dtype=np.int64)
        return none, np.empty((0, 0), np.float32), none
    rows = np.arange(len(heads))
    alt = d.argmin(axis=1)
    alt[np.isinf(d[rows, alt])] = -1  # no other code at that level
    # the nearest one mostly has room (BENCHMARKS.md, Design figures: room under the
    # nearest code up): only where it is full are the next-best ranked
    again = np.flatnonzero(_full(occupancy, heads * k_up + np.maximum(alt, 0)) & (alt >= 0))
    if again.size:
        ranked = _ranked(d[again])
        cand = heads[again, None] * k_up + ranked
        open_ = ~_full(occupancy, cand.ravel()).reshape(cand.shape)
        first = open_.argmax(axis=1)
        alt[again] = np.where(open_.any(axis=1), ranked[np.arange(again.size), first], -1)
    at = np.maximum(alt, 0)  # rows without one: any code, never used
    dists = under(at)
    prefixes, inverse = np.unique(heads * k_up + at, return_inverse=True)
    taken = occupancy.table(prefixes)[inverse.ravel()]
    nearest = np.where(taken, np.inf, dists).argmin(axis=1)
    return alt, dists, nearest


def _full(occupancy: Occupancy, prefixes: np.ndarray) -> np.ndarray:
    """Which of these depth-(L-1) prefixes have no free last-level code."""
    unique, inverse = np.unique(prefixes, return_inverse=True)
    return occupancy.table(unique).all(axis=1)[inverse.ravel()]


def _one_level_up(ranked: np.ndarray, head: int, k_up: int,
                  taken_under: Callable[[int], np.ndarray],
                  under: Callable[[int], np.ndarray],
                  first: np.ndarray | None = None) -> tuple[int, int] | None:
    """The closest free (second-to-last, last) pair under the depth-(L-2) prefix ``head``,
    among the ``ranked`` second-to-last codes; ``under(alt)`` gives the row's distances to
    the last-level codes under ``alt`` (``first``, where given, those under ``ranked[0]``)."""
    for i, alt in enumerate(ranked.tolist()):
        taken = taken_under(head * k_up + alt)
        if taken.all():
            continue
        dists = first if i == 0 and first is not None else under(alt)
        return alt, int(np.where(taken, np.inf, dists).argmin())
    return None
