"""Connecting to the database, transactions, and the schema's migration state.

SQLite (the default) runs in WAL mode with a busy timeout; readers begin a plain deferred
transaction and writers ``BEGIN IMMEDIATE``, so that two writers queue on the lock instead of
failing half-way with "database is locked". PostgreSQL goes through psycopg 3.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, event, exc, text
from sqlalchemy.engine import make_url

from ..errors import DatabaseError, StateError, extra_hint
from .schema import HEAD, REVISIONS

if TYPE_CHECKING:
    import alembic.config

DEFAULT_URL = "sqlite:///registry.db"
# what the Registry hands to the modules that run its actions: tx(write=...) -> a transaction
Tx = Callable[..., AbstractContextManager[Connection]]
SQLITE_BUSY_TIMEOUT_S = 60
SQLITE_PAGE_SIZE = 16384  # bytes; for new files (see _sqlite_connect)


def now() -> datetime:
    """The time stored with rows and events: timezone-aware UTC."""
    return datetime.now(UTC)


def default_url() -> str:
    """``$REGISTRY_DB`` when set, else a ``registry.db`` SQLite file in the working folder."""
    return os.environ.get("REGISTRY_DB") or DEFAULT_URL


def normalize_url(url: str) -> str:
    """Accept the usual ``postgresql://`` spelling and use psycopg 3 for it."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain):]
    return url


def describe_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return url


def _sqlite_path(url: str) -> Path | None:
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or u.database in (None, "", ":memory:"):
        return None
    if u.query.get("uri") == "true" and u.database.startswith("file:"):
        # sqlite:///file:PATH?mode=ro&uri=true: SQLite's URI form (read-only opens)
        return Path(u.database.removeprefix("file:").split("?", 1)[0])
    return Path(u.database)


def make_engine(url: str, *, create: bool = False, lookups_only: bool = False) -> Engine:
    """An engine for ``url``; unless ``create``, a missing SQLite file is an error.

    ``lookups_only``: PostgreSQL through psycopg 3 goes through psycopg2 instead where it is
    installed. Importing psycopg 3 takes far longer, most of a short command's start-up
    (BENCHMARKS.md, Design figures: psycopg2 for lookups); psycopg2 cannot run the binary
    COPY of the bulk paths, which lookups never need.
    """
    url = normalize_url(url)
    try:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
    except exc.ArgumentError:
        hint = (f"for a SQLite file, sqlite:///{url}" if "://" not in url else
                "use sqlite:///FILE or postgresql://USER@HOST/DB")
        raise DatabaseError(f"not a database URL: {url!r} ({hint})") from None
    if backend not in ("sqlite", "postgresql"):
        raise DatabaseError(f"unsupported database {backend!r}: use sqlite:///FILE or "
                            "postgresql://USER@HOST/DB")
    if backend == "sqlite":
        path = _sqlite_path(url)
        if path is not None and not path.parent.is_dir():
            raise DatabaseError(f"no folder {path.parent} for the database file {path.name}: "
                                "make it first, or name a file in a folder that exists")
        if path is not None and not create and not path.exists():
            raise DatabaseError(f"no registry database at {path}: run `registry init` first")
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if lookups_only and parsed.drivername == "postgresql+psycopg" and \
            importlib.util.find_spec("psycopg2") is not None:
        parsed = parsed.set(drivername="postgresql+psycopg2")
    try:
        return create_engine(parsed, pool_pre_ping=False)
    except ModuleNotFoundError as e:
        # the drivers are the `postgresql` extra: a SQLite-only install has none
        raise DatabaseError(f"PostgreSQL needs the postgresql extra ({e.name} is not installed): "
                            f"{extra_hint('postgresql')}") from None


