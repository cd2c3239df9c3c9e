"""Reading issued IDs: key -> ID (``get``) and ID or prefix -> items (``lookup``).

Light to import, like the store's lookups it calls: these serve ``registry get`` and
``registry lookup``, whose start-up time counts (no numpy, faiss or torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from sqlalchemy import Connection

from . import defaults
from .errors import InputError, NotFoundError, listed
from .ids import parse_id
from .store import lookups, versions
from .store.db import Tx
from .store.versions import Version

MAX_LIMIT = 10_000


@dataclass
class IdRecord:
    """One issued ID: the item's key, the ID's text and codes, its disambiguation number,
    the version, whether the item was removed since, and (where asked for) its metadata."""

    key: str
    id: str
    codes: list[int]
    disambiguation: int
    version: int
    removed: bool = False
    metadata: dict | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        if self.metadata is None:
            del out["metadata"]
        return out


@dataclass
class GetResult(Sequence):
    """The IDs of the keys asked for that have one in ``version``, in the order asked (it is
    a sequence of them); ``unknown`` keys the registry does not hold, ``unassigned`` keys
    of live items that have no ID in the version yet (``registry assign`` gives them one),
    ``removed`` keys of items removed before they had one there (they never will; adding
    them again brings them back)."""

    version: int
    records: list[IdRecord]
    unknown: list[str]
    unassigned: list[str]
    removed: list[str] = field(default_factory=list)

    def __getitem__(self, i):
        return self.records[i]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def complete(self) -> bool:
        """Every key asked for has an ID."""
        return not self.unknown and not self.unassigned and not self.removed

    def problem(self) -> str | None:
        """One line on the keys without an ID, or None."""
        parts = []
        if self.unknown:
            parts.append(f"unknown key{'s' if len(self.unknown) > 1 else ''}: "
                         f"{listed(self.unknown)}")
        if self.unassigned:
            parts.append(f"no ID in version {self.version} yet for {listed(self.unassigned)} "
                         f"(run `registry assign --version {self.version}`)")
        if self.removed:
            them = "them" if len(self.removed) > 1 else "it"
            parts.append(f"removed item{'s' if len(self.removed) > 1 else ''} without an ID "
                         f"in version {self.version}: {listed(self.removed)} (add {them} again "
                         f"to bring {them} back)")
        return "; ".join(parts) or None

    def to_dict(self) -> dict:
        return {"version": self.version, "items": [r.to_dict() for r in self.records],
                "unknown": self.unknown, "unassigned": self.unassigned,
                "removed": self.removed}


@dataclass
class LookupResult:
    """The items a ``query`` found in ``version``: one for a full ID (``kind`` "id"), the
    first ones under a prefix ("prefix"), with ``more`` when others follow and ``total``
    the count under the prefix in all, where it was counted."""

    query: str
    version: int
    kind: str
    records: list[IdRecord]
    more: bool
    total: int | None = None

    def to_dict(self) -> dict:
        return {"query": self.query, "version": self.version, "kind": self.kind,
                "items": [r.to_dict() for r in self.records], "more": self.more,
                "total": self.total}


class Reader:
    """get and lookup on one database; the versions they read are fetched once each (only
    their immutable fields, number, parameters and code space, are used, so a state change
    elsewhere is harmless), while aliases are looked up every time."""

    def __init__(self, tx: Tx):
        self.tx = tx
        self._seen: dict[int, Version] = {}

    def version(self, conn: Connection, ref: str | int | None) -> Version:
        number = versions.resolve_number(conn, ref)
        v = None if number is None else self._seen.get(number)
        if v is None:
            v = None if number is None else versions.get(conn, number)
            if v is None:
                raise versions.not_found(conn, ref)
            self._seen[number] = v
        return v

    def get(self, keys: Sequence[str], ref: str | int | None, *,
            metadata: bool = False) -> GetResult:
        keys = list(keys)
        if not keys:
            raise InputError("give at least one key", param="keys")
        with self.tx(write=False, snapshot=False) as conn:
            v = self.version(conn, ref)
            found = lookups.ids_of_keys(conn, v.number, keys)
            rows = [found[k] for k in keys if k in found and found[k].code is not None]
            metas = lookups.metadata_of(conn, [r.key for r in rows]) if metadata else None
        without = [found[k] for k in keys if k in found and found[k].code is None]
        return GetResult(v.number, records(v, rows, metas),
                         unknown=[k for k in keys if k not in found],
                         unassigned=[r.key for r in without if not r.removed],
                         removed=[r.key for r in without if r.removed])

    def lookup(self, query: str, ref: str | int | None, *, limit: int | None = None,
               metadata: bool = False, count: bool = False) -> LookupResult:
        if limit is not None and not 1 <= limit <= MAX_LIMIT:
            raise InputError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}",
                             param="limit")
        with self.tx(write=False, snapshot=False) as conn:
            v = self.version(conn, ref)
            parsed = parse_id(query, v.space)
            if parsed.is_full and limit is not None:
                raise InputError(f"{query.strip()!r} is a full ID, which names one item: a "
                                 "limit applies to a prefix", param="limit")
            limit = defaults.LOOKUP_LIMIT if limit is None else limit
            if parsed.is_full:
                row = lookups.by_id(conn, v.number, v.space.pack_one(parsed.codes),
                                    parsed.disambiguation)
                if row is None:
                    raise NotFoundError("ID", query.strip(), f"in {v.label}")
                rows, kind = [row], "id"
            else:
                lo, hi = v.space.prefix_range(parsed.codes)
                rows, kind = lookups.by_range(conn, v.number, lo, hi, limit + 1), "prefix"
            more = len(rows) > limit
            rows = rows[:limit]
            total = None
            if kind == "prefix" and count:
                total = lookups.count_range(conn, v.number, lo, hi) if more else len(rows)
            metas = lookups.metadata_of(conn, [r.key for r in rows]) if metadata else None
        return LookupResult(query.strip(), v.number, kind, records(v, rows, metas), more=more,
                            total=total)


def records(v: Version, rows: Sequence[lookups.Row],
            metas: dict[str, dict | None] | None = None) -> list[IdRecord]:
    """The IdRecords of issued IDs (``rows`` of :mod:`registry.store.lookups`), in one loop:
    a prefix listing builds a hundred of them per call."""
    parts = v.space.id_parts((r.code, r.disamb) for r in rows)
    return [IdRecord(r.key, text, codes, r.disamb, v.number, r.removed,
                     None if metas is None else (metas.get(r.key) or {}))
            for r, (text, codes) in zip(rows, parts, strict=True)]
