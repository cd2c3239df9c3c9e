"""The occupancy bits a version keeps of the code tuples it has issued (store.occupancy):
written by train, kept up to date by assign, made again where missing or stale, and never a
reason for other IDs than reading every issued code gives; on SQLite and PostgreSQL."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sqlalchemy import text

from registry import Registry
from registry.store import assignments, db, occupancy

from .conftest import make_keys, make_vectors

SIZES = [8, 4, 4]


def _bits(url: str, version: int) -> tuple[int | None, np.ndarray | None, np.ndarray]:
    """The row's count, its bits (None without a row) and the bits of every issued code."""
    engine = db.make_engine(url)
    try:
        with db.transaction(engine, write=False) as conn:
            count = conn.execute(text("SELECT ids FROM occupancy WHERE version_id = :v"),
                                 {"v": version}).scalar()
            issued = assignments.issued_codes(conn, version)
            held = None if count is None else \
                occupancy.read(conn, version, math.prod(SIZES), count)
    finally:
        engine.dispose()
    return count, held, occupancy.of_codes(issued, math.prod(SIZES))


def _set(url: str, sql: str) -> None:
    engine = db.make_engine(url)
    try:
        with db.transaction(engine, write=True) as conn:
            conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


def _registry(url: str) -> Registry:
    reg = Registry(url)
    reg.add(make_keys(600), make_vectors(600, seed=1))
    reg.train(codebook_size=SIZES, seed=3, max_disambiguation=1000, allocation_block=64)
    reg.freeze(1)
    return reg


@pytest.mark.parametrize("damage", ["none", "missing", "stale"])
def test_assign_gives_the_same_ids_whatever_the_bits(migrated_url, damage):
    reg = _registry(migrated_url)
    count, held, want = _bits(migrated_url, 1)
    assert count == 600 and np.array_equal(held, want)  # written by the train
    new = make_keys(300, start=600)
    reg.add(new[:150], make_vectors(150, seed=7))
    reg.assign(1, batch_size=64)
    if damage == "missing":  # as in a database from before migration 0011
        _set(migrated_url, "DELETE FROM occupancy")
    elif damage == "stale":  # bits of another count of IDs: not to be trusted (these say
        # every tuple is free: taken at their word, new items would collide with issued IDs)
        engine = db.make_engine(migrated_url)
        try:
            with db.transaction(engine, write=True) as conn:
                occupancy.write(conn, 1, np.zeros(math.prod(SIZES), dtype=bool), 749)
        finally:
            engine.dispose()
    reg.add(new[150:], make_vectors(150, seed=8))
    reg.assign(1, batch_size=64)
    count, held, want = _bits(migrated_url, 1)
    assert count == 900 and np.array_equal(held, want)  # made again, and kept up to date
    ids = [r.id for r in reg.get(new, 1)]
    reg.close()
    # the same catalog assigned with the bits whole throughout
    other_url = migrated_url.replace("registry.db", "other.db") \
        if migrated_url.startswith("sqlite") else None
    if other_url is None:
        return  # one PostgreSQL schema per test: the SQLite run compares the two
    with Registry(other_url) as other:
        other.init()
    other = _registry(other_url)
    other.add(new[:150], make_vectors(150, seed=7))
    other.assign(1, batch_size=64)
    other.add(new[150:], make_vectors(150, seed=8))
    other.assign(1, batch_size=64)
    assert [r.id for r in other.get(new, 1)] == ids
    other.close()


def test_a_deleted_draft_takes_its_bits_along(migrated_url):
    reg = _registry(migrated_url)
    reg.train(codebook_size=SIZES, seed=4, name="oops")
    assert _bits(migrated_url, 2)[0] == 600
    reg.delete("oops", reason="a mistake")
    assert _bits(migrated_url, 2)[0] is None
    reg.close()


def test_a_version_without_nearest_free_keeps_no_bits(migrated_url):
    reg = _registry(migrated_url)
    reg.train(codebook_size=SIZES, seed=4, collisions="suffix")
    assert _bits(migrated_url, 2)[0] is None
    reg.close()
