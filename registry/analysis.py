"""``diff``, ``drift`` and ``stats``: read versions and their populations through the store,
compare them with :mod:`registry.compare` or measure them with :mod:`registry.quality`, and
say what it means.

A population is read as arrays (item ids, codes, numbers: a few bytes an ID) and its
vectors a chunk of CHUNK_ROWS at a time, so that ten million items take a few hundred
megabytes, not their gigabytes of vectors. The chunks are read and measured in one read
transaction (every chunk of the same snapshot as the arrays): minutes at ten million, while
which SQLite cannot checkpoint its write-ahead log past that snapshot, nor PostgreSQL vacuum
away rows deleted since."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import compare, engine, quality
from .errors import InputError
from .export import output_format, write_table
from .ids import format_ids
from .store import assignments, codebooks, items, lookups, scan, versions
from .store.db import Tx
from .store.versions import Version


@dataclass
class DiffReport:
    """Two versions compared: items in both and in one only, churn at each depth (and after
    matching v2's labels to v1's, where neither was trained from the other), centroid
    movement per level, code usage per level, and the remap file written, if any."""

    v1: Version
    v2: Version
    common: int
    only_v1: int
    only_v2: int
    churn: list[float]
    aligned: bool
    aligned_churn: list[float] | None
    movement: list[dict]
    remap: str | None = None
    usage: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"v1": self.v1.number, "v2": self.v2.number, "common_items": self.common,
                "only_in_v1": self.only_v1, "only_in_v2": self.only_v2,
                "churn": self.churn, "aligned": self.aligned,
                "aligned_churn": self.aligned_churn, "centroid_movement": self.movement,
                "remap": self.remap}


@dataclass
class DriftReport:
    """``drift`` is None when there is nothing to compare: no item was assigned into the
    version after training (or the newer version was trained on no items)."""

    version: Version
    against: Version | None
    drift: compare.Drift | None
    reference: int = 0

    def to_dict(self) -> dict:
        head = {"version": self.version.number,
                "against": None if self.against is None else self.against.number}
        if self.drift is None:
            return {**head, "reference_items": self.reference, "compared_items": 0,
                    "verdict": None, "reasons": [NOTHING_TO_COMPARE]}
        return {**head, **self.drift.to_dict()}


# vectors held at once by drift and stats (100 MB at 384 dimensions)
CHUNK_ROWS = 1 << 16

NOTHING_TO_COMPARE = ("nothing to compare: no items were assigned into it after training "
                      "(add new items and run `registry assign`, or compare it with a newer "
                      "version: registry drift VERSION NEWER)")


def related(a: Version, b: Version) -> bool:
    """One was trained from the other: their labels mean the same thing."""
    return b.parent == a.number or a.parent == b.number


def diff(tx: Tx, ref1: str | int, ref2: str | int, *, remap: str | Path | None = None
         ) -> DiffReport:
    if remap is not None:
        output_format(remap)
    with tx(write=False) as conn:
        a, b = versions.resolve(conn, ref1), versions.resolve(conn, ref2)
        (ids_a, packed_a, _), (ids_b, packed_b, _) = (assignments.held(conn, a.number),
                                                      assignments.held(conn, b.number))
        books_a, books_b = codebooks.read(conn, a.number), codebooks.read(conn, b.number)
        # the keys only for the remap file, which names every item
        pops = None if remap is None else (lookups.population(conn, a.number),
                                            lookups.population(conn, b.number))
    codes_a = a.space.unpack(packed_a)
    codes_b = b.space.unpack(packed_b)
    common, ia, ib = np.intersect1d(ids_a, ids_b, assume_unique=True, return_indices=True)
    depth = min(a.space.levels, b.space.levels)
    ca, cb = codes_a[ia, :depth], codes_b[ib, :depth]
    report = DiffReport(a, b, len(common), len(ids_a) - len(common), len(ids_b) - len(common),
                        compare.churn(ca, cb), aligned=False, aligned_churn=None, movement=[])
    maps: list[np.ndarray | None] = [None] * depth
    if a.number != b.number and not related(a, b) and len(common):
        aligned, maps = compare.align(ca, cb, a.space.sizes, b.space.sizes)
        report.aligned = True
        report.aligned_churn = compare.churn(ca, aligned)
    for level in range(depth):
        same_shape = books_a[level].shape == books_b[level].shape
        if maps[level] is not None and books_a[level].shape[1] == books_b[level].shape[1]:
            report.movement.append(compare.centroid_movement(books_a[level], books_b[level],
                                                             maps[level]))
        elif maps[level] is None and same_shape:
            report.movement.append(compare.centroid_movement(books_a[level], books_b[level]))
        else:
            report.movement.append({"mean": None, "max": None})
        report.usage.append((compare.usage(codes_a[:, level], a.space.sizes[level]),
                             compare.usage(codes_b[:, level], b.space.sizes[level])))
    if pops is not None:
        _write_remap(remap, *pops, codes_a, codes_b)
        report.remap = str(remap)
    return report


def _write_remap(path, pop_a, pop_b, codes_a, codes_b) -> None:
    old = dict(zip(pop_a.keys, format_ids(codes_a, np.asarray(pop_a.disambs)), strict=True))
    new = dict(zip(pop_b.keys, format_ids(codes_b, np.asarray(pop_b.disambs)), strict=True))
    keys = sorted(old.keys() | new.keys())
    write_table(path, {"key": keys, "old_id": [old.get(k) for k in keys],
                       "new_id": [new.get(k) for k in keys]})


def _errors(vectors: np.ndarray, codes: np.ndarray, books: list[np.ndarray],
            residual: str) -> np.ndarray:
    """Squared distance of each normalized vector to its reconstruction (plain mode), or to
    its level-1 centroid (normalized mode, which cannot be decoded)."""
    if vectors.shape[0] == 0:
        return np.empty(0)
    x = engine.prepare(vectors, overwrite=True)
    rebuilt = engine.decode(codes, books) if residual == "plain" else books[0][codes[:, 0]]
    return np.square(x - rebuilt).sum(axis=1)


def drift(tx: Tx, ref: str | int | None, against: str | int | None = None) -> DriftReport:
    """One version: the items assigned after training against those it was trained on.
    Two versions (``ref`` older, ``against`` newer): the newer one's training items against
    the older one's. Both populations are encoded afresh with the (older) version's
    codebooks, so that collision handling does not pass for drift."""
    with tx(write=False) as conn:
        v = versions.resolve(conn, ref)
        other = None if against is None else versions.resolve(conn, against)
        if other is not None and (other.dim, other.embedding_model) != (v.dim,
                                                                         v.embedding_model):
            raise InputError(f"{v.label} and {other.label} were trained on different "
                             "embeddings: their populations cannot be compared", source="drift")
        books = codebooks.read(conn, v.number)
        sides = [(v.number, False), (v.number, True)] if other is None else \
            [(v.number, False), (other.number, False)]
        ids, codes, errors = [], [], []
        for number, incremental in sides:
            item_ids = assignments.held(conn, number, incremental=incremental)[0]
            source = scan.Vectors(conn, item_ids, v.dim,
                                  *items.population_from(conn, number, incremental))
            # the data's own codes (as the version encodes), not the stored ones:
            # nearest-free moves colliding items to free codes, which says nothing about
            # how the data moved
            got, error = _encoded(source, books, v)
            ids.append(item_ids)
            codes.append(got)
            errors.append(error)
    if not len(ids[1]):
        return DriftReport(v, other, None, reference=len(ids[0]))
    # two versions: the newer one's items include the older one's, counted once
    shared = None if other is None else np.isin(ids[1], ids[0])
    result = compare.drift(codes[0], codes[1], v.space.sizes, error_a=errors[0],
                           error_b=errors[1], also_in_a=shared)
    named = [(c, ids[1]) for c in result.grew] + [(c, ids[0]) for c in result.shrank]
    # a transaction of its own is enough: items are never deleted, nor their keys changed
    with tx(write=False) as conn:
        keys = items.keys_of(conn, [int(of[r]) for c, of in named for r in c.rows])
    for c, of in named:
        c.examples = [keys[int(of[r])] for r in c.rows]
    return DriftReport(v, other, result)


def _encoded(source: scan.Vectors, books: list[np.ndarray], v: Version
             ) -> tuple[np.ndarray, np.ndarray]:
    """The codes ``v`` gives ``source``'s rows, and each row's error (see :func:`_errors`),
    a chunk at a time."""
    codes = np.empty((source.n, v.space.levels), dtype=np.int64)
    errors = np.empty(source.n, dtype=np.float32)
    for first, x in source.chunks(CHUNK_ROWS):
        part = slice(first, first + x.shape[0])
        codes[part] = engine.encode(x, books, v.residual, v.beam)
        errors[part] = _errors(x, codes[part], books, v.residual)
    return codes, errors


@dataclass
class StatsReport:
    """Every quality figure of a version, by name (see :mod:`registry.quality`)."""

    version: Version
    figures: dict

    def to_dict(self) -> dict:
        return {"version": self.version.number, **self.figures}


def stats(tx: Tx, ref: str | int | None, *, sample: int = 1000, seed: int = 0) -> StatsReport:
    """Every quality figure of a version (see :mod:`registry.quality`), over all its items;
    neighbourhood agreement over ``sample`` of them."""
    if not 10 <= sample <= 100_000:
        raise InputError(f"sample must be between 10 and 100000, got {sample}", param="sample")
    with tx(write=False) as conn:
        v = versions.resolve(conn, ref)
        books = codebooks.read(conn, v.number)
        item_ids, packed, disambs = assignments.held(conn, v.number)
        codes = v.space.unpack(packed)
        figures = {"items": len(item_ids), "raw_collision_rate": 0.0,
                   **quality.headline(codes, v.space.sizes)}
        figures["largest_disambiguation"] = int(disambs.max()) if len(disambs) else 0
        figures["max_disambiguation"] = v.max_disambiguation
        figures["vocabulary_tokens"] = v.vocabulary_size
        if len(item_ids):
            source = scan.Vectors(conn, item_ids, v.dim,
                                  *items.population_from(conn, v.number, None))
            figures.update(_measured(source, codes, books, v, sample, seed))
    return StatsReport(v, figures)


def _measured(source: scan.Vectors, codes: np.ndarray, books: list[np.ndarray], v: Version,
              sample: int, seed: int) -> dict:
    """The figures of :func:`stats` that need the vectors, read a chunk at a time: the raw
    collision rate of the codes the version's encoder gives the items now (before collision
    handling; the issued codes are after it), the reconstruction error of the issued codes
    (plain residuals) and the neighbourhood agreement of ``sample`` items."""
    def prepared(rows: np.ndarray) -> np.ndarray:
        return engine.prepare(source.take_any(rows), overwrite=True)

    raw = np.empty_like(codes)
    sums = quality.ReconstructionSums() if v.residual == "plain" else None
    near = quality.Neighbours(prepared, source.n, sample=sample, seed=seed)
    for first, chunk in source.chunks(CHUNK_ROWS):
        x = engine.prepare(chunk, overwrite=True)
        part = slice(first, first + x.shape[0])
        raw[part] = engine.encode(x, books, v.residual, v.beam)
        if sums is not None:
            sums.add(x, engine.decode(codes[part], books))
        near.add(x, first)
    out = {"raw_collision_rate": quality.collision_rate(raw)}
    if sums is not None:
        out["reconstruction_error"] = sums.value()
    out["neighbourhood_agreement"] = near.agreement(codes)
    out["agreement_sample"] = min(sample, source.n)
    return out
