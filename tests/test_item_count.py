"""Assign tells that every live item up to a version's highest item id has an ID without
walking the catalog: PostgreSQL through the item count its triggers keep (migration 0012),
SQLite through its dense item ids."""

from __future__ import annotations

import json

import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from registry import Registry
from registry.cli import cli
from registry.store import db, items

from .conftest import PG_URL, make_keys, make_vectors, sql


def _counts(url: str) -> tuple[int, int, int]:
    """(the count the triggers kept, the rows counted, the count's rows)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(
                "SELECT (SELECT coalesce(sum(items), 0) FROM item_count), (SELECT count(*) "
                "FROM items), "
                "(SELECT count(*) FROM item_count)")).one()
    finally:
        engine.dispose()


def _bare(key: str) -> str:
    """An item row without an embedding, written by hand."""
    return (f"INSERT INTO items (key, content_hash, created_at, updated_at) VALUES ('{key}', "
            "'x', '2026-01-01 00:00:00', '2026-01-01 00:00:00')")


def test_the_count_follows_adds_updates_removals_and_deletes(reg, migrated_url):
    if migrated_url.startswith("sqlite"):
        pytest.skip("PostgreSQL's count")
    assert _counts(migrated_url)[:2] == (0, 0)
    keys, vectors = make_keys(50), make_vectors(50)
    reg.add(keys[:30], vectors[:30])
    reg.add(keys, vectors)  # 30 unchanged, 20 new
    reg.add(keys[:5], vectors[:5] + 1)  # changed
    reg.remove(keys[10:20])
    reg.add(keys[10:12], vectors[10:12])  # restored
    assert _counts(migrated_url)[:2] == (50, 50)
    # rows written or deleted behind the registry's back are counted too
    sql(migrated_url, "DELETE FROM items WHERE id IN (SELECT id FROM items ORDER BY id "
         "LIMIT 4)", _bare("bare"))
    assert _counts(migrated_url)[:2] == (47, 47)


def test_an_item_embedded_at_last_below_the_ids_is_a_gap_and_gets_its_id(trained,
                                                                          migrated_url):
    """An item without an embedding is not live; once the version's IDs go past it and its
    embedding comes, it is a live item without an ID below the highest one: the check says
    so (None), and assign gives it its ID."""
    reg, v = trained
    sql(migrated_url, _bare("late"))
    with reg._tx(write=False) as conn:
        late = conn.execute(text("SELECT id FROM items WHERE key = 'late'")).scalar()
        assert items.assigned_through(conn, v.number) == late - 1
    reg.add(make_keys(5, start=600), make_vectors(5, seed=5))
    assert reg.assign(v.number).assigned == 5
    with reg._tx(write=False) as conn:
        assert items.assigned_through(conn, v.number) == late + 5  # not live: no gap
    reg.add(["late"], make_vectors(1, seed=6))  # its embedding comes: live, below the top
    with reg._tx(write=False) as conn:
        assert items.assigned_through(conn, v.number) is None
    assert reg.assign(v.number).assigned == 1
    assert [r.key for r in reg.get(["late"], v.number)] == ["late"]
    with reg._tx(write=False) as conn:
        assert items.assigned_through(conn, v.number) == late + 5


def test_sqlite_finds_a_gap_where_an_item_id_is_missing(trained, migrated_url):
    """SQLite counts the ids from the first up to the highest with an ID: where one is
    missing (an item row deleted by hand) that says more live items than there are, so the
    items without an ID are looked for among all of them, and still found."""
    if not migrated_url.startswith("sqlite"):
        pytest.skip("SQLite's dense ids")
    reg, _ = trained
    keys = make_keys(600)
    reg.remove(keys[100:101])
    v2 = reg.train(codebook_size=[8, 4, 4], seed=4, name="v2").version  # without it
    with reg._tx(write=False) as conn:
        ids = dict(conn.execute(text("SELECT key, id FROM items")).all())
        assert items.assigned_through(conn, v2.number) == ids[keys[-1]]
    sql(migrated_url, f"DELETE FROM items WHERE id = {ids[keys[100]]}")
    reg.add(keys[200:201], make_vectors(600)[200:201] + 1)  # a changed item keeps its ID
    with reg._tx(write=False) as conn:
        assert items.assigned_through(conn, v2.number) is None  # a hole: ask the long way
    reg.add(keys[100:101], make_vectors(600)[100:101])  # back, above: no ID in v2
    assert reg.assign(v2.number).assigned == 1
    with reg._tx(write=False) as conn:
        assert items.assigned_through(conn, v2.number) is None  # the hole stays


def test_postgresql_verify_reports_a_count_gone_wrong_and_init_counts_again(reg,
                                                                            migrated_url):
    if migrated_url.startswith("sqlite"):
        pytest.skip("PostgreSQL's count")
    reg.add(make_keys(20), make_vectors(20))
    assert reg.verify().ok
    sql(migrated_url, "ALTER TABLE items DISABLE TRIGGER count_items_insert", _bare("b1"))
    report = reg.verify()
    assert {v.check for v in report.violations} == {"schema", "item count"}
    assert {"trigger": "count_items_insert"} in next(
        v for v in report.violations if v.check == "schema").rows
    sql(migrated_url, "ALTER TABLE items ENABLE TRIGGER count_items_insert")
    assert [v.check for v in reg.verify().violations] == ["item count"]
    out = CliRunner().invoke(cli, ["--db", migrated_url, "verify", "--json"])
    assert out.exit_code == 1
    assert json.loads(out.output)["violations"][0]["rows"] == [{"kept": 20, "rows": 21}]
    reg.init()
    assert reg.verify().ok
    assert _counts(migrated_url) == (21, 21, 1)


def test_postgresql_counts_writers_with_another_search_path(reg, migrated_url):
    """The trigger functions keep the search path they were made with: a writer whose path
    names another schema (here the server's default) still counts into this schema."""
    if migrated_url.startswith("sqlite"):
        pytest.skip("PostgreSQL's count")
    schema = migrated_url.rsplit("%3D", 1)[1]
    reg.add(make_keys(3), make_vectors(3))
    sql(PG_URL, _bare("elsewhere").replace("INTO items", f"INTO {schema}.items"))
    assert _counts(migrated_url) == (4, 4, 1)


def test_postgresql_refuses_to_truncate_items(reg, migrated_url):
    if migrated_url.startswith("sqlite"):
        pytest.skip("SQLite has no TRUNCATE")
    reg.add(make_keys(3), make_vectors(3))
    with pytest.raises(Exception, match="never truncated"):
        sql(migrated_url, "TRUNCATE items CASCADE")
    assert _counts(migrated_url)[:2] == (3, 3)


def test_the_migration_counts_the_items_already_there(reg, migrated_url):
    if migrated_url.startswith("sqlite"):
        pytest.skip("PostgreSQL's count")
    reg.add(make_keys(40), make_vectors(40))
    engine = db.make_engine(migrated_url)
    try:
        with db.transaction(engine, write=True) as conn:
            command.downgrade(db.alembic_config(conn), "0011_occupancy")
        with engine.begin() as conn:  # added while the count is not kept
            conn.execute(text(_bare("b")))
        db.migrate(engine)
    finally:
        engine.dispose()
    assert _counts(migrated_url) == (41, 41, 1)
    with Registry(migrated_url) as again:
        again.add(make_keys(2, start=40), make_vectors(2, seed=1))
    assert _counts(migrated_url)[:2] == (43, 43)
