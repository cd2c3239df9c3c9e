"""The registry's tables, as SQLAlchemy Core metadata. Only the store knows these.

The Alembic migrations in ``migrations/versions`` build exactly this schema (a test compares
them). ``REVISIONS`` lists the migration revisions in order so that a command can check the
database's schema with one SELECT, without importing Alembic.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

REVISIONS: tuple[str, ...] = ("0001_initial", "0002_live_items_index", "0003_item_keys_index",
                              "0004_seals_and_guards", "0005_assignment_partitions",
                              "0006_covering_id_index", "0007_not_live_index",
                              "0008_vocabulary_limits", "0009_tokens", "0010_service",
                              "0011_occupancy", "0012_item_count")
HEAD = REVISIONS[-1]
# the items a new version covers: not removed, with an embedding
LIVE_TERMS = ("removed_at IS NULL", "embedding IS NOT NULL")
LIVE_ITEMS = " AND ".join(LIVE_TERMS)
# its negation
NOT_LIVE_TERMS = ("removed_at IS NOT NULL", "embedding IS NULL")
NOT_LIVE_ITEMS = " OR ".join(NOT_LIVE_TERMS)



class State(StrEnum):
    """Where a version is in its life (the ``state`` column holds these strings)."""

    DRAFT = "draft"  # trained; its codebooks and IDs may still go (delete)
    FROZEN = "frozen"  # published: codebooks and issued IDs never change
    RETIRED = "retired"  # readable, closed to new IDs and to activation


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _ts(name: str, nullable: bool = False) -> Column:
    return Column(name, DateTime(timezone=True), nullable=nullable)


items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("key", Text, nullable=False),
    Column("text", Text),
    Column("meta", JSON(none_as_null=True)),
    Column("content_hash", String(64), nullable=False),
    Column("embedding", LargeBinary),
    Column("embedding_model", Text),
    Column("embedding_dim", Integer),
    Column("embedding_dtype", String(16)),
    _ts("created_at"),
    _ts("updated_at"),
    _ts("removed_at", nullable=True),
    # when an existing item was last touched: its metadata, content or removal changed (not
    # set by its insert); a server finds what changed elsewhere through its index (0010)
    _ts("touched_at", nullable=True),
    UniqueConstraint("key"),
    # the live items' embedding space in two index seeks (migration 0002)
    Index("ix_items_live_space", "embedding_model", "embedding_dim", "id"),  # partial: ddl_metadata
    # what an ID listing shows of each item, without reading its row (migration 0003)
    Index("ix_items_id_key_removed_at", "id", "key", "removed_at"),
    # the few items that are not live, which assign counts among the IDs (0007)
    Index("ix_items_not_live", "id"),  # partial: ddl_metadata
    Index("ix_items_touched_at", "touched_at"),
)

versions = Table(
    "versions",
    metadata,
    # the user-facing version number, allocated max+1 under a lock and never reused
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", Text),
    Column("state", String(16), nullable=False),
    Column("params", JSON, nullable=False),
    Column("dim", Integer, nullable=False),
    Column("embedding_model", Text),
    Column("parent_id", Integer, ForeignKey("versions.id")),
    Column("stats", JSON(none_as_null=True)),
    _ts("created_at"),
    _ts("frozen_at", nullable=True),
    _ts("retired_at", nullable=True),
    UniqueConstraint("name"),
    CheckConstraint(f"state IN ({', '.join(repr(str(x)) for x in State)})", name="state"),
)

codebooks = Table(
    "codebooks",
    metadata,
    Column("version_id", Integer, ForeignKey("versions.id"), nullable=False),
    Column("level", Integer, nullable=False),
    Column("k", Integer, nullable=False),
    Column("dim", Integer, nullable=False),
    Column("dtype", String(16), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("data", LargeBinary, nullable=False),
    PrimaryKeyConstraint("version_id", "level"),
)

# No foreign keys here on purpose: PostgreSQL and SQLite check them row by row, which made
# writing a version's assignments far slower (BENCHMARKS.md, Design figures: no foreign keys
# on IDs). Rows come only from the store, with item ids it has just read;
# items and versions are never deleted (items are tombstoned, versions retired).
assignments = Table(
    "assignments",
    metadata,
    Column("version_id", Integer, nullable=False),
    Column("item_id", Integer, nullable=False),
    # mixed-radix packed code tuple (see registry.ids): a prefix is one range of it
    Column("code", BigInteger, nullable=False),
    Column("disamb", Integer, nullable=False),
    # False: given when the version was trained; True: assigned later against its codebooks
    Column("incremental", Boolean(create_constraint=False), nullable=False),
    PrimaryKeyConstraint("version_id", "item_id"),
    # one ID per (version, codes, number); also the index behind prefix range scans
    UniqueConstraint("version_id", "code", "disamb"),
)

# What a version held when it was frozen, so that `registry verify` can tell that nothing of
# it changed since: a digest of its codebooks, and count and order-free digest of its IDs,
# plus the same for the IDs assigned after freezing (added under the version's lock). Made
# at freeze time (migration 0004); the database refuses to rewrite or delete one.
seals = Table(
    "seals",
    metadata,
    Column("version_id", Integer, ForeignKey("versions.id"), primary_key=True,
           autoincrement=False),
    Column("codebooks_sha256", String(64), nullable=False),
    Column("frozen_count", BigInteger, nullable=False),
    Column("frozen_digest", BigInteger, nullable=False),
    Column("grown_count", BigInteger, nullable=False),
    Column("grown_digest", BigInteger, nullable=False),
    _ts("sealed_at"),
)

# The code tuples a version has issued, one bit each (migration 0011): what assign reads
# instead of every issued code, which grows with the version. A cache: kept with the count of
# IDs it covers, and made again from the IDs whenever the version holds another count.
occupancy = Table(
    "occupancy",
    metadata,
    Column("version_id", Integer, ForeignKey("versions.id"), primary_key=True,
           autoincrement=False),
    Column("ids", BigInteger, nullable=False),
    Column("bits", LargeBinary, nullable=False),
)

# PostgreSQL: how many item rows there are, in one row kept by statement triggers on items
# (migration 0012). SQLite has no such table (see ddl_metadata)
item_count = Table(
    "item_count",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("items", BigInteger, nullable=False),
)

aliases = Table(
    "aliases",
    metadata,
    Column("name", Text, primary_key=True),
    Column("version_id", Integer, ForeignKey("versions.id"), nullable=False),
    _ts("updated_at"),
)

# API tokens of `registry serve`: only the sha256 of each secret is kept
tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column("scope", String(8), nullable=False),
    Column("digest", String(64), nullable=False),
    _ts("created_at"),
    _ts("revoked_at", nullable=True),
    UniqueConstraint("name"),
    UniqueConstraint("digest"),
    CheckConstraint("scope IN ('read', 'write', 'admin')", name="scope"),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True),
    _ts("created_at"),
    Column("action", String(32), nullable=False),
    Column("version_id", Integer),
    Column("other_version_id", Integer),
    Column("params", JSON(none_as_null=True)),
    Column("reason", Text),
    # who: the API token's name for changes made through `registry serve` (migration 0010)
    Column("actor", Text),
)


def ddl_metadata(dialect: str | None = None) -> MetaData:
    """A copy of the metadata with the options only DDL needs (Alembic autogenerate and the
    schema tests use this), for the database ``dialect`` names (None: PostgreSQL's).
    Declaring a dialect's option loads that dialect, PostgreSQL's in every command, SQLite
    ones included, and slows every command's start (BENCHMARKS.md, Design figures: DDL-only
    options), so the tables above leave them out, and stay without them:

    - SQLite never hands out the id of a deleted item or event again (AUTOINCREMENT);
    - on SQLite the IDs table is its primary key (WITHOUT ROWID: one B-tree fewer to write);
    - ix_items_live_space covers live items only (a partial index, migration 0002);
    - one ID per (version, codes, number): on SQLite a unique index, not a constraint, on
      PostgreSQL a constraint whose index includes the item id (migration 0006: lookups
      read it from the index, not from the table);
    - the item count is PostgreSQL's only (migration 0012).
    """
    out = MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.sorted_tables:
        table.to_metadata(out)
    tables = out.tables
    ids = tables["assignments"]
    unique = next(c for c in ids.constraints if isinstance(c, UniqueConstraint))
    if dialect == "sqlite":
        out.remove(tables["item_count"])
        ids.constraints.remove(unique)
        Index(unique.name, *unique.columns, unique=True)
    else:
        unique.dialect_kwargs["postgresql_include"] = ["item_id"]
    tables["items"].dialect_kwargs["sqlite_autoincrement"] = True
    tables["events"].dialect_kwargs["sqlite_autoincrement"] = True
    ids.dialect_kwargs["sqlite_with_rowid"] = False
    for name, where in (("ix_items_live_space", LIVE_ITEMS), ("ix_items_not_live", NOT_LIVE_ITEMS)):
        partial = next(ix for ix in tables["items"].indexes if ix.name == name)
        partial.dialect_kwargs["sqlite_where"] = text(where)
        partial.dialect_kwargs["postgresql_where"] = text(where)
    return out
