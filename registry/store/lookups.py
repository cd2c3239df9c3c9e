"""Read-only lookups of issued IDs: key -> ID, ID -> key, prefix -> keys.

No numpy here: these serve ``registry get`` and ``registry lookup``, whose start-up time counts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import Connection, Select, exc, select, tuple_

from .schema import assignments, items

# SQLite allows 32766 bound parameters per statement; stay well below.
IN_CHUNK = 5000


class Row(NamedTuple):
    """One issued ID: packed code, disambiguation number, the item's key and whether the
    item was removed (a tuple: a prefix listing builds a hundred of these per call)."""

    code: int | None
    disamb: int | None
    key: str
    removed: bool


def _row(r) -> Row:
    return Row(r[0], r[1], r[2], r[3] is not None)


# The point lookups below are plain SQL through the driver: a lookup is a single index
# seek, and building and compiling a SQLAlchemy statement would cost far more than the seek
# (BENCHMARKS.md, Design figures: plain SQL point lookups).
_KEYS = ("SELECT a.code, a.disamb, i.key, i.removed_at FROM items i LEFT JOIN assignments a "
         "ON a.item_id = i.id AND a.version_id = ? WHERE i.key IN ({keys})")
_ID = ("SELECT a.code, a.disamb, i.key, i.removed_at FROM assignments a JOIN items i{hint} "
       "ON i.id = a.item_id WHERE a.version_id = ? AND a.code = ? AND a.disamb = ?")
_RANGE = ("SELECT a.code, a.disamb, i.key, i.removed_at FROM assignments a JOIN items i{hint} "
          "ON i.id = a.item_id WHERE a.version_id = ? AND a.code >= ? AND a.code <= ? "
          "ORDER BY a.code, a.disamb LIMIT {limit}")


# SQLite's planner always fetches a joined row by its rowid, which reads the whole item row
# (embedding included) per ID; the covering index holds what a listing shows, and is faster
# (BENCHMARKS.md, Design figures: covering index for listings)
_HINT = {"sqlite": " INDEXED BY ix_items_id_key_removed_at", "postgresql": ""}


@contextmanager
def driver_cursor(conn: Connection, statement: str) -> Iterator:
    """A driver cursor of ``conn`` whose errors surface as SQLAlchemy's, like all others."""
    dbapi = conn.dialect.loaded_dbapi
    cur = conn.connection.cursor()
    try:
        yield cur
    except dbapi.Error as e:
        raise exc.DBAPIError.instance(statement, None, e, dbapi.Error) from e
    finally:
        cur.close()


def driver_rows(conn: Connection, sql: str, params: Sequence = ()) -> list[tuple]:
    """The rows of ``sql`` (written with ``?`` placeholders) as the driver returns them
    (tuples): straight through a driver cursor, without statement compilation, execution
    events or SQLAlchemy rows, for hot and large reads (a key -> ID lookup is faster this
    way than through ``exec_driver_sql``: BENCHMARKS.md, Design figures: driver cursor
    reads)."""
    if conn.dialect.name == "postgresql":
        sql = sql.replace("?", "%s")
    with driver_cursor(conn, sql) as cur:
        cur.execute(sql, tuple(params))
        return cur.fetchall() if cur.description is not None else []


def storable(keys: Sequence[str]) -> list[str]:
    """Those of ``keys`` that can be stored at all: a key with a NUL byte never is
    (PostgreSQL text cannot hold one), so looking it up must find nothing, not fail."""
    return [k for k in keys if "\x00" not in k]


def _fetch(conn: Connection, template: str, params: tuple, **parts: str) -> list[tuple]:
    return driver_rows(conn, template.format(hint=_HINT.get(conn.dialect.name, ""), **parts),
                       params)


