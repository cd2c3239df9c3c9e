"""``diff`` and ``drift``: read versions and their populations through the store, compare
them with :mod:`registry.compare`, and say what it means."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import compare, engine
from .errors import InputError
from .export import output_format, write_table
from .ids import format_ids
from .store import codebooks, items, lookups, versions
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
        pop_a, pop_b = lookups.population(conn, a.number), lookups.population(conn, b.number)
        books_a, books_b = codebooks.read(conn, a.number), codebooks.read(conn, b.number)
    ids_a, ids_b = np.asarray(pop_a.item_ids, dtype=np.int64), np.asarray(pop_b.item_ids,
                                                                    dtype=np.int64)
    codes_a = a.space.unpack(pop_a.codes)
    codes_b = b.space.unpack(pop_b.codes)
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
    if remap is not None:
        _write_remap(remap, pop_a, pop_b, codes_a, codes_b)
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
        if other is None:
            pops = [lookups.population(conn, v.number, incremental=flag)
                    for flag in (False, True)]
            vecs = [items.population_vectors(conn, v.number, flag, len(p.item_ids), v.dim)[1]
                    for flag, p in zip((False, True), pops, strict=True)]
        else:
            pops = [lookups.population(conn, n, incremental=False)
                    for n in (v.number, other.number)]
            vecs = [items.population_vectors(conn, n, False, len(p.item_ids), v.dim)[1]
                    for n, p in zip((v.number, other.number), pops, strict=True)]
    if not len(pops[1].item_ids):
        return DriftReport(v, other, None, reference=len(pops[0].item_ids))
    # the data's own codes (as the version encodes), not the stored ones: nearest-free moves
    # colliding items to free codes, which says nothing about how the data moved
    codes = [engine.encode(x, books, v.residual, v.beam) if len(x)
             else np.empty((0, v.space.levels), dtype=np.int64) for x in vecs]
    errors = [_errors(x, c, books, v.residual) for x, c in zip(vecs, codes, strict=True)]
    # two versions: the newer one's items include the older one's, counted once
    shared = None if other is None else np.isin(np.asarray(pops[1].item_ids, dtype=np.int64),
                                                np.asarray(pops[0].item_ids, dtype=np.int64))
    result = compare.drift(codes[0], codes[1], v.space.sizes, error_a=errors[0],
                           error_b=errors[1], keys_a=pops[0].keys, keys_b=pops[1].keys,
                           also_in_a=shared)
    return DriftReport(v, other, result)


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
    from . import quality

    if not 10 <= sample <= 100_000:
        raise InputError(f"sample must be between 10 and 100000, got {sample}", param="sample")

    with tx(write=False) as conn:
        v = versions.resolve(conn, ref)
        pop = lookups.population(conn, v.number)
        books = codebooks.read(conn, v.number)
        _, vectors = items.population_vectors(conn, v.number, None, len(pop.item_ids), v.dim)
    codes = v.space.unpack(pop.codes)
    figures = {"items": len(pop.item_ids), "raw_collision_rate": 0.0,
               **quality.headline(codes, v.space.sizes)}
    figures["largest_disambiguation"] = int(max(pop.disambs, default=0))
    figures["max_disambiguation"] = v.max_disambiguation
    figures["vocabulary_tokens"] = v.vocabulary_size
    if len(pop.item_ids):
        x = engine.prepare(vectors, overwrite=True)
        # of the codes the version's encoder gives the items now, before collision handling
        # (the issued codes are after it); in pieces, so that no second copy of x is made
        figures["raw_collision_rate"] = quality.collision_rate(np.concatenate([
            engine.encode(x[at:at + engine.ENCODE_CHUNK], books, v.residual, v.beam)
            for at in range(0, len(x), engine.ENCODE_CHUNK)]))
        if v.residual == "plain":
            figures["reconstruction_error"] = quality.reconstruction_error(
                x, engine.decode(codes, books))
        figures["neighbourhood_agreement"] = quality.neighbourhood_agreement(
            x, codes, sample=sample, seed=seed)
        figures["agreement_sample"] = min(sample, len(pop.item_ids))
    return StatsReport(v, figures)
