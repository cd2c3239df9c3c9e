"""Alembic migrations: they build exactly the models' schema, go down and up again, and every
command refuses a database at an unknown schema."""

from __future__ import annotations

import json

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from registry import DatabaseError, Registry
from registry.store import db, schema
from registry.store.schema import HEAD, REVISIONS, ddl_metadata

from .conftest import TABLES, dump, make_keys, make_vectors, partitions


def _diff(url: str) -> list:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(ctx, ddl_metadata(conn.dialect.name))
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = db.make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_revisions_constant_matches_the_migration_scripts():
    script = ScriptDirectory.from_config(db.alembic_config())
    walked = [s.revision for s in script.walk_revisions()]
    assert tuple(reversed(walked)) == REVISIONS
    assert script.get_current_head() == HEAD


def test_migrations_build_exactly_the_models(migrated_url):
    assert _diff(migrated_url) == []
    pg_only = {"item_count"} if migrated_url.startswith("sqlite") else set()
    assert set(TABLES) - pg_only <= _tables(migrated_url)
    assert not pg_only & _tables(migrated_url)


def test_upgrade_downgrade_upgrade(db_url):
    engine = db.make_engine(db_url, create=True)
    try:
        assert db.migrate(engine) == (None, HEAD)
        with db.transaction(engine, write=True) as conn:
            command.downgrade(db.alembic_config(conn), "base")
        assert not set(TABLES) & set(inspect(engine).get_table_names())
        assert db.migrate(engine) == (None, HEAD)
        assert db.migrate(engine) == (HEAD, HEAD)  # idempotent
    finally:
        engine.dispose()
    assert _diff(db_url) == []


def _kept(url: str) -> dict:
    """:func:`dump` less what going down a migration drops and going up makes again from
    the rest: the occupancy bits (a cache) and the item count (tests/test_item_count.py)."""
    out = dump(url)
    del out["occupancy"], out["item_count"]  # the count: PostgreSQL's only
    return out


def test_partitioning_by_version_keeps_every_id(migrated_url):
    """Migration 0005 (PostgreSQL: each version's IDs in a partition of their own), down and
    up again with versions in the database: the same rows, one table per version, guarded."""
    with Registry(migrated_url) as reg:
        reg.add(make_keys(300), make_vectors(300))
        reg.train(codebook_size=[8, 4, 4], seed=1)
        reg.freeze(1)
        reg.train(codebook_size=[8, 4, 4], seed=2)
    before = _kept(migrated_url)
    engine = db.make_engine(migrated_url)
    try:
        with db.transaction(engine, write=True) as conn:
            command.downgrade(db.alembic_config(conn), "0004_seals_and_guards")
        assert partitions(migrated_url) == []
        assert _kept(migrated_url) == before
        assert db.migrate(engine) == ("0004_seals_and_guards", HEAD)
    finally:
        engine.dispose()
    assert _kept(migrated_url) == before
    assert partitions(migrated_url) == (["assignments_v1", "assignments_v2"]
                                        if migrated_url.startswith("postgresql") else [])
    with Registry(migrated_url) as reg:
        report = reg.verify()
        assert report.ok, report.violations
        assert report.ids == 600
        if migrated_url.startswith("postgresql"):
            reg.train(codebook_size=[8, 4, 4], seed=3)  # a partition made after 0006
            assert _pg_unique_indexes(migrated_url) == {
                f"assignments_v{v}": f"uq_assignments_v{v} btree (version_id, code, disamb) "
                "INCLUDE (item_id)" for v in (1, 2, 3)}
            for v in (1, 2, 3):
                assert f"Index Only Scan using uq_assignments_v{v}" in _listing_plan(
                    migrated_url, v)


