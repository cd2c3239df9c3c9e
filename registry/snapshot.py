"""A published version's IDs in memory: resolve model output in batches, count and list what
lies under a prefix, and say which codes may follow a prefix, without the database.

A frozen version only grows, by assignment; a snapshot holds what it had when it was taken
and :meth:`Snapshot.is_current` says, with one small read, whether IDs were added since or
the alias it was taken through moved. Numpy only: a read command that resolves never loads
faiss or torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InputError, StateError
from .ids import CodeSpace, ParsedMany, format_ids, parse_many
from .store import assignments, codebooks, items, lookups, versions
from .store.db import Tx
from .store.schema import State
from .store.versions import Version

STATUSES = ("found", "removed", "prefix", "unknown", "malformed")
# more inputs than this are searched for in sorted order
SORTED_SEARCH = 4096
# issued IDs decoded at a time when looking for the nearest ones
NEAREST_CHUNK = 65536
FOUND, REMOVED, PREFIX, UNKNOWN, MALFORMED = range(len(STATUSES))


@dataclass
class Resolution:
    """One row per input, in input order (columns as arrays): its ``status`` (an index into
    STATUSES), the ID's place in the snapshot (-1 for none: prefixes, unknown, malformed),
    and for a prefix the number of items under it (``count``; 1 for an ID found)."""

    snapshot: Snapshot
    inputs: list[str]
    status: np.ndarray
    index: np.ndarray
    count: np.ndarray
    # where asked for: each input's nearest issued IDs (places; only for unknown whole IDs),
    # and the metadata of the items found, by key
    nearest: list[list[int]] | None = None
    metadata: dict[str, dict | None] | None = None
    parsed: ParsedMany | None = None  # the inputs as parsed

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def statuses(self) -> list[str]:
        return [STATUSES[s] for s in self.status.tolist()]

    @property
    def keys(self) -> list[str | None]:
        """The item of each input that names an issued ID, else None."""
        keys = self.snapshot.keys
        return [None if i < 0 else keys[i] for i in self.index.tolist()]

    @property
    def ids(self) -> list[str | None]:
        """The canonical ID of each input that names an issued ID, else None."""
        out: list[str | None] = [None] * len(self.inputs)
        hit = np.flatnonzero(self.index >= 0)
        if hit.size:
            texts = self.snapshot.ids(self.index[hit])
            for i, text in zip(hit.tolist(), texts, strict=True):
                out[i] = text
        return out

    def rows(self) -> list[dict]:
        """One dict per input: input, status, key, id, count; and its metadata and nearest
        IDs (each a dict of key and id) where they were asked for."""
        out = [{"input": text, "status": status, "key": key, "id": id_, "count": count}
               for text, status, key, id_, count in zip(
                   self.inputs, self.statuses, self.keys, self.ids, self.count.tolist(),
                   strict=True)]
        if self.metadata is not None:
            for row in out:
                row["metadata"] = None if row["key"] is None else \
                    (self.metadata.get(row["key"]) or {})
        if self.nearest is not None:
            keys = self.snapshot.keys
            removed = self.snapshot.removed
            for row, places in zip(out, self.nearest, strict=True):
                row["nearest"] = [
                    {"key": keys[p], "id": text, "removed": bool(removed[p])} for p, text in
                    zip(places, self.snapshot.ids(np.asarray(places, np.int64)), strict=True)
                ] if places else []
        return out


class Snapshot:
    """A frozen or retired version's issued IDs, sorted by (code, disambiguation number),
    with each item's key and whether it was removed (see :func:`take`)."""

    def __init__(self, version: Version, codes: np.ndarray, disamb: np.ndarray,
                 removed: np.ndarray, keys: list[str], *, ref: str | int | None = None,
                 tx: Tx | None = None, state: tuple[int, int] | None = None):
        """``ref`` and ``tx``: how it was taken, for :meth:`is_current`; ``state`` what that
        reads (:func:`_state`) as it was then."""
        self.version = version
        self.space: CodeSpace = version.space
        self.keys = keys
        self.removed = np.asarray(removed, dtype=bool)
        self._ref, self._tx, self._state = ref, tx, state
        # one sorted int64 per ID where (code, number) fits in one: a single search finds it
        self._radix = version.max_disambiguation + 1
        self._fits = (np.prod(self.space.sizes, dtype=object) * self._radix) < 2**63
        codes = np.asarray(codes, dtype=np.int64)
        disamb = np.asarray(disamb, dtype=np.int64)
        if self._fits:
            self._key = codes * self._radix + disamb
            self._codes = self._disamb = None
        else:
            self._key = None
            self._codes, self._disamb = codes, disamb
        self._children: dict[int, np.ndarray] = {}
        # code tuples under a prefix of each depth
        self._span = [math.prod(self.space.sizes[d:]) for d in range(self.space.levels + 1)]
        # prefix -> the codes that follow it: at most one entry per prefix shorter than the
        # code tuple that issued IDs have (65,793 at 3 x 256), so never more than that
        self._next: dict[tuple, list[int]] = {}

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def codes(self) -> np.ndarray:
        """The packed code of each ID, in snapshot order."""
        return self._key // self._radix if self._fits else self._codes

    @property
    def disambiguation(self) -> np.ndarray:
        return self._key % self._radix if self._fits else self._disamb

    def _at(self, where: np.ndarray | slice) -> tuple[np.ndarray, np.ndarray]:
        """(packed codes, numbers) of the IDs at ``where``."""
        if self._fits:
            key = self._key[where]
            return key // self._radix, key % self._radix
        return self._codes[where], self._disamb[where]

    def ids(self, index: np.ndarray) -> list[str]:
        """The canonical text of the IDs at ``index``."""
        codes, numbers = self._at(np.asarray(index, dtype=np.int64))
        return format_ids(self.space.unpack(codes), numbers)

    def id_key(self, code: int, number: int) -> int | tuple[int, int]:
        """One hashable value per ID that stays the same however the snapshot grows (its
        place does not): the (code, number) pair, packed into one int where it fits."""
        return code * self._radix + number if self._fits else (code, number)

    def place(self, id_key: int | tuple[int, int]) -> int:
        """The place of the ID :meth:`id_key` gave, -1 where the snapshot lacks it."""
        code, number = divmod(id_key, self._radix) if self._fits else id_key
        return int(self._find(np.array([code], np.int64), np.array([number], np.int64))[0])

    def id_keys(self, codes: np.ndarray, disamb: np.ndarray) -> list:
        """:meth:`id_key` of many IDs at once (packed codes and their numbers)."""
        if self._fits:
            return (np.asarray(codes, np.int64) * self._radix + disamb).tolist()
        return list(zip(np.asarray(codes).tolist(), np.asarray(disamb).tolist(), strict=True))

    def one(self, id_key: int | tuple[int, int]) -> tuple[str, bool] | None:
        """The canonical text of the ID :meth:`id_key` gave and whether its item was
        removed; None where the snapshot lacks it. Python scalars only: one ID costs
        microseconds, where the arrays' calls cost tens."""
        if self._fits:
            at = int(self._key.searchsorted(id_key))
            if at >= self._key.size or int(self._key[at]) != id_key:
                return None
            code, number = divmod(id_key, self._radix)
        else:
            at = self.place(id_key)
            if at < 0:
                return None
            code, number = id_key
        parts = [str(number)]
        for k in reversed(self.space.sizes):
            code, c = divmod(code, k)
            parts.append(str(c))
        return "-".join(reversed(parts)), bool(self.removed[at])

    def grown(self, codes: np.ndarray, disamb: np.ndarray, removed: np.ndarray,
              keys: list[str]) -> Snapshot:
        """A snapshot of these IDs and of the ones given (IDs assigned since, none of them
        held here), merged in ID order: an insertion, not a sort of the whole."""
        codes = np.asarray(codes, dtype=np.int64)
        disamb = np.asarray(disamb, dtype=np.int64)
        if self._fits:
            added = codes * self._radix + disamb
            order = np.argsort(added, kind="stable")
            at = np.searchsorted(self._key, added[order])
            key = np.insert(self._key, at, added[order])
            all_codes, all_disamb = key // self._radix, key % self._radix
        else:
            order = np.lexsort((disamb, codes))
            both_codes = np.concatenate([self._codes, codes[order]])
            both_disamb = np.concatenate([self._disamb, disamb[order]])
            merged = np.lexsort((both_disamb, both_codes))
            # where each added ID lands among the held ones
            at = np.flatnonzero(merged >= len(self)) - np.arange(len(order))
            all_codes, all_disamb = both_codes[merged], both_disamb[merged]
        flags = np.insert(self.removed, at, np.asarray(removed, dtype=bool)[order])
        merged_keys: list[str] = []
        start = 0
        for where, i in zip(at.tolist(), order.tolist(), strict=True):
            merged_keys += self.keys[start:where]
            merged_keys.append(keys[i])
            start = where
        merged_keys += self.keys[start:]
        return Snapshot(self.version, all_codes, all_disamb, flags, merged_keys,
                        ref=self._ref, tx=self._tx, state=self._state)

    # -- resolve -------------------------------------------------------------------------------

    def resolve(self, inputs: Iterable[str]) -> Resolution:
        """Each input (a canonical ID, its token form, or a prefix of either) resolved: found,
        removed (an ID of a removed item), prefix (with the items under it), unknown (well
        formed, but no item holds it) or malformed. Never raises for a bad row."""
        inputs = inputs if isinstance(inputs, list) else list(inputs)
        parsed = parse_many(inputs, self.space)
        n = len(inputs)
        status = np.full(n, MALFORMED, dtype=np.uint8)
        index = np.full(n, -1, dtype=np.int64)
        count = np.zeros(n, dtype=np.int64)
        # a number past the version's limit is outside its vocabulary: malformed
        full = parsed.full & (parsed.disamb <= self.version.max_disambiguation)
        rows = np.flatnonzero(full)
        if rows.size:
            found = self._find(self.space.pack(parsed.codes[rows]), parsed.disamb[rows])
            hit = found >= 0
            index[rows[hit]] = found[hit]
            count[rows[hit]] = 1
            gone = np.zeros(rows.size, dtype=bool)
            gone[hit] = self.removed[found[hit]]
            status[rows] = np.where(hit, np.where(gone, REMOVED, FOUND), UNKNOWN)
        rows = np.flatnonzero(parsed.ok & (parsed.disamb < 0))
        if rows.size:
            lo, hi = self._bounds(parsed.codes[rows], parsed.depth[rows])
            count[rows] = hi - lo
            status[rows] = np.where(hi > lo, PREFIX, UNKNOWN)
        return Resolution(self, inputs, status, index, count, parsed=parsed)

    def _find(self, packed: np.ndarray, disamb: np.ndarray) -> np.ndarray:
        """The place of each (packed code, number) among the IDs, -1 where none."""
        if self._fits:
            want = packed * self._radix + disamb
            shift = int(want.size).bit_length()
            if want.size > SORTED_SEARCH and int(want.max(initial=0)) < 1 << (62 - shift):
                # in order, each search starts where the last one ended: far fewer cache
                # misses than in the inputs' order (BENCHMARKS.md, issue 24). Sorted with
                # each one's place in its low bits: a plain sort, cheaper than an argsort
                both = np.sort((want << shift) | np.arange(want.size))
                at = np.empty(want.size, dtype=np.int64)
                at[both & ((1 << shift) - 1)] = np.searchsorted(self._key, both >> shift)
            else:
                at = np.searchsorted(self._key, want)
            ok = at < self._key.size
            ok[ok] = self._key[at[ok]] == want[ok]
            return np.where(ok, at, -1)
        out = np.full(packed.size, -1, dtype=np.int64)
        lo = np.searchsorted(self._codes, packed, "left")
        hi = np.searchsorted(self._codes, packed, "right")
        for i in np.flatnonzero(hi > lo).tolist():
            j = lo[i] + np.searchsorted(self._disamb[lo[i]:hi[i]], disamb[i])
            if j < hi[i] and self._disamb[j] == disamb[i]:
                out[i] = j
        return out

    def _bounds(self, codes: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[lo, hi) places of the IDs under each prefix (its first ``depth`` codes)."""
        first, last = self.space.prefix_spans(codes, depth)
        if self._fits:
            return (np.searchsorted(self._key, first * self._radix),
                    np.searchsorted(self._key, (last + 1) * self._radix))
        return (np.searchsorted(self._codes, first, "left"),
                np.searchsorted(self._codes, last, "right"))

    def nearest(self, resolution: Resolution, k: int,
                books: list[np.ndarray]) -> list[list[int]]:
        """For each input that is a well-formed whole ID no item holds (unknown), the places
        of the ``k`` issued IDs closest to it; [] for the others. Plain residuals: by the
        distance between the decoded codes (the sums of their centroids); normalized ones,
        which cannot be decoded: by the longest shared prefix (ties in ID order)."""
        out: list[list[int]] = [[] for _ in range(len(resolution))]
        parsed = resolution.parsed or parse_many(resolution.inputs, self.space)
        rows = np.flatnonzero((resolution.status == UNKNOWN) & parsed.full)
        if not rows.size or not len(self):
            return out
        k = min(k, len(self))
        wanted = parsed.codes[rows]
        if self.version.residual != "plain":
            for i, row in enumerate(rows.tolist()):
                for depth in range(self.space.levels, -1, -1):
                    lo, hi = self.range(wanted[i, :depth].tolist())
                    if hi > lo:
                        out[row] = list(range(lo, min(hi, lo + k)))
                        break
            return out
        target = _decoded(wanted, books)
        norms = np.square(target).sum(1)
        best = np.full((rows.size, 0), np.inf, dtype=np.float32)
        where = np.empty((rows.size, 0), dtype=np.int64)
        for at in range(0, len(self), NEAREST_CHUNK):
            codes = self.space.unpack(self._at(slice(at, at + NEAREST_CHUNK))[0])
            part = _decoded(codes, books)
            d = norms[:, None] - 2 * target @ part.T + np.square(part).sum(1)[None, :]
            take = min(k, d.shape[1])
            near = np.argpartition(d, take - 1, axis=1)[:, :take]
            best = np.concatenate([best, np.take_along_axis(d, near, 1)], axis=1)
            where = np.concatenate([where, near + at], axis=1)
            keep = np.argsort(best, axis=1, kind="stable")[:, :k]
            best, where = np.take_along_axis(best, keep, 1), np.take_along_axis(where, keep, 1)
        for i, row in enumerate(rows.tolist()):
            out[row] = where[i].tolist()
        return out

    # -- prefixes ------------------------------------------------------------------------------

    def count(self, prefix: Sequence[int]) -> int:
        """How many IDs lie under ``prefix`` (leading codes)."""
        lo, hi = self.range(prefix)
        return hi - lo

    def range(self, prefix: Sequence[int]) -> tuple[int, int]:
        """[lo, hi): the snapshot places of the IDs under ``prefix``, in ID order. A prefix
        longer than the code tuple, or a code out of its level's range, is a ValueError."""
        self.space.check_prefix(prefix)
        first = 0
        for c, k in zip(prefix, self.space.sizes, strict=False):
            first = first * k + int(c)
        span = self._span[len(prefix)]
        first *= span
        if self._fits:
            lo, hi = self._key.searchsorted((first * self._radix, (first + span) * self._radix))
        else:
            lo, hi = self._codes.searchsorted((first, first + span))
        return int(lo), int(hi)

    def first_after(self, packed: int, number: int) -> int:
        """The place of the first ID that comes after the ID (packed code, number) in ID
        order, whether that ID is held or not: where a listing resumes after a cursor."""
        if self._fits:
            return int(self._key.searchsorted(packed * self._radix + number, "right"))
        lo, hi = self._codes.searchsorted((packed, packed + 1))
        return int(lo + self._disamb[lo:hi].searchsorted(number, "right"))

    def allowed_next(self, prefix: Sequence[int]) -> list[int]:
        """The codes that follow ``prefix`` among the issued IDs: next-level codes while it is
        shorter than the code tuple, disambiguation numbers after a whole tuple, none after a
        whole ID. Sorted."""
        depth = len(prefix)
        if depth > self.space.levels:
            self.space.check_prefix(prefix, extra=1)
            return []  # a whole ID: nothing follows
        if depth == self.space.levels:
            lo, hi = self.range(prefix)
            return self._at(slice(lo, hi))[1].tolist()
        prefix = tuple(prefix)
        found = self._next.get(prefix)
        if found is None:  # kept: a beam search asks for the same few prefixes again and again
            self.space.check_prefix(prefix)
            children = self._prefixes(depth + 1)
            base = 0
            for c, k in zip(prefix, self.space.sizes, strict=False):
                base = base * k + int(c)
            k = self.space.sizes[depth]
            lo, hi = np.searchsorted(children, (base * k, (base + 1) * k))
            found = self._next[prefix] = (children[lo:hi] - base * k).tolist()
        return list(found)

    def _prefixes(self, depth: int) -> np.ndarray:
        """The sorted distinct packed prefixes of ``depth`` codes among the IDs."""
        found = self._children.get(depth)
        if found is None:
            codes = self.codes // self._span[depth]  # sorted, as the IDs are
            keep = np.concatenate(([True], codes[1:] != codes[:-1])) if codes.size else []
            found = self._children[depth] = codes[keep]
        return found

    # -- staleness -----------------------------------------------------------------------------

    def is_current(self) -> bool:
        """Whether the version still holds exactly these IDs, no item was removed or brought
        back since, and the reference it was taken through (an alias, say) still names it:
        small reads (a frozen version's count is its seal's, the items not live are counted
        through their own small index)."""
        if self._tx is None:
            return True
        with self._tx(write=False) as conn:
            number = versions.resolve_number(conn, self._ref)
            return number == self.version.number and _state(conn, number) == self._state


def _state(conn, number: int) -> tuple[int, int]:
    """What a snapshot of version ``number`` depends on besides its alias: how many IDs it
    holds, and how many items are removed (or lack an embedding)."""
    return assignments.count(conn, number), items.count_not_live(conn)


def _decoded(codes: np.ndarray, books: list[np.ndarray]) -> np.ndarray:
    """The sum of each row's centroids (plain residuals), in numpy: no faiss for resolve."""
    out = np.zeros((codes.shape[0], books[0].shape[1]), dtype=np.float32)
    for level, book in enumerate(books):
        out += book[codes[:, level]]
    return out


def take(tx: Tx, ref: str | int | None = None) -> Snapshot:
    """The IDs of the frozen or retired version ``ref`` names (default: the active one)."""
    with tx(write=False) as conn:
        v = published(conn, ref)
        codes, disamb, removed, keys = assignments.snapshot(conn, v.number)
        state = _state(conn, v.number)
    return Snapshot(v, codes, disamb, removed, keys, ref=ref, tx=tx, state=state)


def published(conn, ref: str | int | None) -> Version:
    """The frozen or retired version ``ref`` names; a draft is refused."""
    v = versions.resolve(conn, ref)
    if v.state == State.DRAFT:
        raise StateError(f"{v.label} is a draft: its IDs may still go; freeze it to resolve "
                         "against it or take a snapshot")
    return v


# up to this many inputs, resolve reads only the ID ranges they fall in, not the version
PARTIAL_INPUTS = 256
MAX_NEAREST = 100


def resolve(tx: Tx, inputs: Sequence[str], ref: str | int | None = None, *,
            nearest: int = 0, metadata: bool = False) -> Resolution:
    """:meth:`Snapshot.resolve` for one batch: a few inputs read only the ranges of IDs
    under them (a prefix's range whole, so its count is exact), more a whole snapshot. With
    ``nearest``, also the ``nearest`` issued IDs closest to each unknown whole ID
    (:meth:`Snapshot.nearest`); with ``metadata``, the found items' metadata."""
    if not 0 <= nearest <= MAX_NEAREST:
        raise InputError(f"nearest must be between 0 and {MAX_NEAREST}, got {nearest}",
                         param="nearest")
    inputs = list(inputs)
    if nearest or len(inputs) > PARTIAL_INPUTS:
        snap = take(tx, ref)
    else:
        with tx(write=False) as conn:
            v = published(conn, ref)
            parsed = parse_many(inputs, v.space)
            ok = np.flatnonzero(parsed.ok)
            first, last = v.space.prefix_spans(parsed.codes[ok], parsed.depth[ok])
            codes, disamb, removed, keys = assignments.snapshot(
                conn, v.number, ranges=sorted(set(zip(first.tolist(), last.tolist(),
                                                      strict=True))))
        snap = Snapshot(v, codes, disamb, removed, keys)
    resolution = snap.resolve(inputs)
    if nearest:
        with tx(write=False) as conn:
            books = codebooks.read(conn, snap.version.number)
        resolution.nearest = snap.nearest(resolution, nearest, books)
    if metadata:
        with tx(write=False) as conn:
            resolution.metadata = lookups.metadata_of(
                conn, [k for k in resolution.keys if k is not None])
    return resolution
