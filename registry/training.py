"""Training a version: read the live items, run the engine (cold, or warm from a parent
version), number the IDs, and write the version, its codebooks and every ID in one
transaction."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import engine
from .errors import InputError, StateError
from .hooks import pause_point
from .ids import (
    MAX_DISAMBIGUATION_LIMIT,
    CodeSpace,
    check_sizes,
    default_max_disambiguation,
    disambiguate,
    disambiguate_keeping,
)
from .quality import headline
from .store import assignments, codebooks, db, items, lookups, versions
from .store.db import Tx
from .store.versions import Version

# a warm start needs few rounds; more only let the centroids wander off
WARM_NITER = 5
# with --from: an item keeps its code while that centroid is within this share of the
# nearest one's squared distance
DEFAULT_STICKINESS = 0.02


@dataclass
class TrainSummary:
    """What a train made: the new version, its item count and headline figures."""

    version: Version
    items: int
    raw_collision_rate: float
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"version": self.version.to_dict(), "items": self.items,
                "levels": len(self.version.params["codebook_sizes"]),
                "codebook_sizes": self.version.params["codebook_sizes"],
                "raw_collision_rate": self.raw_collision_rate,
                "semantic_unique_share": self.version.stats["semantic_unique_share"],
                "seconds": self.seconds,
                "warnings": self.warnings}


def codebook_sizes(levels: int | None, codebook_size: int | Sequence[int]) -> tuple[int, ...]:
    """One size for every level, or one per level (then ``levels`` may be left out)."""
    if isinstance(codebook_size, int):
        sizes = [codebook_size] * (3 if levels is None else levels)
    else:
        sizes = list(codebook_size)
        if levels is not None and levels != len(sizes):
            raise InputError(f"{len(sizes)} codebook sizes given for {levels} levels",
                             source="--codebook-size")
    if levels is not None and levels < 1:
        raise InputError(f"levels must be at least 1, got {levels}", source="--levels")
    return check_sizes(sizes)


def train(tx: Tx, *, levels: int | None = None,
          codebook_size: int | Sequence[int] | None = None, name: str | None = None,
          seed: int = 0, residual: str | None = None, niter: int | None = None,
          refine: int | None = None, max_points_per_centroid: int = 256,
          from_version: str | int | None = None,
          stickiness: float | None = None, reason: str | None = None,
          collisions: str | None = None, balance: float | None = None,
          beam: int | None = None, max_disambiguation: int | None = None,
          allocation_block: int | None = None) -> TrainSummary:
    """Train a new draft version on every live item and give each item an ID in it.

    With ``from_version`` the new version starts from that version's codebooks and its
    items keep their codes (and full IDs) wherever the data allows (see
    :mod:`registry.stable`); its sizes and residual mode are the parent's by default.
    """
    start = time.perf_counter()
    if name is not None:
        versions.check_name(name)
    if stickiness is not None and from_version is None:
        raise InputError("stickiness applies to a retrain from another version: add --from "
                         "VERSION, or leave it out", source="--stickiness")
    stickiness = DEFAULT_STICKINESS if stickiness is None else stickiness
    if not 0 <= stickiness <= 10:
        raise InputError(f"stickiness must be between 0 and 10, got {stickiness}",
                         source="--stickiness")
    if allocation_block is not None and \
            not 1 <= allocation_block <= versions.MAX_ALLOCATION_BLOCK:
        raise InputError(f"the allocation block must be between 1 and "
                         f"{versions.MAX_ALLOCATION_BLOCK} item ids, got {allocation_block}",
                         source="--allocation-block")
    if max_disambiguation is not None and \
            not 0 <= max_disambiguation <= MAX_DISAMBIGUATION_LIMIT:
        raise InputError(f"the disambiguation limit must be between 0 and "
                         f"{MAX_DISAMBIGUATION_LIMIT}, got {max_disambiguation}",
                         source="--max-disambiguation")
    with tx(write=False) as conn:
        if name is not None and (clash := versions.by_name(conn, name)) is not None:
            raise StateError(f"{clash.label} already exists and is {clash.state}: its "
                             "codebooks and IDs never change; train under another --name")
        parent = None if from_version is None else versions.resolve(conn, from_version)
        params = train_params(parent, levels, codebook_size, seed, residual, niter,
                              max_points_per_centroid, collisions, balance, refine, beam)
        space = items.single_space(conn)
        if space is None:
            raise InputError("no items to train on: add some with `registry add` first",
                             source="train")
        if parent is not None and (parent.dim, parent.embedding_model) != (space.dim,
                                                                            space.model):
            raise InputError(f"{parent.label} was trained on other embeddings than the "
                             "items have now: train without --from", source="--from")
        item_ids, vectors = items.live_vectors(conn, space.dim)
        if parent is not None:
            warm = codebooks.read(conn, parent.number)
            held = lookups.population(conn, parent.number)
    space_codes = CodeSpace(params.codebook_sizes)
    old_packed = old_disamb = keep = None
    if parent is not None:
        old_packed = np.full(len(item_ids), -1, dtype=np.int64)
        old_disamb = np.full(len(item_ids), -1, dtype=np.int64)
        # the live items that had an ID in the parent (removed ones are not trained on)
        _, live_at, held_at = np.intersect1d(item_ids, np.asarray(held.item_ids),
                                             assume_unique=True, return_indices=True)
        old_packed[live_at] = np.asarray(held.codes, dtype=np.int64)[held_at]
        old_disamb[live_at] = np.asarray(held.disambs, dtype=np.int64)[held_at]
        keep = np.full((len(item_ids), params.levels), -1, dtype=np.int64)
        had = old_packed >= 0
        keep[had] = space_codes.unpack(old_packed[had])
        result = engine.train(vectors, params, overwrite=True, warm=warm, keep=keep,
                              stickiness=stickiness)
    else:
        result = engine.train(vectors, params, overwrite=True)  # ours: spare a copy
    del vectors
    packed = space_codes.pack(result.codes)
    if parent is None:
        disamb = disambiguate(packed)
    else:
        disamb = disambiguate_keeping(packed, old_packed, old_disamb)
    largest = int(disamb.max())
    stats = {**result.stats, **headline(result.codes, params.codebook_sizes),
             "largest_disambiguation": largest}
    # the version's vocabulary: every ID it will ever issue ends in one of <x_0>..<x_limit>
    limit = default_max_disambiguation(params.codebook_sizes, largest) \
        if max_disambiguation is None else max_disambiguation
    if largest > limit:
        raise InputError(f"training gives disambiguation numbers up to {largest}, above the "
                         f"limit of {limit}: raise the limit or train with a larger code "
                         "space (more codes per level, or more levels)",
                         source="--max-disambiguation")
    stored_params = {**params.to_dict(), "max_disambiguation": limit,
                     "allocation_block": versions.DEFAULT_ALLOCATION_BLOCK
                     if allocation_block is None else allocation_block}
    if parent is not None:
        had = old_packed >= 0
        same = np.cumsum(result.codes[had] != keep[had], axis=1) == 0
        stats["stability"] = {
            "parent": parent.number, "stickiness": stickiness, "items": int(had.sum()),
            "same_codes": [float(x) for x in same.mean(axis=0)] if had.any() else [],
            "same_id": float(((packed == old_packed) & (disamb == old_disamb))[had].mean())
            if had.any() else 0.0}
    pause_point("train-trained")
    with tx(write=True) as conn:
        now = db.now()
        number = versions.create(conn, name=name, params=stored_params, dim=space.dim,
                                 embedding_model=space.model,
                                 parent=None if parent is None else parent.number,
                                 stats=stats, now=now)
        codebooks.write(conn, number, result.codebooks)
        assignments.write(conn, number, item_ids, packed, disamb, incremental=False)
        pause_point("train-written")
        versions.log_event(conn, "train", now, version=number,
                           other=None if parent is None else parent.number,
                           params=stored_params, reason=reason)
        version = versions.get(conn, number)
        # ANALYZE counts the rows this transaction wrote
        assignments.refresh_statistics(conn, number, len(item_ids))
    return TrainSummary(version, len(item_ids), stats["raw_collision_rate"],
                        round(time.perf_counter() - start, 3), stats.get("warnings", []))


def train_params(parent: Version | None, levels, codebook_size, seed, residual, niter,
                 max_points_per_centroid, collisions, balance,
                 refine=None, beam=None) -> engine.TrainParams:
    """The parameters of a new version; a parent (``--from``) fixes sizes and residuals."""
    if parent is None:
        sizes = codebook_sizes(levels, 256 if codebook_size is None else codebook_size)
    else:
        sizes = tuple(parent.params["codebook_sizes"])
        if (levels is not None or codebook_size is not None) and \
                codebook_sizes(levels or len(sizes),
                               codebook_size if codebook_size is not None
                               else list(sizes)) != sizes:
            raise InputError(f"--from {parent.number} keeps its codebook sizes "
                             f"{list(sizes)}", source="--codebook-size")
        if residual is not None and residual != parent.residual:
            raise InputError(f"--from {parent.number} keeps its {parent.residual} "
                             "residuals", source="--residual")
        residual = parent.residual
    if niter is None:
        niter = engine.DEFAULT_NITER if parent is None else WARM_NITER
    if parent is not None and refine:
        raise InputError("--refine does not apply to --from: a stable retrain keeps the "
                         "parent's codes instead", source="--refine")
    if parent is not None and beam is None:
        beam = parent.beam  # new items are encoded as the parent's were
    if collisions is None:
        collisions = "nearest-free" if parent is None else \
            parent.collisions
    return engine.TrainParams(sizes, niter=niter, seed=seed,
                              max_points_per_centroid=max_points_per_centroid,
                              residual=residual or "plain", collisions=collisions,
                              balance=balance,
                              refine=0 if parent is not None else refine,
                              beam=beam)