def _listing_plan(url: str, version: int = 1) -> str:
    """The plan of a prefix listing's read of the IDs table (PostgreSQL: with the plans off
    that a table of a few hundred rows would otherwise get, scans of the whole table and
    sorts)."""
    sql = (f"SELECT a.item_id FROM assignments a WHERE a.version_id = {version} "
           "AND a.code >= 0 AND a.code <= 15 ORDER BY a.code, a.disamb LIMIT 101")
    engine = db.make_engine(url)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                return " ".join(r[-1] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
            for kind in ("seqscan", "bitmapscan", "sort"):
                conn.exec_driver_sql(f"SET LOCAL enable_{kind} = off")
            return " ".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {sql}"))
    finally:
        engine.dispose()


def _pg_unique_indexes(url: str) -> dict[str, str]:
    """Partition -> the definition of its index behind one ID per (version, code, number)."""
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return {t: f"{i} {d.split(' USING ', 1)[1]}" for t, i, d in conn.exec_driver_sql(
                "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = "
                "current_schema() AND tablename LIKE 'assignments_v%%' AND indexname LIKE "
                "'uq_%%'")}
    finally:
        engine.dispose()


def test_sqlite_id_index_serves_listings_without_the_table(tmp_path):
    """Migration 0006 (SQLite): a prefix listing reads each ID's item id from the unique
    index alone, which the UNIQUE constraint's index before it could not; down and up again
    with IDs in the database keeps every row and the guards of frozen IDs."""
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    with Registry(url) as reg:
        reg.init()
        reg.add(make_keys(300), make_vectors(300))
        reg.train(codebook_size=[8, 4, 4], seed=1)
        reg.freeze(1)
    before = _kept(url)
    assert "COVERING INDEX uq_assignments_version_id_code_disamb" in _listing_plan(url)
    engine = db.make_engine(url)
    try:
        with db.transaction(engine, write=True) as conn:
            command.downgrade(db.alembic_config(conn), "0005_assignment_partitions")
        assert "COVERING" not in _listing_plan(url)
        assert _kept(url) == before
        assert db.migrate(engine) == ("0005_assignment_partitions", HEAD)
    finally:
        engine.dispose()
    assert _kept(url) == before
    assert "COVERING INDEX uq_assignments_version_id_code_disamb" in _listing_plan(url)
    with Registry(url) as reg:
        report = reg.verify()
        assert report.ok, report.violations
    engine = create_engine(url)
    try:
        with pytest.raises(Exception, match="never change"), engine.begin() as conn:
            conn.execute(text("UPDATE assignments SET disamb = disamb + 1"))
        with pytest.raises(Exception, match="UNIQUE"), engine.begin() as conn:
            conn.execute(text("INSERT INTO assignments SELECT version_id, item_id + 100000, "
                              "code, disamb, incremental FROM assignments LIMIT 1"))
    finally:
        engine.dispose()


def test_init_upgrades_and_keeps_data(migrated_url):
    with Registry(migrated_url) as reg:
        reg.add(make_keys(3), make_vectors(3))
        result = reg.init()
        assert (result.before, result.after) == (HEAD, HEAD)
        assert reg.versions() == []  # still usable after init
    engine = create_engine(migrated_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM items")).scalar() == 3
    engine.dispose()


def test_uninitialised_database_is_refused(db_url):
    if db_url.startswith("sqlite"):
        create_engine(db_url).connect().close()  # an empty file
    with Registry(db_url) as reg, pytest.raises(DatabaseError, match="registry init"):
        reg.versions()


def test_a_new_sqlite_file_gets_16k_pages_and_an_older_one_keeps_its_own(tmp_path):
    import sqlite3

    def page_size(path) -> int:
        with sqlite3.connect(path) as con:
            return con.execute("PRAGMA page_size").fetchone()[0]

    new, old = tmp_path / "new.db", tmp_path / "old.db"
    with Registry(f"sqlite:///{new}") as reg:
        reg.init()
    assert page_size(new) == db.SQLITE_PAGE_SIZE == 16384
    with sqlite3.connect(old) as con:  # a file made with 4 KB pages, already in WAL mode
        con.execute("PRAGMA page_size = 4096")
        con.execute("PRAGMA journal_mode = WAL")
    with Registry(f"sqlite:///{old}") as reg:
        reg.init()
        reg.add(make_keys(40), make_vectors(40))
        v = reg.train(codebook_size=[4, 4]).version
        assert len(reg.get(make_keys(40), v.number)) == 40
    assert page_size(old) == 4096


def test_missing_sqlite_file_is_refused_and_not_created(tmp_path):
    path = tmp_path / "nope.db"
    with Registry(f"sqlite:///{path}") as reg, pytest.raises(DatabaseError, match="no registry"):
        reg.versions()
    assert not path.exists()


def test_database_from_a_newer_registry_is_refused(migrated_url):
    engine = create_engine(migrated_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    engine.dispose()
    with Registry(migrated_url) as reg:
        with pytest.raises(DatabaseError, match="newer registry"):
            reg.versions()
        with pytest.raises(DatabaseError, match="newer registry"):
            reg.init()


def test_unreachable_postgresql_is_one_clear_error():
    with Registry("postgresql://postgres@127.0.0.1:1/none") as reg, \
            pytest.raises(DatabaseError, match="127.0.0.1"):
        reg.versions()


def test_unsupported_url():
    with pytest.raises(DatabaseError, match="unsupported database"):
        Registry("mysql://root@localhost/x").versions()


def test_ddl_metadata_carries_the_dialect_options_the_migrations_create():
    meta = ddl_metadata()
    items, assignments = meta.tables["items"], meta.tables["assignments"]
    live = next(ix for ix in items.indexes if ix.name == "ix_items_live_space")
    assert "AUTOINCREMENT" in str(CreateTable(items).compile(dialect=sqlite.dialect()))
    assert "AUTOINCREMENT" in str(CreateTable(meta.tables["events"])
                                  .compile(dialect=sqlite.dialect()))
    assert "WITHOUT ROWID" in str(CreateTable(assignments).compile(dialect=sqlite.dialect()))
    not_live = next(ix for ix in items.indexes if ix.name == "ix_items_not_live")
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        assert "WHERE removed_at IS NULL" in str(CreateIndex(live).compile(dialect=dialect))
        assert "WHERE removed_at IS NOT NULL OR embedding IS NULL" in str(
            CreateIndex(not_live).compile(dialect=dialect))
    # the tables every command uses stay without them (declaring them loads the dialects)
    assert not schema.items.dialect_kwargs and not schema.assignments.dialect_kwargs
    runtime_live = next(ix for ix in schema.items.indexes if ix.name == "ix_items_live_space")
    assert not runtime_live.dialect_kwargs


def test_versions_from_before_the_vocabulary_limit_get_the_one_they_issued(migrated_url,
                                                                           tmp_path):
    """Migration 0008: a published version from before gets, as its disambiguation limit,
    the largest number it issued (its vocabulary as exported until then, which never grows
    from there); a draft the default rule; the training figures their names of today."""
    with Registry(migrated_url) as reg:
        reg.add(make_keys(300), make_vectors(300))
        reg.train(codebook_size=[4, 4], seed=1, collisions="suffix")
        reg.freeze(1)
        reg.train(codebook_size=[4, 4], seed=2, collisions="suffix")
        issued = max(r.disambiguation for r in reg.get(make_keys(300), 1))
        largest_2 = reg.version(2).largest_disambiguation
    engine = db.make_engine(migrated_url)
    try:
        with db.transaction(engine, write=True) as conn:
            command.downgrade(db.alembic_config(conn), "0003_item_keys_index")  # no guards
            for number, params, stats in conn.execute(
                    text("SELECT id, params, stats FROM versions")).all():
                params = json.loads(params) if isinstance(params, str) else params
                stats = json.loads(stats) if isinstance(stats, str) else stats
                del params["max_disambiguation"]
                stats["max_disambiguation"] = stats.pop("largest_disambiguation")
                stats["collision_rate"] = 0.5
                conn.execute(text("UPDATE versions SET params = :p, stats = :s WHERE id = :n"),
                             {"p": json.dumps(params), "s": json.dumps(stats), "n": number})
        assert db.migrate(engine) == ("0003_item_keys_index", HEAD)
    finally:
        engine.dispose()
    with Registry(migrated_url) as reg:
        one, two = reg.version(1), reg.version(2)
        assert one.max_disambiguation == issued
        assert two.max_disambiguation == max(3, 2 * largest_2 + 1)
        assert one.largest_disambiguation > 0 and "collision_rate" not in one.stats
        vocab = tmp_path / "vocab.txt"
        reg.export(1, tmp_path / "ids.csv", vocab=vocab)
        assert vocab.read_text().split()[-1] == f"<c_{issued}>"
        report = reg.verify()
        assert report.ok, report.violations