def ids_of_keys(conn: Connection, version: int, keys: Sequence[str]) -> dict[str, Row]:
    """key -> Row in ``version`` for those of ``keys`` that exist; the Row of an item
    without an ID there has None for its code and number (and says whether it is removed)."""
    out: dict[str, Row] = {}
    keys = storable(keys)
    for start in range(0, len(keys), IN_CHUNK):
        part = keys[start:start + IN_CHUNK]
        for r in _fetch(conn, _KEYS, (version, *part), keys=", ".join(["?"] * len(part))):
            out[r[2]] = _row(r)
    return out


def count_range(conn: Connection, version: int, lo: int, hi: int) -> int:
    """How many IDs of ``version`` have a packed code in [lo, hi]: an index range count."""
    return int(driver_rows(conn, "SELECT count(*) FROM assignments WHERE version_id = ? AND "
                                 "code >= ? AND code <= ?", (version, lo, hi))[0][0])


def metadata_of(conn: Connection, keys: Sequence[str]) -> dict[str, dict | None]:
    """key -> the metadata kept with the item (the columns its file had beside the key and
    text), for those of ``keys`` that exist. Not on the hot path: asked for explicitly."""
    keys = storable(keys)
    out: dict[str, dict | None] = {}
    for start in range(0, len(keys), IN_CHUNK):
        part = keys[start:start + IN_CHUNK]
        out.update(conn.execute(select(items.c.key, items.c.meta)
                                .where(items.c.key.in_(part))).all())
    return out


def by_id(conn: Connection, version: int, code: int, disamb: int) -> Row | None:
    rows = _fetch(conn, _ID, (version, code, disamb))
    return _row(rows[0]) if rows else None


def by_range(conn: Connection, version: int, lo: int, hi: int, limit: int) -> list[Row]:
    """IDs whose packed code lies in [lo, hi], in ID order, at most ``limit``."""
    # the limit is part of the statement's text: PostgreSQL plans a prepared statement once
    # only when that plan's estimate is not far off the plans made for each call, and it
    # estimates a LIMIT parameter at a tenth of the range, so each call was planned again
    # (BENCHMARKS.md, Design figures: listing limit in the statement)
    return [Row(code, disamb, key, removed is not None)
            for code, disamb, key, removed in _fetch(conn, _RANGE, (version, lo, hi),
                                                     limit=str(int(limit)))]


@dataclass
class Population:
    """The IDs of a version, one entry per item, in parallel lists."""

    item_ids: list[int]
    keys: list[str]
    codes: list[int]  # packed
    disambs: list[int]
    removed: list[bool]


def population(conn: Connection, version: int) -> Population:
    """The items with an ID in ``version``, in item order."""
    return _collect(conn.execute(_population(version).order_by(assignments.c.item_id))
                    .yield_per(50_000))


def population_parts(conn: Connection, version: int, *, rows: int = 262_144
                     ) -> Iterator[Population]:
    """:func:`population` of every ID of ``version`` in ID order, ``rows`` IDs at a time:
    each part starts after the last ID of the one before, through the version's unique
    index, so that a version of ten million IDs is never held at once."""
    q = _population(version).order_by(assignments.c.code, assignments.c.disamb).limit(rows)
    after = None
    while True:
        part = _collect(conn.execute(q if after is None else q.where(
            tuple_(assignments.c.code, assignments.c.disamb) > tuple_(*after))))
        if part.item_ids:
            yield part
        if len(part.item_ids) < rows:
            return
        after = (part.codes[-1], part.disambs[-1])


def _population(version: int) -> Select:
    return (select(assignments.c.item_id, items.c.key, assignments.c.code,
                   assignments.c.disamb, items.c.removed_at)
            .join(items, items.c.id == assignments.c.item_id)
            .where(assignments.c.version_id == version))


def _collect(rows) -> Population:
    out = Population([], [], [], [], [])
    for r in rows:
        out.item_ids.append(r.item_id)
        out.keys.append(r.key)
        out.codes.append(r.code)
        out.disambs.append(r.disamb)
        out.removed.append(r.removed_at is not None)
    return out
