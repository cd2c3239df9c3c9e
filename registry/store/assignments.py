"""Assignments: writing the item -> ID rows of each version (lookups are in lookups.py).

Rows are only ever inserted: an issued ID is never changed, deleted or handed to another item.
On PostgreSQL each version's rows are a partition of their own (migration 0005), written in
one go by the train that makes the version.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sqlalchemy import Connection, delete, func, select

from ..errors import NotFoundError, StateError
from . import db, seals
from .bulk import in_list, insert_arrays, int_list
from .lookups import IN_CHUNK, driver_cursor, driver_rows
from .schema import State, assignments
from .versions import get


def write(conn: Connection, version: int, item_ids: np.ndarray, packed: np.ndarray,
          disamb: np.ndarray, *, incremental: bool) -> int:
    """Insert one ID per item; the unique constraints refuse any duplicate. A frozen
    version only gains IDs for items it had none for (``incremental``); a retired one none."""
    v = get(conn, version)
    if v is None:
        raise NotFoundError("version", version)
    if v.state == State.RETIRED or (v.state == State.FROZEN and not incremental):
        raise StateError(f"{v.label} is {v.state}: its issued IDs never change")
    n = len(item_ids)
    columns = {
        "version_id": np.full(n, version, dtype=np.int32),
        "item_id": np.asarray(item_ids, dtype=np.int64),
        "code": np.asarray(packed, dtype=np.int64),
        "disamb": np.asarray(disamb, dtype=np.int32),
        "incremental": np.full(n, incremental, dtype=np.bool_),
    }
    if conn.dialect.name == "postgresql" and not incremental:
        return _new_partition(conn, version, columns)
    # in the order of the unique (version, code, number) index: each insert lands beside the
    # last one instead of on a page at random, faster on both databases (BENCHMARKS.md,
    # Design figures: IDs written in index order)
    order = np.lexsort((columns["disamb"], columns["code"]))
    columns = {name: a[order] for name, a in columns.items()}
    return insert_arrays(conn, assignments, columns)


def drop(conn: Connection, version: int) -> None:
    """Every ID of a draft ``version`` (the caller checked it is one: the guards refuse the
    IDs of any other). PostgreSQL drops its partition; SQLite deletes its rows."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {partition(version)}")
    else:
        conn.execute(delete(assignments).where(assignments.c.version_id == version))


def partition(version: int) -> str:
    """PostgreSQL: the table that holds ``version``'s IDs, a partition of ``assignments``
    (migration 0005). Statements name ``assignments`` and the version; PostgreSQL takes them
    to its partition."""
    return f"assignments_v{int(version)}"


def refresh_statistics(conn: Connection, version: int, changed: int) -> None:
    """:func:`db.refresh_statistics` after writing ``changed`` of ``version``'s IDs, for
    its partition on PostgreSQL: the whole partitioned table would be sampled partition by
    partition, and ANALYZE of it waits for a train that is attaching one."""
    db.refresh_statistics(conn, partition(version) if conn.dialect.name == "postgresql"
                          else "assignments", changed)


def _new_partition(conn: Connection, version: int, columns: dict[str, np.ndarray]) -> int:
    """PostgreSQL: a trained version's IDs go into a new table of their own, its indexes are
    built once they are in, and it becomes the version's partition (see
    :func:`create_partition`). Kept up row by row, the two indexes cost most of the write,
    the one whose order the rows do not come in most; built at once they cost far less
    (BENCHMARKS.md, Design figures: partition indexes built at once). The rows are written
    frozen (the table is this transaction's): readers find them visible without a later
    VACUUM."""
    return create_partition(conn, version, lambda name: insert_arrays(
        conn, assignments, columns, into=name, freeze=True))


