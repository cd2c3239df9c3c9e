"""Incremental assignment: give live items without an ID in a version one, against its
frozen codebooks, batch by batch; with several worker processes on PostgreSQL.

Each batch is one transaction:

1. claim up to ``batch_size`` unassigned items. On PostgreSQL the claim takes an advisory
   lock on each block of item ids they fall in (``items.claim``), so concurrent assigners, on
   one host or many, take disjoint batches; a killed assigner's transaction is rolled back and
   its blocks are free again. On SQLite the writer lock (``BEGIN IMMEDIATE``) runs the batches
   one at a time.
2. encode them (the costly part, in parallel across assigners on PostgreSQL);
3. lock the version row, which serialises ID allocation only: collisions are resolved
   against the tuples already issued, disambiguation numbers computed, rows inserted.

Existing IDs are never touched; a rerun picks up whatever an interrupted run left.
"""

from __future__ import annotations

import bisect
import itertools
import math
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass

import numpy as np

from . import collisions, engine
from .errors import InputError, RegistryError, StateError
from .hooks import pause_point
from .ids import disambiguate
from .store import assignments, codebooks, db, items, occupancy, seals, versions
from .store.db import Tx
from .store.versions import State, Version

# a worker that finds nothing to claim while other assigners still hold unassigned items
# waits this long before looking again: one of them may die and release its batch
WAIT_S = 0.2
MAX_WORKERS = 64


@dataclass
class AssignResult:
    """What an assign did: the version, items given an ID, batches, seconds; ``full``: items
    left without one because their code tuple is full (an ID there would need a
    disambiguation number above the version's limit, a token outside its vocabulary)."""

    version: Version
    assigned: int
    batches: int
    seconds: float
    full: int = 0

    def to_dict(self) -> dict:
        return {"version": self.version.number, "assigned": self.assigned,
                "batches": self.batches, "seconds": self.seconds, "full": self.full}

    def problem(self) -> str | None:
        """One line on the items left without an ID, or None."""
        return left_out(self.version, self.full)


def left_out(v: Version, full: int) -> str | None:
    """One line on ``full`` items left without an ID in ``v``, or None for none."""
    if not full:
        return None
    return (f"{full} new item{'s' if full != 1 else ''} got no ID in {v.label}: their code "
            "tuples are full (an ID there would need a disambiguation number above the "
            f"version's limit of {v.max_disambiguation}, outside its vocabulary). Train a "
            "version with a larger code space (more codes per level, or more levels) and move "
            "to it")