def _sqlite_connect(dbapi_conn, _record) -> None:
    # Take transaction control away from the sqlite3 module: we issue BEGIN ourselves.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    # a new file's page size, fixed once its first page is written (below, by WAL mode):
    # an item row (a 384-d float32 embedding and its key) takes 1.6 KB, two to a 4 KB page
    # with a fifth of it empty, ten to a 16 KB one: a smaller file and faster bulk reads and
    # writes, for a slightly slower key -> ID (BENCHMARKS.md, Design figures: SQLite page
    # size). An existing file keeps its page size (changing it takes a VACUUM out of WAL
    # mode).
    cur.execute(f"PRAGMA page_size = {SQLITE_PAGE_SIZE}")
    cur.execute("PRAGMA foreign_keys = ON")
    cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
    mode = cur.execute("PRAGMA journal_mode").fetchone()[0]
    if mode != "wal":
        cur.execute("PRAGMA journal_mode = WAL")
    cur.execute("PRAGMA synchronous = NORMAL")
    # 64 MiB of page cache: index inserts of a large version stay in memory
    cur.execute("PRAGMA cache_size = -65536")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    options = conn.get_execution_options()
    if options.get("registry_write", False):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif options.get("registry_snapshot", True):
        conn.exec_driver_sql("BEGIN")
    # else a point lookup: each statement reads in a transaction of its own (autocommit),
    # a round trip less on the hottest read path


def first_line(error: BaseException) -> str:
    """The first line of a database error's message (the driver's, where there is one)."""
    orig = getattr(error, "orig", None) or error
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__


@contextmanager
def transaction(engine: Engine, *, write: bool, snapshot: bool = True
                ) -> Iterator[Connection]:
    """One transaction: committed when the block ends, rolled back if it raises. A read
    transaction sees one snapshot throughout, unless ``snapshot`` is False (point lookups,
    whose rows never change once written: one round trip less; on SQLite each statement
    then reads on its own)."""
    try:
        with engine.connect() as conn:
            conn.execution_options(registry_write=write, registry_snapshot=snapshot)
            if not write and conn.dialect.name == "postgresql":
                # counts and the rows read after them must agree; without a snapshot, each
                # statement runs on its own (no BEGIN and COMMIT round trips)
                conn.execution_options(
                    isolation_level="REPEATABLE READ" if snapshot else "AUTOCOMMIT")
            with conn.begin():
                yield conn
    except (exc.OperationalError, exc.InterfaceError) as e:
        raise DatabaseError(f"database {describe_url(str(engine.url))}: "
                            f"{first_line(e)}") from None


class Database:
    """One registry database as the library's actions use it: an engine made on first use,
    and transactions that check the schema once. ``tx`` is what the modules that run the
    actions take (:data:`Tx`).

    ``lookups_only``: for short-lived processes that only read IDs and versions; on
    PostgreSQL they connect through the lighter psycopg2 where installed (see
    :func:`make_engine`), and every write is refused.
    """

    def __init__(self, url: str | None = None, *, lookups_only: bool = False):
        self.url = normalize_url(url or default_url())
        self.lookups_only = lookups_only
        self._engine: Engine | None = None
        self._schema_ok = False

    @contextmanager
    def tx(self, *, write: bool, snapshot: bool = True) -> Iterator[Connection]:
        """One transaction (see :func:`transaction`)."""
        if write and self.lookups_only:
            raise StateError("this Registry was opened for lookups only: open another one "
                             "to change anything")
        if self._engine is None:
            self._engine = make_engine(self.url, lookups_only=self.lookups_only)
        with transaction(self._engine, write=write, snapshot=snapshot) as conn:
            if not self._schema_ok:
                check_schema(conn)
                self._schema_ok = True
            yield conn

    def migrate(self) -> tuple[str | None, str | None]:
        """Create or upgrade the schema (see :func:`migrate`), on an engine of its own that
        may create the SQLite file."""
        self.close()
        engine = make_engine(self.url, create=True)
        try:
            return migrate(engine)
        finally:
            engine.dispose()
            self._schema_ok = False

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# autovacuum's own threshold for inserts (autovacuum_vacuum_insert_threshold)
VACUUM_INSERTED = 1000