def create_partition(conn: Connection, version: int, fill: Callable[[str], int]) -> int:
    """PostgreSQL: make the table :func:`partition` names, ``fill(name)`` it (returning the
    row count), index it and attach it as ``version``'s partition, in the caller's
    transaction. Its CHECK constraint vouches for the rows, so attaching reads none of them;
    the row guards come with the parent, the one against TRUNCATE is added here.

    The unique constraint is the parent's, as its schema revision defines it (since 0006 its
    index includes the item id): a partition index that matched it less would make attaching
    build another."""
    name = partition(version)
    run = conn.exec_driver_sql
    unique = run("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = "
                 "'assignments'::regclass AND contype = 'u'").scalar_one()
    run(f"CREATE TABLE {name} (LIKE assignments, "
        f"CONSTRAINT ck_{name} CHECK (version_id = {int(version)}))")
    n = fill(name)
    run(f"ALTER TABLE {name} ADD CONSTRAINT pk_{name} PRIMARY KEY (version_id, item_id), "
        f"ADD CONSTRAINT uq_{name} {unique}")
    run(f"ALTER TABLE assignments ATTACH PARTITION {name} FOR VALUES IN ({int(version)})")
    run(f"CREATE TRIGGER guard_assignments_truncate BEFORE TRUNCATE ON {name} "
        "FOR EACH STATEMENT EXECUTE FUNCTION registry_guard_truncate('issued IDs')")
    return n


def first_free(conn: Connection, version: int, packed: np.ndarray) -> np.ndarray:
    """For each packed code, one more than the largest disambiguation number it has in
    ``version`` (0 for codes not yet used). The caller holds the version's write lock."""
    unique, inverse = np.unique(np.asarray(packed, dtype=np.int64), return_inverse=True)
    taken = np.full(unique.shape[0], -1, dtype=np.int64)
    q = (select(assignments.c.code, func.max(assignments.c.disamb))
         .where(assignments.c.version_id == version).group_by(assignments.c.code))
    # PostgreSQL: one array parameter (thousands of parameters cost more to send than the
    # query takes to run); SQLite: IN lists within its parameter limit
    step = max(unique.shape[0], 1) if conn.dialect.name == "postgresql" else IN_CHUNK
    for start in range(0, unique.shape[0], step):
        part = unique[start:start + step]
        found = conn.execute(q.where(in_list(conn, assignments.c.code, part.tolist()))).all()
        if found:
            codes, maxima = (np.asarray(col, dtype=np.int64) for col in zip(*found, strict=True))
            taken[start + np.searchsorted(part, codes)] = maxima
    return (taken + 1)[inverse]


def count(conn: Connection, version: int, *, exact: bool = False) -> int:
    """How many IDs ``version`` holds: from its seal when frozen (no scan), unless
    ``exact`` asks for the rows counted (what a file of them says it holds)."""
    sealed = None if exact else seals.get(conn, version)
    if sealed is not None:
        return sealed.count
    return conn.execute(select(func.count()).select_from(assignments)
                        .where(assignments.c.version_id == version)).scalar()


def served(conn: Connection, version: int, after_item: int = 0
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str], list]:
    """(item ids, packed codes, numbers, removed flags, keys, metadata as JSON text or None)
    of the IDs of ``version`` held by items whose id is above ``after_item``, in ID order:
    what a server holds of a version, whole (``after_item`` 0) or what it gained since."""
    rows = driver_rows(conn, "SELECT a.item_id, a.code, a.disamb, i.removed_at IS NOT NULL, "
                       "i.key, CAST(i.meta AS TEXT) FROM assignments a "
                       "JOIN items i ON i.id = a.item_id WHERE a.version_id = ? "
                       "AND a.item_id > ? ORDER BY a.code, a.disamb",
                       [version, after_item])
    n = len(rows)
    columns = [np.fromiter((r[c] for r in rows), dtype=t, count=n)
               for c, t in enumerate((np.int64, np.int64, np.int64, bool))]
    return (*columns, [r[4] for r in rows], [r[5] for r in rows])


