"""Fixtures, from the bottom up: an empty database -> a migrated one -> a trained registry.

Every database fixture runs once on a SQLite file and once on the PostgreSQL server
($REGISTRY_TEST_PG, default postgresql://postgres@127.0.0.1:5432/test), each test in a schema
of its own. Set REGISTRY_TEST_DATABASES=sqlite to run without PostgreSQL.
"""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, text

from registry import Registry
from registry.cli import cli

PG_URL = os.environ.get("REGISTRY_TEST_PG",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")
DATABASES = [d.strip() for d in
             os.environ.get("REGISTRY_TEST_DATABASES", "sqlite,postgresql").split(",")
             if d.strip()]
TABLES = ("items", "versions", "codebooks", "assignments", "aliases", "events", "seals",
          "tokens", "occupancy", "item_count")


def make_vectors(n: int, dim: int = 16, seed: int = 0, clusters: int = 12) -> np.ndarray:
    """Clustered float32 vectors: a stand-in for item embeddings with real structure. The
    cluster centres are the same for every ``seed`` (of a given dim and cluster count), so
    that samples with different seeds come from one distribution."""
    centres = np.random.default_rng(12345).standard_normal((clusters, dim))
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, clusters, n)] + 0.35 * rng.standard_normal((n, dim))
    return x.astype(np.float32)


def make_keys(n: int, start: int = 0, prefix: str = "item") -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(start, start + n)]


@pytest.fixture(params=DATABASES)
def db_url(request, tmp_path):
    """An empty database: a new SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def migrated_url(db_url):
    """A database at the latest schema."""
    with Registry(db_url) as reg:
        reg.init()
    return db_url


@pytest.fixture
def reg(migrated_url):
    with Registry(migrated_url) as r:
        yield r


@pytest.fixture
def catalog():
    """600 keyed 16-d vectors in 12 clusters."""
    return make_keys(600), make_vectors(600)


@pytest.fixture
def trained(reg, catalog):
    """A registry holding the catalog, version 1 (8x4x4) trained, frozen and active. Its
    code space is crowded on purpose (128 tuples for 600 items): its disambiguation limit
    leaves room for the tests that assign a thousand more, and it allocates IDs 64 item ids
    at a time, so that a few hundred new items are assigned in several batches."""
    keys, vectors = catalog
    reg.add(keys, vectors)
    summary = reg.train(codebook_size=[8, 4, 4], seed=3, name="v1", max_disambiguation=1000,
                        allocation_block=64)
    reg.freeze(1)
    reg.activate(1)
    return reg, summary.version


@pytest.fixture
def run(migrated_url):
    """Invoke the CLI on the migrated database: run("get", "k1") -> click Result."""
    runner = CliRunner()

    def invoke(*args: str, url: str | None = None):
        return runner.invoke(cli, ["--db", url or migrated_url, *args], catch_exceptions=False)

    return invoke


def sql(url: str, *statements: str) -> None:
    """Run ``statements`` in one transaction, behind the registry's back."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def dump(url: str) -> dict[str, list[tuple]]:
    """Every row of every registry table, in a stable order: to compare before and after
    (a table that the schema revision the database is at lacks has no rows; a row's null
    columns are left out, so that a column a later revision added, still null, compares
    equal with its absence)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            out = {}
            present = set(inspect(conn).get_table_names())
            for table in TABLES:
                rows = conn.execute(text(f"SELECT * FROM {table}")).all() \
                    if table in present else []
                out[table] = sorted(tuple(f"{k}={v!r}" for k, v in r._mapping.items()
                                          if v is not None) for r in rows)
            return out
    finally:
        engine.dispose()


def partitions(url: str) -> list[str]:
    """PostgreSQL: the tables holding versions' IDs (partitions of assignments); SQLite has
    none."""
    if url.startswith("sqlite"):
        return []
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = to_regclass('assignments') ORDER BY c.relname")
            ).scalars().all()
    finally:
        engine.dispose()


def fail_inserts(url: str, table: str, when: str) -> None:
    """A trigger that makes inserting a row of ``table`` for which the SQL condition ``when``
    (over NEW) holds fail, as a crash in the middle of a command would."""
    eng = create_engine(url)
    with eng.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(text(f"CREATE TRIGGER boom BEFORE INSERT ON {table} WHEN {when} "
                              "BEGIN SELECT RAISE(ABORT, 'boom'); END"))
        else:
            conn.execute(text(f"CREATE FUNCTION boom() RETURNS trigger AS $$ BEGIN "
                              f"IF {when} THEN RAISE EXCEPTION 'boom'; END IF; "
                              "RETURN NEW; END $$ LANGUAGE plpgsql"))
            conn.execute(text(f"CREATE TRIGGER boom BEFORE INSERT ON {table} "
                              "FOR EACH ROW EXECUTE FUNCTION boom()"))
    eng.dispose()


def drop_failing_trigger(url: str, table: str) -> None:
    eng = create_engine(url)
    with eng.begin() as conn:
        pg = conn.dialect.name == "postgresql"
        conn.execute(text("DROP TRIGGER boom" + (f" ON {table}" if pg else "")))
    eng.dispose()
