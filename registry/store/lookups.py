"""Read-only lookups of issued IDs: key -> ID, ID -> key, prefix -> keys.

No numpy here: these serve ``registry get`` and ``registry lookup``, whose start-up time counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, and_, select

from .schema import assignments, items

# SQLite allows 32766 bound parameters per statement; stay well below.
IN_CHUNK = 5000


@dataclass(frozen=True)
class Row:
    """One issued ID: packed code, disambiguation number and the item's key."""

    code: int
    disamb: int
    key: str
    removed: bool


def _row(r) -> Row:
    return Row(r.code, r.disamb, r.key, r.removed_at is not None)


def ids_of_keys(conn: Connection, version: int, keys: Sequence[str]) -> dict[str, Row | None]:
    """key -> Row in ``version`` for those of ``keys`` that have an ID there; keys that
    exist without an ID map to None."""
    out: dict[str, Row | None] = {}
    j = items.outerjoin(assignments, (assignments.c.item_id == items.c.id)
                        & (assignments.c.version_id == version))
    q = select(items.c.key, assignments.c.code, assignments.c.disamb,
               items.c.removed_at).select_from(j)
    keys = [k for k in keys if "\x00" not in k]  # never stored (PostgreSQL text cannot hold it)
    for start in range(0, len(keys), IN_CHUNK):
        part = keys[start:start + IN_CHUNK]
        for row in conn.execute(q.where(items.c.key.in_(part))):
            out[row.key] = None if row.code is None else _row(row)
    return out


def by_id(conn: Connection, version: int, code: int, disamb: int) -> Row | None:
    row = conn.execute(
        select(assignments.c.code, assignments.c.disamb, items.c.key, items.c.removed_at)
        .join(items, items.c.id == assignments.c.item_id)
        .where(assignments.c.version_id == version, assignments.c.code == code,
               assignments.c.disamb == disamb)).first()
    return None if row is None else _row(row)


def by_range(conn: Connection, version: int, lo: int, hi: int, limit: int) -> list[Row]:
    """IDs whose packed code lies in [lo, hi], in ID order, at most ``limit``."""
    q = (select(assignments.c.code, assignments.c.disamb, items.c.key, items.c.removed_at)
         .join(items, items.c.id == assignments.c.item_id)
         .where(and_(assignments.c.version_id == version, assignments.c.code >= lo,
                     assignments.c.code <= hi))
         .order_by(assignments.c.code, assignments.c.disamb)
         .limit(limit))
    return [_row(r) for r in conn.execute(q)]


@dataclass
class Population:
    """The IDs of a version, one entry per item, in parallel lists."""

    item_ids: list[int]
    keys: list[str]
    codes: list[int]  # packed
    disambs: list[int]
    removed: list[bool]


def population(conn: Connection, version: int, incremental: bool | None = None, *,
               by_id: bool = False) -> Population:
    """The items with an ID in ``version`` (only those given at training time, or only those
    assigned later, when ``incremental`` says so), in item order, or in ID order."""
    q = (select(assignments.c.item_id, items.c.key, assignments.c.code, assignments.c.disamb,
                items.c.removed_at)
         .join(items, items.c.id == assignments.c.item_id)
         .where(assignments.c.version_id == version))
    q = q.order_by(assignments.c.code, assignments.c.disamb) if by_id \
        else q.order_by(assignments.c.item_id)
    if incremental is not None:
        q = q.where(assignments.c.incremental.is_(incremental))
    out = Population([], [], [], [], [])
    for r in conn.execute(q).yield_per(50_000):
        out.item_ids.append(r.item_id)
        out.keys.append(r.key)
        out.codes.append(r.code)
        out.disambs.append(r.disamb)
        out.removed.append(r.removed_at is not None)
    return out


def codes_in_prefixes(conn: Connection, version: int, prefixes: Sequence[int],
                      span: int) -> list[int]:
    """Packed codes issued in ``version`` under the given prefixes, each the range
    [p * span, p * span + span - 1] of the packed code (an index range scan each)."""
    from sqlalchemy import or_

    out: list[int] = []
    for start in range(0, len(prefixes), 200):
        ranges = [and_(assignments.c.code >= p * span, assignments.c.code <= p * span + span - 1)
                  for p in prefixes[start:start + 200]]
        q = select(assignments.c.code).where(assignments.c.version_id == version, or_(*ranges))
        out.extend(conn.execute(q).scalars())
    return out
