"""Incremental assignment against a version's codebooks: only new items, existing IDs never
change, disambiguation numbers continue after the largest one issued."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from registry import InputError, NotFoundError, Registry, engine
from registry.store import assignments, db, lookups

from .conftest import drop_failing_trigger, dump, fail_inserts, make_keys, make_vectors


def test_assign_gives_new_items_ids_and_leaves_old_ones(trained):
    reg, v = trained
    old_keys = make_keys(600)
    before = {r.key: r.id for r in reg.get(old_keys)}
    new_keys, new_vectors = make_keys(250, start=600), make_vectors(250, seed=42)
    reg.add(new_keys, new_vectors)
    result = reg.assign(batch_size=64)  # several batches, one transaction each
    assert (result.assigned, result.batches) == (250, 4)
    assert {r.key: r.id for r in reg.get(old_keys)} == before
    records = reg.get(new_keys)
    np.testing.assert_array_equal(np.array([r.codes for r in records]),
                                  engine.encode(new_vectors, reg.codebooks(v.number),
                                                beam=v.beam))
    # every ID of the version is unique, and numbers continue after those already issued
    all_records = reg.get(old_keys + new_keys)
    assert len({r.id for r in all_records}) == 850
    by_code: dict[tuple, list[int]] = {}
    for r in all_records:
        by_code.setdefault(tuple(r.codes), []).append(r.disambiguation)
    assert all(sorted(d) == list(range(len(d))) for d in by_code.values())
    first_of_new = {tuple(r.codes): r.disambiguation for r in reversed(records)}
    for r in reg.get(old_keys):
        if tuple(r.codes) in first_of_new:
            assert first_of_new[tuple(r.codes)] > r.disambiguation
    assert reg.versions()[0].items == 850


def test_assign_again_does_nothing(trained, migrated_url):
    reg, _ = trained
    reg.add(make_keys(20, start=600), make_vectors(20, seed=5))
    assert reg.assign().assigned == 20
    before = dump(migrated_url)
    assert reg.assign().assigned == 0
    assert dump(migrated_url) == before


def test_assign_into_a_draft_and_by_name(reg, catalog):
    keys, vectors = catalog
    reg.add(keys[:500], vectors[:500])
    reg.train(codebook_size=[8, 4], name="draft-one")
    reg.add(keys[500:], vectors[500:])
    assert reg.assign("draft-one").assigned == 100
    assert reg.version("draft-one").state == "draft"
    assert len({r.id for r in reg.get(keys, "draft-one")}) == 600


def test_assign_without_active_version_says_what_to_do(reg, catalog):
    reg.add(*catalog)
    reg.train(codebook_size=[8, 4])
    with pytest.raises(NotFoundError, match="no version is active yet"):
        reg.assign()
    with pytest.raises(NotFoundError, match="unknown version: '7'"):
        reg.assign(7)


def test_new_items_of_another_dimension_are_refused(trained, migrated_url):
    reg, _ = trained
    before = dump(migrated_url)
    with pytest.raises(InputError, match="dimension 8, but the registry's items have dimension 16"):
        reg.add(["odd"], make_vectors(1, dim=8))
    assert dump(migrated_url) == before


def test_items_without_an_id_are_reported_by_get(trained):
    reg, _ = trained
    reg.add(["late"], make_vectors(1, seed=8))
    assert reg.get(["late"]).unassigned == ["late"]
    reg.assign()
    assert reg.get(["late"])[0].key == "late"


def test_a_failed_batch_leaves_nothing_half_assigned_and_a_rerun_finishes(trained, migrated_url):
    reg, _ = trained
    new_keys = make_keys(100, start=600)
    reg.add(new_keys, make_vectors(100, seed=4))
    # item ids are 1-based: this is the 70th new item. A batch of 30 ends with its last
    # item's allocation block of 64 ids: the first holds 601..639, the second 640..700
    fail_inserts(migrated_url, "assignments", "NEW.item_id = 670")
    with pytest.raises(Exception, match="boom"):
        reg.assign(batch_size=30)
    eng = create_engine(migrated_url)
    with eng.begin() as conn:
        # batch 1 (items 601..639) was committed; batch 2 left no row at all
        assigned = conn.execute(text("SELECT item_id FROM assignments WHERE incremental "
                                     "ORDER BY item_id")).scalars().all()
        assert assigned == list(range(601, 640))
    eng.dispose()
    drop_failing_trigger(migrated_url, "assignments")
    assert reg.assign(batch_size=30).assigned == 61
    assert len({r.id for r in reg.get(make_keys(700))}) == 700


def test_concurrent_assigners_share_the_work_without_duplicates(trained, migrated_url):
    reg, _ = trained
    new_keys = make_keys(400, start=600)
    reg.add(new_keys, make_vectors(400, seed=6))
    results: list = []

    def worker():
        with Registry(migrated_url) as r:
            results.append(r.assign(batch_size=25).assigned)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 400
    ids = [r.id for r in reg.get(make_keys(1000))]
    assert len(set(ids)) == 1000


@pytest.mark.parametrize("chunk_rows", [1, 7, 2_000_000])
def test_issued_codes_are_every_id_code_sorted_in_any_chunking(reg, catalog, migrated_url,
                                                               chunk_rows):
    keys, vectors = catalog
    reg.add(keys, vectors)
    reg.train(codebook_size=[4, 4, 2], seed=1, collisions="suffix")  # codes shared by IDs
    eng = db.make_engine(migrated_url)
    try:
        with db.transaction(eng, write=False) as conn:
            got = assignments.issued_codes(conn, 1, chunk_rows=chunk_rows)
            want = sorted(lookups.population(conn, 1).codes)
            assert assignments.issued_codes(conn, 2).size == 0  # no such version: none
    finally:
        eng.dispose()
    assert got.dtype == np.int64 and got.tolist() == want
    assert len(set(want)) < len(want) == len(keys)


def test_postgresql_planner_statistics_follow_bulk_writes(reg, migrated_url, monkeypatch):
    if not migrated_url.startswith("postgresql"):
        pytest.skip("PostgreSQL planner statistics")
    from registry.store import assignments, db

    monkeypatch.setattr(db, "VACUUM_INSERTED", 100)  # 1000 as autovacuum's; a small catalog
    keys, vectors = make_keys(700), make_vectors(700, seed=6)
    eng = create_engine(migrated_url)

    def sampled(table: str) -> float:
        with eng.connect() as conn:
            return conn.execute(text("SELECT reltuples FROM pg_class "
                                     "WHERE oid = to_regclass(:t)"), {"t": table}).scalar()

    def all_visible() -> tuple[int, int]:
        """items' pages, and those of them the visibility map marks all-visible (which
        lets an index-only scan skip the table)"""
        with eng.connect() as conn:
            return tuple(conn.execute(text(
                "SELECT pg_relation_size('items') / current_setting('block_size')::int, "
                "relallvisible FROM pg_class WHERE oid = to_regclass('items')")).one())

    try:
        reg.add(keys[:500], vectors[:500])
        pages, visible = all_visible()
        assert pages > 0 and visible == pages  # vacuumed after the add
        reg.train(codebook_size=[8, 4, 4], seed=2)
        # counted by the train's own transaction, in the version's own table
        ids = assignments.partition(1)
        assert (sampled("items"), sampled(ids)) == (500, 500)
        reg.freeze(1)
        # a few rows more: left to autovacuum, as its own threshold (50 + 10%) would
        reg.add(keys[500:530], vectors[500:530])
        reg.assign(1, batch_size=64)
        assert (sampled("items"), sampled(ids)) == (500, 500)
        reg.add(keys[530:], vectors[530:])
        reg.assign(1, batch_size=64)
        assert (sampled("items"), sampled(ids)) == (700, 700)
    finally:
        eng.dispose()


@pytest.mark.parametrize("span", [7, 1 << 20])
def test_the_first_item_without_an_id_is_found_in_any_span(trained, migrated_url, span):
    if not migrated_url.startswith("sqlite"):
        pytest.skip("SQLite's assign starts there; PostgreSQL lists them all")
    from registry.store import items

    reg, _ = trained
    keys = make_keys(600)
    reg.remove(keys[100:103])
    v2 = reg.train(codebook_size=[8, 4, 4], seed=4, name="v2").version  # without them

    def first(span: int = span) -> int | None:
        with reg._tx(write=False) as conn:
            return items.first_unassigned(conn, items.single_space(conn), v2.number,
                                          span=span)

    assert first() is None
    reg.add(make_keys(30, start=600), make_vectors(30, seed=8))
    with reg._tx(write=False) as conn:
        ids = dict(conn.execute(text("SELECT key, id FROM items")).all())
    assert first() == ids[make_keys(1, start=600)[0]]  # above every ID: the short way
    reg.add(keys[101:103], make_vectors(600)[101:103])  # back, below: the long way
    assert first() == ids[keys[101]]
    assert first(span=ids[keys[101]]) == ids[keys[101]]  # the first id of a range


def test_items_without_an_id_are_looked_for_above_the_ids_all_given(trained, migrated_url):
    """``assigned_through``: the highest item id with an ID while every live item up to it
    has one (removed items keep theirs and count among the IDs), None once a live item
    below it has none; assign then still finds that item (both databases)."""
    from registry.store import items

    reg, v = trained

    def through(version: int) -> int | None:
        with reg._tx(write=False) as conn:
            return items.assigned_through(conn, version)

    def item_id(key: str) -> int:
        with reg._tx(write=False) as conn:
            return conn.execute(text("SELECT id FROM items WHERE key = :k"), {"k": key}).scalar()

    keys, vectors = make_keys(600), make_vectors(600)
    assert through(v.number) == item_id(keys[-1])
    reg.remove(keys[:5])
    reg.add(make_keys(20, start=600), make_vectors(20, seed=8))
    assert through(v.number) == item_id(keys[-1])  # the new items are above it
    v2 = reg.train(codebook_size=[8, 4, 4], seed=4, name="v2").version  # without keys[:5]
    assert through(v2.number) == item_id(make_keys(1, start=619)[0])
    reg.add(keys[:3], vectors[:3])  # back, below every ID of v2, without one there
    reg.add(make_keys(10, start=620), make_vectors(10, seed=9))
    assert through(v2.number) is None
    assert through(v.number) == item_id(keys[-1])  # they kept theirs in v1
    assert reg.assign(v2.number).assigned == 13
    assert {r.key for r in reg.get(keys[:3], v2.number)} == set(keys[:3])
    assert through(v2.number) == item_id(make_keys(1, start=629)[0])
    assert reg.assign(v.number).assigned == 30


def test_one_assigners_ids_do_not_depend_on_its_batch_size(reg):
    """IDs are allocated a block of item ids at a time, in id order, and a batch holds whole
    blocks: two identical versions assigned the same new items in batches of 50 and of the
    default size give every item the same ID (the items span two blocks)."""
    reg.add(make_keys(600), make_vectors(600))
    for name in ("a", "b"):
        reg.train(codebook_size=[8, 8, 8], seed=3, name=name, max_disambiguation=1000)
        reg.freeze(name)
    assert reg.codebooks("a")[2].tobytes() == reg.codebooks("b")[2].tobytes()
    new = make_keys(9000, start=600, prefix="new")
    reg.add(new, make_vectors(9000, seed=4))
    small = reg.assign("a", batch_size=50)
    assert (small.assigned, small.batches) == (9000, 2)  # whole blocks: ids 1..8191, 8192..
    reg.assign("b")
    ids_a = {r.key: r.id for r in reg.get(new, "a")}
    ids_b = {r.key: r.id for r in reg.get(new, "b")}
    assert ids_a == ids_b
    assert len(set(ids_a.values())) == 9000