def block_end(v: Version, item_id: int) -> int:
    """The first item id of the allocation block after ``item_id``'s: IDs are allocated a
    block of ``v.allocation_block`` consecutive item ids at a time, in id order (see
    :func:`_allocate`), and a batch holds whole blocks, so that which items contend for a
    code tuple together never depends on the batch size."""
    return (int(item_id) // v.allocation_block + 1) * v.allocation_block


def run(tx: Tx, url: str, version: str | int | None, batch_size: int,
        workers: int) -> AssignResult:
    """Assign in this process, or in ``workers`` processes (see :func:`assign_parallel`)."""
    check(batch_size, workers)
    if workers > 1:
        return assign_parallel(tx, url, version, batch_size, workers)
    return assign(tx, version, batch_size)


def check(batch_size: int, workers: int) -> None:
    if not 1 <= batch_size <= 1_000_000:
        raise InputError(f"batch size must be between 1 and 1000000, got {batch_size}",
                         param="batch_size")
    if not 1 <= workers <= MAX_WORKERS:
        raise InputError(f"workers must be between 1 and {MAX_WORKERS}, got {workers}",
                         param="workers")


def assign(tx: Tx, version: str | int | None, batch_size: int) -> AssignResult:
    """Assign in this process until no live item of the version is left without an ID."""
    start = time.perf_counter()
    with tx(write=False) as conn:
        v = versions.resolve(conn, version)
        if v.state == State.RETIRED:
            raise StateError(f"{v.label} is retired; no new IDs are given in it")
        books = codebooks.read(conn, v.number)
        space = items.single_space(conn)
    if space is not None and (space.dim != v.dim or space.model != v.embedding_model):
        trained_on = items.Space(v.embedding_model, v.dim)
        raise InputError(f"the items' embeddings come from {space.description}, not from "
                         f"{trained_on.description} that {v.label} was trained on: "
                         "train a new version", source="assign")
    total = batches = full = 0
    if space is None:
        return AssignResult(v, 0, 0, round(time.perf_counter() - start, 3))
    issued = _Issued(v)
    # closing: an error while allocating ends the generator, and so rolls its batch back
    with closing(_batches(tx, v, space, batch_size)) as claimed:
        for conn, item_ids, vectors in claimed:
            pause_point("assign-claimed")
            left = _allocate(conn, v, books, item_ids, vectors, issued)
            total += len(item_ids) - left
            full += left
            batches += 1
            # released before the next batch is read, which then reuses their memory
            # instead of faulting in fresh pages (see registry.allocator): the next batch's
            # encode takes far fewer page faults (BENCHMARKS.md, Design figures: batch memory
            # reuse)
            del item_ids, vectors
    if total:
        with tx(write=False, snapshot=False) as conn:  # SQLite: nothing to do, no lock
            assignments.refresh_statistics(conn, v.number, total)
    return AssignResult(v, total, batches, round(time.perf_counter() - start, 3), full)


def _batches(tx: Tx, v: Version, space: items.Space, batch_size: int) -> Iterator[tuple]:
    """(connection, ids, vectors) of each claimed batch, inside its write transaction."""
    # PostgreSQL: the unassigned ids found at the start of a round; the first round lists
    # every one (above the ids all given, where there are such), later rounds only those
    # listed before that this assigner could not claim (another holds them, and may die) and
    # those above every id listed so far (added since)
    pending: list[int] = []
    missed: list[int] = []
    pos = after = top = 0
    first_round, claimed_in_round = True, True
    while True:
        with tx(write=True) as conn:
            current = versions.get(conn, v.number)
            if current is None or current.state == State.RETIRED:
                raise StateError(f"{v.label} was retired while assigning")
            if conn.dialect.name != "postgresql":
                # SQLite runs one writer at a time: the next unassigned items by id
                if first_round:
                    first = items.first_unassigned(conn, space, v.number)
                    if first is None:
                        return
                    after, first_round = first - 1, False
                # the batch ends with a whole allocation block
                last = items.nth_unassigned(conn, space, v.number, after, batch_size)
                item_ids, vectors = items.next_unassigned(
                    conn, space, v.number, after, batch_size + v.allocation_block,
                    below=None if last is None else block_end(v, last))
                if len(item_ids) == 0:
                    return
                after = int(item_ids[-1])
                yield conn, item_ids, vectors
                item_ids = vectors = None  # as in assign: free for the next batch
                continue
            if pos >= len(pending):
                if not claimed_in_round:
                    pending = []  # all held by other assigners: wait, then look again
                else:
                    if first_round:  # usually only items above it are without an ID
                        top = items.assigned_through(conn, v.number) or 0
                    pending = items.unassigned_ids(conn, space, v.number, after=top)
                    if not first_round and missed:
                        pending = sorted(set(pending).union(
                            items.unassigned_ids(conn, space, v.number, among=missed)))
                    if not pending:
                        return
                    top = max(top, pending[-1])
                    pos, missed, first_round, claimed_in_round = 0, [], False, False
            if pending:
                # up to batch_size items, then on to the end of the last one's block
                last = pending[min(pos + batch_size, len(pending)) - 1]
                end = bisect.bisect_left(pending, block_end(v, last))
                wanted = pending[pos:end]
                item_ids, vectors = items.claim(conn, space, v.number, wanted)
                pos = end
                if len(item_ids) < len(wanted):
                    missed += sorted(set(wanted).difference(item_ids.tolist()))
                if len(item_ids):
                    claimed_in_round = True
                    yield conn, item_ids, vectors
                    item_ids = vectors = None
                    continue
        if not pending:
            # the items another assigner holds come back if it dies: look again shortly
            time.sleep(WAIT_S)
            claimed_in_round = True


class _Issued:
    """The code tuples a version has issued, kept across the batches of one assign run: read
    once, then extended with each batch this run writes; read again when the version holds
    another count of IDs than this run knows of (another assigner wrote a batch meanwhile).
    Where the version's code space is small enough (:mod:`registry.store.occupancy`), one
    boolean per tuple, read from the version's occupancy row (made from the IDs where it is
    missing or stale) and kept there up to date; else the sorted packed codes."""

    def __init__(self, v: Version) -> None:
        self.v = v
        self.tuples = math.prod(v.space.sizes)
        self.dense = occupancy.fits(self.tuples)
        self.taken: np.ndarray | None = None  # one boolean per tuple
        self.codes: np.ndarray | None = None  # sorted packed codes
        self.count = -1

    def refresh(self, conn) -> None:
        """Bring it up to date: the caller holds the version's lock."""
        count = assignments.count(conn, self.v.number)
        if count == self.count:
            return
        if not self.dense:
            self.codes = assignments.issued_codes(conn, self.v.number)
        else:
            self.taken = occupancy.read(conn, self.v.number, self.tuples, count)
            if self.taken is None:
                self.taken = occupancy.of_codes(assignments.issued_codes(conn, self.v.number),
                                                self.tuples)
                occupancy.write(conn, self.v.number, self.taken, count)
        self.count = count

    def occupancy(self) -> collisions.Occupancy:
        """A fresh occupancy of the tuples issued, for nearest-free to take more."""
        if self.dense:
            return collisions.Occupancy(self.v.space, dense=self.taken.copy())
        return collisions.Occupancy(self.v.space, self.codes)

    def issued(self, packed: np.ndarray) -> np.ndarray:
        """Which of ``packed`` the version had issued before this batch."""
        if self.dense:
            return self.taken[packed]
        return collisions.find_sorted(self.codes, packed)[1]

    def add(self, conn, packed: np.ndarray) -> None:
        """The batch's codes, written in this transaction: kept here, and in the version's
        occupancy row."""
        self.count += packed.size
        if self.dense:
            self.taken[packed] = True
            occupancy.write(conn, self.v.number, self.taken, self.count)
        else:
            new = np.sort(packed)
            self.codes = np.insert(self.codes, np.searchsorted(self.codes, new), new)


def _allocate(conn, v: Version, books, item_ids, vectors, issued: _Issued) -> int:
    """Give the batch's items IDs and write them; how many were left without one (their
    tuples are full at the version's disambiguation limit)."""
    kept = engine.Kept()  # what the encoder computed that nearest-free starts from
    codes = engine.encode(vectors, books, v.residual, v.beam, kept=kept)
    # holding the version row serialises ID allocation between assigners
    current = versions.get(conn, v.number, lock=True)
    nearest_free = v.collisions == "nearest-free"
    if nearest_free:
        issued.refresh(conn)
        taken = issued.occupancy()
        products = collisions.up_products(kept.products, codes, books) \
            if kept.products else None
        # block by block, in id order, each seeing the tuples the ones before it took
        blocks = np.asarray(item_ids) // v.allocation_block
        starts = [0, *(np.flatnonzero(blocks[1:] != blocks[:-1]) + 1).tolist(), len(blocks)]
        for lo, hi in itertools.pairwise(starts):
            codes[lo:hi], _ = collisions.nearest_free(
                lambda rows, lo=lo: engine.prepare(vectors[rows + lo], overwrite=True),
                codes[lo:hi], books, v.residual, v.space, taken,
                products=None if products is None else
                (lambda rows, lo=lo: products(rows + lo)),
                residual_sq=None if kept.residual_sq is None else kept.residual_sq[lo:hi])
        del taken
    packed = v.space.pack(codes)
    # with the version's codes all known here, only a code already issued needs its largest
    # number from the database; the others start at 0
    ask = issued.issued(packed) if nearest_free else np.ones(len(packed), dtype=bool)
    first = np.zeros(len(packed), dtype=np.int64)
    if ask.any():
        first[ask] = assignments.first_free(conn, v.number, packed[ask])
    disamb = disambiguate(packed, first)
    # the version's vocabulary is fixed: an ID it cannot spell is never issued. Numbers count
    # up within a tuple, so the items left out are each full tuple's last comers
    fits = disamb <= v.max_disambiguation
    left = int((~fits).sum())
    if left:
        item_ids, packed, disamb = item_ids[fits], packed[fits], disamb[fits]
    assignments.write(conn, v.number, item_ids, packed, disamb, incremental=True)
    if current.state != State.DRAFT:
        seals.grow(conn, v.number, item_ids, packed, disamb)
    pause_point("assign-written")
    if nearest_free:
        issued.add(conn, packed)  # an error from here on ends the run, and this cache with it
    versions.log_event(conn, "assign", db.now(), version=v.number,
                       params={"items": len(item_ids), **({"full": left} if left else {})})
    return left


def _worker(url: str, version: int, batch_size: int) -> tuple[int, int, int] | RegistryError:
    """One worker process: (assigned, batches, full), or the error it met."""
    from .store.db import Database

    try:
        with Database(url) as database:
            r = assign(database.tx, version, batch_size)
        return r.assigned, r.batches, r.full
    except RegistryError as e:
        return e  # pickled back whole: its class and message


def assign_parallel(tx: Tx, url: str, version: str | int | None, batch_size: int,
                    workers: int) -> AssignResult:
    """Run ``workers`` assigner processes on the same database and add up what they did."""
    import multiprocessing

    start = time.perf_counter()
    with tx(write=False) as conn:
        v = versions.resolve(conn, version)
    # spawn, not fork: a forked child would share this process's database connections
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        done = pool.starmap(_worker, [(url, v.number, batch_size)] * workers)
    errors = [d for d in done if isinstance(d, RegistryError)]
    if errors:
        raise errors[0]
    return AssignResult(v, sum(d[0] for d in done), sum(d[1] for d in done),
                        round(time.perf_counter() - start, 3), sum(d[2] for d in done))
