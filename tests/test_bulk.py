"""Bulk reads of vectors into one preallocated array, with the page-touching helper thread."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from registry.store import bulk, db, items

from .conftest import make_keys, make_vectors


@pytest.fixture
def tiny_blocks(monkeypatch):
    """The helper thread on every array, in blocks of a few rows: many hand-overs."""
    monkeypatch.setattr(bulk.Prefault, "MIN_BYTES", 0)
    monkeypatch.setattr(bulk.Prefault, "BLOCK_BYTES", 4096)


def test_prefault_never_overwrites_claimed_rows(tiny_blocks):
    out = np.empty((200_000, 16), dtype=np.float32)
    want = np.arange(out.size, dtype=np.float32).reshape(out.shape)
    with bulk.Prefault(out) as prefault:
        assert prefault.thread is not None
        for start in range(0, out.shape[0], 1999):
            end = min(start + 1999, out.shape[0])
            prefault.claim(end)
            out[start:end] = want[start:end]
            time.sleep(0.001)  # a database read: the helper runs meanwhile and meets us
    assert not prefault.thread.is_alive()
    np.testing.assert_array_equal(out, want)


def test_prefault_stops_when_the_reader_fails(tiny_blocks):
    out = np.empty((5_000, 16), dtype=np.float32)
    with pytest.raises(RuntimeError), bulk.Prefault(out) as prefault:
        prefault.claim(100)
        raise RuntimeError("read failed")
    assert not prefault.thread.is_alive()
    assert not any(t.name == "prefault" for t in threading.enumerate())


def test_small_arrays_get_no_thread():
    with bulk.Prefault(np.empty((1000, 16), dtype=np.float32)) as prefault:
        prefault.claim(1000)
        assert prefault.thread is None


def test_live_vectors_arrive_intact_beside_the_helper(reg, migrated_url, tiny_blocks):
    keys, x = make_keys(3000), make_vectors(3000, dim=24, seed=5)
    reg.add(keys[:1500], x[:1500])
    # a float16 row takes the row-by-row path of the PostgreSQL COPY parser
    reg.add(keys[1500:1501], x[1500:1501], dtype="float16")
    reg.add(keys[1501:], x[1501:])
    engine = db.make_engine(migrated_url)
    try:
        with db.transaction(engine, write=False) as conn:
            ids, got = items.live_vectors(conn, 24)
    finally:
        engine.dispose()
    assert ids.shape == (3000,) and np.all(np.diff(ids) > 0)
    want = x.copy()
    want[1500] = x[1500].astype(np.float16)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("span", [1, 7, 8192])
def test_sqlite_reads_ranges_joined_and_row_by_row_alike(reg, migrated_url, span,
                                                        monkeypatch):
    if not migrated_url.startswith("sqlite"):
        pytest.skip("SQLite's range reader")
    keys, x = make_keys(300), make_vectors(300, dim=24, seed=9)
    reg.add(keys[:100], x[:100])
    reg.add(keys[100:101], x[100:101], dtype="float16")  # its range is read row by row
    reg.add(keys[101:], x[101:])
    reg.remove(keys[50:60])  # gaps in the ids
    want = x.copy()
    want[100] = x[100].astype(np.float16)
    live = np.r_[0:50, 60:300]
    real_read = bulk.read_vectors
    monkeypatch.setattr(items, "read_vectors",
                        lambda *a, **k: real_read(*a, **{**k, "span": span}))
    engine = db.make_engine(migrated_url)
    try:
        with db.transaction(engine, write=False) as conn:
            ids, got = items.live_vectors(conn, 24)
            np.testing.assert_array_equal(got, want[live])
            space = items.single_space(conn)
            # reads with a LIMIT go in pieces of ``span`` rows, alike: across the removed
            # items and the float16 one, and past the last item
            for after, limit, part in ((30, 25, slice(31, 56)), (40, 70, slice(41, 111)),
                                       (280, 50, slice(281, None))):
                some, first = items.next_unassigned(conn, space, 1, int(ids[after]), limit)
                np.testing.assert_array_equal(some, ids[part])
                np.testing.assert_array_equal(first, want[live][part])
    finally:
        engine.dispose()


def _scratch_table():
    from sqlalchemy import BigInteger, Boolean, Column, Float, Integer, MetaData, Table

    return Table("scratch_rows", MetaData(), Column("pos", Integer), Column("big", BigInteger),
                 Column("small", Integer), Column("flag", Boolean), Column("real", Float))


@pytest.mark.parametrize("case", ["packed", "negative", "float", "too-wide"])
def test_insert_arrays_round_trips(migrated_url, case, monkeypatch):
    """Every row comes back as written, whether SQLite packs the integer columns into one
    statement or (negative, fractional or together wider than 63 bits) binds them row by
    row; in parts smaller than the rows."""
    from sqlalchemy import select

    monkeypatch.setattr(bulk, "_EXECUTEMANY_ROWS", 7)
    n = 50
    rng = np.random.default_rng(3)
    columns = {"pos": np.arange(n, dtype=np.int32),
               "big": rng.integers(0, 1 << 40, n, dtype=np.int64),
               "small": np.full(n, 5, dtype=np.int32),  # one value: in the statement
               "flag": rng.random(n) < 0.5}
    if case == "negative":
        columns["big"][3] = -(1 << 35)
    elif case == "float":
        columns["real"] = rng.random(n)
    elif case == "too-wide":
        columns["small"] = rng.integers(1 << 30, 1 << 31, n, dtype=np.int64)
    table = _scratch_table()
    engine = db.make_engine(migrated_url)
    try:
        with db.transaction(engine, write=True) as conn:
            table.create(conn)
            assert bulk.insert_arrays(conn, table, columns) == n
        with db.transaction(engine, write=False) as conn:
            rows = conn.execute(select(table).order_by(table.c.pos)).all()
    finally:
        engine.dispose()
    assert len(rows) == n
    for name in columns:
        got = np.array([getattr(r, name) for r in rows])
        np.testing.assert_array_equal(got, columns[name], err_msg=name)