def held(conn: Connection, version: int, *, incremental: bool | None = None,
         chunk_rows: int = 2_000_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(item ids, packed codes, numbers) of every ID of ``version`` (only those given at
    training time, or only those assigned later, when ``incremental`` says so), in item
    order: three integers an ID, which the database joins into one text per ``chunk_rows``
    of them (a retrain, ``stats`` or ``drift`` of a version of ten million IDs reads them
    all)."""
    joined = "string_agg(concat_ws(',', item_id, code, disamb), ',')" \
        if conn.dialect.name == "postgresql" else \
        "group_concat(item_id || ',' || code || ',' || disamb)"
    only = "" if incremental is None else \
        f" AND incremental = {'true' if incremental else 'false'}"
    sql = (f"SELECT {joined} FROM (SELECT item_id, code, disamb FROM assignments WHERE "
           f"version_id = ? AND item_id > ?{only} ORDER BY item_id LIMIT {int(chunk_rows)}) "
           "AS part")
    parts, after = [], -1
    while True:
        got = int_list(driver_rows(conn, sql, (version, after))[0][0]).reshape(-1, 3)
        if got.size:
            got = got[np.argsort(got[:, 0], kind="stable")]  # the aggregate's order is free
            parts.append(got)
            after = int(got[-1, 0])
        if len(got) < chunk_rows:
            break
    out = np.concatenate(parts) if parts else np.empty((0, 3), dtype=np.int64)
    return out[:, 0].copy(), out[:, 1].copy(), out[:, 2].copy()


def issued_codes(conn: Connection, version: int, *, chunk_rows: int = 2_000_000
                 ) -> np.ndarray:
    """Every packed code issued in ``version``, sorted (a code shared by several IDs shows
    once per ID).

    The database joins the codes into one value per range of codes and numpy parses it,
    far faster than fetching the rows one by one. SQLite joins them as text, PostgreSQL as
    their 8-byte binary forms in one bytea sent in binary, faster than as text
    (BENCHMARKS.md, Design figures: joined code reads). Ranges hold about ``chunk_rows``
    IDs, far below the databases' 1 GB limit on one value.
    """
    total = count(conn, version)  # a frozen version's from its seal: no scan of its IDs
    if not total:
        return np.empty(0, dtype=np.int64)
    top = driver_rows(conn, "SELECT max(code) FROM assignments WHERE version_id = ?",
                      (version,))[0][0]
    where = "FROM assignments WHERE version_id = {0} AND code >= {0} AND code <= {0}"
    if conn.dialect.name == "postgresql":
        sql = "SELECT string_agg(int8send(code), ''::bytea) " + where.format("%s")

        def between(lo: int, hi: int) -> np.ndarray:
            with driver_cursor(conn, sql) as cur:
                cur.execute(sql, (version, lo, hi), binary=True)
                joined = cur.fetchone()[0]
            return np.frombuffer(joined or b"", dtype=">i8").astype(np.int64)
    else:
        sql = "SELECT group_concat(code) " + where.format("?")

        def between(lo: int, hi: int) -> np.ndarray:
            return int_list(driver_rows(conn, sql, (version, lo, hi))[0][0])
    parts = []
    bounds = np.linspace(0, top + 1, -(-total // chunk_rows) + 1).astype(np.int64)
    bounds[-1] = top + 1  # exact at the top, whatever the float rounding
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        if hi > lo:
            parts.append(between(lo, hi - 1))
    codes = np.concatenate(parts)
    codes.sort()
    return codes


def snapshot(conn: Connection, version: int, ranges: list[tuple[int, int]] | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(packed codes, disambiguation numbers, removed flags, keys) of every ID of
    ``version`` (or of those whose code lies in one of the inclusive ``ranges``), in ID
    order (code, then number): what a snapshot holds."""
    # SQLite: the covering index of the items' ids, keys and states, not their rows (with
    # the embeddings), as the lookups read them
    hint = " INDEXED BY ix_items_id_key_removed_at" if conn.dialect.name == "sqlite" else ""
    sql = ("SELECT a.code, a.disamb, i.removed_at IS NOT NULL, i.key FROM assignments a "
           f"JOIN items i{hint} ON i.id = a.item_id WHERE a.version_id = ?")
    params: list = [version]
    if ranges is not None:
        if not ranges:
            return (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, bool), [])
        sql += " AND (" + " OR ".join(["a.code BETWEEN ? AND ?"] * len(ranges)) + ")"
        params += [bound for pair in ranges for bound in pair]
    rows = driver_rows(conn, sql + " ORDER BY a.code, a.disamb", params)
    n = len(rows)
    codes = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
    disamb = np.fromiter((r[1] for r in rows), dtype=np.int64, count=n)
    removed = np.fromiter((r[2] for r in rows), dtype=bool, count=n)
    return codes, disamb, removed, [r[3] for r in rows]