def refresh_statistics(conn: Connection, table: str, changed: int, *,
                       vacuum: bool = False) -> None:
    """PostgreSQL: ANALYZE ``table`` after this process wrote ``changed`` of its rows, when
    that is more than 50 plus a tenth of the rows the planner knew of (autovacuum's own
    rule; the planner has never seen a table that was not analyzed yet).

    Without it, a server without autovacuum, or one that has not come round yet, plans
    blind: reading a million fresh items for `train` went through a large sort and took far
    longer, and the first listing of each prefix of a new version was slow
    (BENCHMARKS.md, Design figures: ANALYZE after writes).

    ``vacuum`` (outside a transaction: a ``snapshot=False`` read), for more than
    VACUUM_INSERTED rows inserted, also runs VACUUM, as autovacuum does after inserts: it
    marks the new rows' pages all-visible (until then an index-only scan reads the table for
    each of them, and the first reader of a fresh row writes its page again to set hint
    bits). Its work grows with the new pages only. Once vacuumed, finding the items without
    an ID through the index is faster than through the table; before, it is slower
    (BENCHMARKS.md, Design figures: VACUUM after inserts)."""
    if conn.dialect.name != "postgresql" or changed <= 0:
        return
    known = conn.exec_driver_sql("SELECT reltuples FROM pg_class WHERE oid = "
                                 "to_regclass(%(t)s)", {"t": table}).scalar()
    analyze = known is None or known < 0 or changed > 50 + 0.1 * known
    if vacuum and changed > VACUUM_INSERTED:
        conn.exec_driver_sql(f"VACUUM {'(ANALYZE) ' if analyze else ''}{table}")
    elif analyze:
        conn.exec_driver_sql(f"ANALYZE {table}")


def schema_revision(conn: Connection) -> str | None:
    """The Alembic revision the database is at, or None for an empty database."""
    if conn.dialect.name == "sqlite":
        found = conn.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='alembic_version'").first()
    else:
        found = conn.execute(text("SELECT to_regclass('alembic_version')")).scalar()
    if not found:
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def check_schema(conn: Connection) -> None:
    """Raise unless the database is at this registry's schema."""
    rev = schema_revision(conn)
    where = describe_url(str(conn.engine.url))
    if rev is None:
        raise DatabaseError(f"{where} is not a registry database yet: run `registry init`")
    if rev == HEAD:
        return
    if rev in REVISIONS:
        raise DatabaseError(f"{where} is at schema {rev}, this registry needs {HEAD}: "
                            "run `registry init` to upgrade it")
    raise DatabaseError(f"{where} is at schema {rev}, which this registry does not know "
                        f"(it knows up to {HEAD}): it was written by a newer registry")


def migrations_dir() -> str:
    """The Alembic script folder shipped inside the package (``registry.migrations``)."""
    from importlib.util import find_spec

    spec = find_spec("registry.migrations")
    if spec is None or not spec.submodule_search_locations:
        raise DatabaseError("the registry's migrations are missing from this installation")
    return next(iter(spec.submodule_search_locations))


def alembic_config(conn: Connection | None = None) -> alembic.config.Config:
    """An Alembic Config pointing at the packaged migrations, bound to ``conn`` if given."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", migrations_dir())
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def migrate(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade the schema to ``revision``; return the revisions before and after."""
    from alembic import command

    with transaction(engine, write=True) as conn:
        before = schema_revision(conn)
        if before is not None and before not in REVISIONS:
            check_schema(conn)  # raises: written by a newer registry
        command.upgrade(alembic_config(conn), revision)
        after = schema_revision(conn)
        if conn.dialect.name == "postgresql" and after == HEAD:
            recount_items(conn)
    return before, after



def recount_items(conn: Connection) -> None:
    """PostgreSQL: set the item count (migration 0012) to the rows there are where it says
    otherwise (its triggers were disabled while rows were written, say): `registry init`
    does this, which `registry verify` points to. No writer of items meanwhile (a SHARE
    lock); the row is written only where the count differs."""
    conn.exec_driver_sql("LOCK TABLE items IN SHARE MODE")
    conn.exec_driver_sql("UPDATE item_count SET items = c.n FROM (SELECT count(*) AS n "
                         "FROM items) c WHERE item_count.items <> c.n")
