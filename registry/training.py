"""Training a version: read the live items, run the engine (cold, or warm from a parent
version), number the IDs, and write the version, its codebooks and every ID in one
transaction."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import chunked, defaults, engine
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
from .store import assignments, codebooks, db, items, occupancy, scan, versions
from .store.db import Tx
from .store.versions import Version


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
                "levels": self.version.space.levels,
                "codebook_sizes": list(self.version.space.sizes),
                "raw_collision_rate": self.raw_collision_rate,
                "semantic_unique_share": self.version.stats["semantic_unique_share"],
                "seconds": self.seconds,
                "warnings": self.warnings}


@dataclass(frozen=True)
class TrainRequest:
    """Everything a train is asked for, with its defaults in one place (None: decided when
    the train runs, as the field's comment says). Field names are the parameters of
    :meth:`registry.api.Registry.train` and the options of ``registry train``."""

    levels: int | None = None  # one per codebook size, else defaults.LEVELS
    # defaults.CODEBOOK_SIZE; from_version: the parent's
    codebook_size: int | tuple[int, ...] | None = None
    name: str | None = None
    seed: int = defaults.SEED
    residual: str | None = None  # defaults.RESIDUAL; from_version: the parent's
    niter: int | None = None  # defaults.NITER; from_version: defaults.WARM_NITER
    refine: int | None = None  # defaults.REFINE where it applies, else 0
    beam: int | None = None  # defaults.BEAM where it applies; from_version: the parent's
    max_points_per_centroid: int = defaults.MAX_POINTS_PER_CENTROID
    from_version: str | int | None = None
    stickiness: float | None = None  # with from_version only: defaults.STICKINESS
    collisions: str | None = None  # defaults.COLLISIONS; from_version: the parent's
    balance: float | None = None
    max_disambiguation: int | None = None  # ids.default_max_disambiguation
    allocation_block: int | None = None  # defaults.ALLOCATION_BLOCK
    reason: str | None = None

    def check(self) -> None:
        """What can be refused before reading anything (the rest is the engine's)."""
        if self.name is not None:
            versions.check_name(self.name)
        if self.stickiness is not None and self.from_version is None:
            raise InputError("applies to a retrain from another version (`from_version`): "
                             "leave it out, or name that version", param="stickiness")
        if not 0 <= self.sticky <= 10:
            raise InputError(f"stickiness must be between 0 and 10, got {self.stickiness}",
                             param="stickiness")
        if self.allocation_block is not None and \
                not 1 <= self.allocation_block <= versions.MAX_ALLOCATION_BLOCK:
            raise InputError(f"the allocation block must be between 1 and "
                             f"{versions.MAX_ALLOCATION_BLOCK} item ids, got "
                             f"{self.allocation_block}", param="allocation_block")
        if self.max_disambiguation is not None and \
                not 0 <= self.max_disambiguation <= MAX_DISAMBIGUATION_LIMIT:
            raise InputError(f"the disambiguation limit must be between 0 and "
                             f"{MAX_DISAMBIGUATION_LIMIT}, got {self.max_disambiguation}",
                             param="max_disambiguation")

    @property
    def sticky(self) -> float:
        return defaults.STICKINESS if self.stickiness is None else self.stickiness

    def params(self, parent: Version | None) -> engine.TrainParams:
        """The engine's parameters; a parent (``from_version``) fixes sizes and residuals."""
        if parent is None:
            sizes = codebook_sizes(self.levels, defaults.CODEBOOK_SIZE
                                   if self.codebook_size is None else self.codebook_size)
            residual = self.residual or defaults.RESIDUAL
        else:
            sizes = parent.space.sizes
            if (self.levels is not None or self.codebook_size is not None) and \
                    codebook_sizes(self.levels or len(sizes),
                                   self.codebook_size if self.codebook_size is not None
                                   else list(sizes)) != sizes:
                raise InputError(f"a retrain from {parent.label} keeps its codebook sizes "
                                 f"{list(sizes)}", param="codebook_size")
            if self.residual is not None and self.residual != parent.residual:
                raise InputError(f"a retrain from {parent.label} keeps its {parent.residual} "
                                 "residuals", param="residual")
            residual = parent.residual
        niter = self.niter
        if niter is None:
            niter = defaults.NITER if parent is None else defaults.WARM_NITER
        collisions = self.collisions
        if collisions is None:
            collisions = defaults.COLLISIONS if parent is None else parent.collisions
        return engine.TrainParams(
            sizes, niter=niter, seed=self.seed,
            max_points_per_centroid=self.max_points_per_centroid, residual=residual,
            collisions=collisions, balance=self.balance,
            # a stable retrain keeps the parent's codes instead (the engine refuses more)
            refine=0 if parent is not None and self.refine is None else self.refine,
            # new items are encoded as the parent's were
            beam=parent.beam if parent is not None and self.beam is None else self.beam)


def codebook_sizes(levels: int | None, codebook_size: int | Sequence[int]) -> tuple[int, ...]:
    """One size for every level, or one per level (then ``levels`` may be left out)."""
    if isinstance(codebook_size, int):
        sizes = [codebook_size] * (defaults.LEVELS if levels is None else levels)
    else:
        sizes = list(codebook_size)
        if levels is not None and levels != len(sizes):
            raise InputError(f"{len(sizes)} codebook sizes given for {levels} levels",
                             param="codebook_size")
    if levels is not None and levels < 1:
        raise InputError(f"levels must be at least 1, got {levels}", param="levels")
    return check_sizes(sizes)


def train(tx: Tx, request: TrainRequest | None = None, **fields) -> TrainSummary:
    """Train a new draft version on every live item and give each item an ID in it, as
    ``request`` asks (or a TrainRequest of ``fields``).

    With ``from_version`` the new version starts from that version's codebooks and its
    items keep their codes (and full IDs) wherever the data allows (see
    :mod:`registry.stable`); its sizes and residual mode are the parent's by default.
    """
    start = time.perf_counter()
    if request is not None and fields:
        raise TypeError("give a TrainRequest or its fields, not both")
    r = TrainRequest(**fields) if request is None else request
    r.check()
    stickiness = r.sticky
    name = r.name
    with tx(write=False) as conn:
        if name is not None and (clash := versions.by_name(conn, name)) is not None:
            raise StateError(f"{clash.label} already exists and is {clash.state}: its "
                             "codebooks and IDs never change; train under another `name`")
        parent = None if r.from_version is None else versions.resolve(conn, r.from_version)
        params = r.params(parent)
        space = items.single_space(conn)
        if space is None:
            raise InputError("no items to train on: add some with `registry add` first")
        if parent is not None and (parent.dim, parent.embedding_model) != (space.dim,
                                                                            space.model):
            raise InputError(f"{parent.label} was trained on other embeddings than the "
                             "items have now: train without it", param="from_version")
        source = vectors = None
        if chunked.in_memory(items.count_live(conn), space.dim, params, chunked.CHUNK_ROWS):
            # read whole, and trained once this transaction is over
            item_ids, vectors = items.live_vectors(conn, space.dim)
        else:
            source = scan.LiveVectors(conn, space)
            item_ids = source.ids
        space_codes = CodeSpace(params.codebook_sizes)
        old_packed = old_disamb = keep = warm = None
        if parent is not None:
            warm = codebooks.read(conn, parent.number)
            held_ids, held_codes, held_disambs = assignments.held(conn, parent.number)
            old_packed = np.full(len(item_ids), -1, dtype=np.int64)
            old_disamb = np.full(len(item_ids), -1, dtype=np.int64)
            # the live items that had an ID in the parent (removed ones are not trained on)
            _, live_at, held_at = np.intersect1d(item_ids, held_ids, assume_unique=True,
                                                 return_indices=True)
            old_packed[live_at] = held_codes[held_at]
            old_disamb[live_at] = held_disambs[held_at]
            del held_ids, held_codes, held_disambs
            keep = np.full((len(item_ids), params.levels), -1, dtype=np.int64)
            had = old_packed >= 0
            keep[had] = space_codes.unpack(old_packed[had])
        if source is not None:
            # a chunk at a time, in this read transaction (every chunk read in one
            # snapshot): memory bounded whatever the catalog's size (registry.chunked)
            result = chunked.train(source, params, warm=warm, keep=keep,
                                   stickiness=stickiness)
            del source
    if vectors is not None:
        result = engine.train(vectors, params, overwrite=True, warm=warm, keep=keep,
                              stickiness=stickiness)
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
        if r.max_disambiguation is None else r.max_disambiguation
    if largest > limit:
        raise InputError(f"training gives disambiguation numbers up to {largest}, above the "
                         f"limit of {limit}: raise the limit or train with a larger code "
                         "space (more codes per level, or more levels)",
                         param="max_disambiguation")
    stored_params = {**params.to_dict(), "max_disambiguation": limit,
                     "allocation_block": defaults.ALLOCATION_BLOCK
                     if r.allocation_block is None else r.allocation_block}
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
        tuples = math.prod(params.codebook_sizes)
        if params.collisions == "nearest-free" and occupancy.fits(tuples):
            # what assign starts from, without reading every ID back
            occupancy.write(conn, number, occupancy.of_codes(packed, tuples), len(item_ids))
        pause_point("train-written")
        versions.log_event(conn, "train", now, version=number,
                           other=None if parent is None else parent.number,
                           params=stored_params, reason=r.reason)
        version = versions.get(conn, number)
        # ANALYZE counts the rows this transaction wrote
        assignments.refresh_statistics(conn, number, len(item_ids))
    return TrainSummary(version, len(item_ids), stats["raw_collision_rate"],
                        round(time.perf_counter() - start, 3), stats.get("warnings", []))
