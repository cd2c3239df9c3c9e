"""Versions, their codebooks, aliases and the append-only event log."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from sqlalchemy import Connection, delete, func, insert, select, text, update

from .. import defaults
from ..errors import InputError, NotFoundError, StateError
from ..ids import CodeSpace
from .lookups import driver_rows
from .schema import State, aliases, assignments, codebooks, events, occupancy, versions

ACTIVE = defaults.ALIAS

MAX_ALLOCATION_BLOCK = 1 << 20
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,63}")


@dataclass
class Version:
    """One trained codebook set and the state of its life cycle."""

    number: int
    name: str | None
    state: str
    params: dict
    dim: int
    embedding_model: str | None
    parent: int | None
    stats: dict
    created_at: datetime
    frozen_at: datetime | None
    retired_at: datetime | None
    aliases: list[str] = field(default_factory=list)

    @cached_property
    def space(self) -> CodeSpace:
        return CodeSpace(tuple(self.params["codebook_sizes"]))

    @property
    def residual(self) -> str:
        return self.params.get("residual", "plain")

    @property
    def beam(self) -> int:
        """Code paths kept while encoding levels 2..L (versions before the option: 1)."""
        return int(self.params.get("beam", 1))

    @property
    def largest_disambiguation(self) -> int:
        """The largest disambiguation number training gave (a figure of the train)."""
        return int(self.stats.get("largest_disambiguation", 0))

    @property
    def max_disambiguation(self) -> int:
        """The largest disambiguation number the version may ever issue: its vocabulary ends
        with that token. Fixed when the version is trained (migration 0008 fixed it for the
        versions from before)."""
        return int(self.params["max_disambiguation"])

    @property
    def vocabulary_size(self) -> int:
        """Tokens in the version's vocabulary (:func:`registry.ids.vocabulary`): every code
        of every level and each disambiguation number up to its limit."""
        return sum(self.space.sizes) + self.max_disambiguation + 1

    @property
    def allocation_block(self) -> int:
        """New items get IDs a block of this many consecutive item ids at a time (versions
        before the setting: defaults.ALLOCATION_BLOCK)."""
        return int(self.params.get("allocation_block", defaults.ALLOCATION_BLOCK))

    @property
    def collisions(self) -> str:
        """How collisions are handled (versions before nearest-free: suffix)."""
        return self.params.get("collisions", "suffix")

    @property
    def label(self) -> str:
        return f"version {self.number}" + (f" ({self.name})" if self.name else "")

    def to_dict(self) -> dict:
        return {
            "version": self.number, "name": self.name, "state": self.state,
            "aliases": self.aliases, "params": self.params, "dim": self.dim,
            "embedding_model": self.embedding_model, "parent": self.parent,
            "stats": self.stats, "max_disambiguation": self.max_disambiguation,
            "vocabulary_tokens": self.vocabulary_size,
            "created_at": _iso(self.created_at), "frozen_at": _iso(self.frozen_at),
            "retired_at": _iso(self.retired_at),
        }


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat()


def _version(row) -> Version:
    return Version(row.id, row.name, row.state, row.params, row.dim, row.embedding_model,
                   row.parent_id, row.stats or {}, row.created_at, row.frozen_at,
                   row.retired_at)


def check_name(name: str, what: str = "version name", param: str = "name") -> str:
    if not _NAME.fullmatch(name):
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise InputError(f"{what} {shown!r} must start with a letter and hold only letters, "
                         "digits, '.', '_' or '-' (at most 64)", param=param)
    return name


def get(conn: Connection, number: int, *, lock: bool = False) -> Version | None:
    """The version with this number; ``lock`` holds its row until the transaction ends
    (PostgreSQL; SQLite writers are serialised by BEGIN IMMEDIATE already)."""
    q = select(versions).where(versions.c.id == number)
    if lock and conn.dialect.name == "postgresql":
        q = q.with_for_update()
    row = conn.execute(q).first()
    if row is None:
        return None
    v = _version(row)
    v.aliases = list(conn.execute(select(aliases.c.name).where(aliases.c.version_id == number)
                                  .order_by(aliases.c.name)).scalars())
    return v


def by_name(conn: Connection, name: str) -> Version | None:
    number = conn.execute(select(versions.c.id).where(versions.c.name == name)).scalar()
    return None if number is None else get(conn, number)


def resolve_number(conn: Connection, ref: str | int | None) -> int | None:
    """The number a version reference names (a number, alias or name; None means the
    ``active`` alias), without checking that a numbered version exists; None if nothing
    by that name."""
    ref = ACTIVE if ref is None else str(ref).strip()
    if "\x00" in ref:
        return None  # no name holds NUL (PostgreSQL text cannot)
    if ref.isascii() and ref.isdigit():
        return int(ref) if len(ref) < 10 else -1
    # plain SQL, one statement: every `registry get` and `lookup` resolves its version
    alias, named = driver_rows(conn, "SELECT (SELECT version_id FROM aliases WHERE name = ?), "
                                     "(SELECT id FROM versions WHERE name = ?)", (ref, ref))[0]
    return alias if alias is not None else named


def not_found(conn: Connection, ref: str | int | None) -> NotFoundError:
    """The error for a reference that names no version, with the names and aliases that
    look like it (a typo: ``sprng`` for ``spring``)."""
    import difflib

    ref = ACTIVE if ref is None else str(ref).strip()
    shown = ref if len(ref) <= 40 else ref[:40] + "..."
    if ref == ACTIVE:
        return NotFoundError("version", ACTIVE, "no version is active yet: run "
                             "`registry activate VERSION`, or name one with `version`")
    known = [n for n in conn.execute(select(versions.c.name).where(versions.c.name.is_not(None))
                                     .union(select(aliases.c.name))).scalars()]
    close = difflib.get_close_matches(ref, known, n=3, cutoff=0.6)
    if close:
        return NotFoundError("version", repr(shown),
                             f"did you mean {' or '.join(map(repr, close))}?")
    return NotFoundError("version", repr(shown), "see `registry versions`")


def resolve(conn: Connection, ref: str | int | None, *, lock: bool = False) -> Version:
    """A version by number, alias or name; None means the ``active`` alias."""
    number = resolve_number(conn, ref)
    found = None if number is None else get(conn, number, lock=lock)
    if found is None:
        raise not_found(conn, ref)
    return found


def all_versions(conn: Connection, *, counts: bool = True) -> list[tuple[Version, int]]:
    """Every version with its number of assigned items (0 without ``counts``: a scan of
    every ID), oldest first."""
    counts = dict(conn.execute(select(assignments.c.version_id, func.count())
                               .group_by(assignments.c.version_id)).all()) if counts else {}
    named: dict[int, list[str]] = {}
    for name, number in conn.execute(select(aliases.c.name, aliases.c.version_id)
                                     .order_by(aliases.c.name)):
        named.setdefault(number, []).append(name)
    out = []
    for row in conn.execute(select(versions).order_by(versions.c.id)):
        v = _version(row)
        v.aliases = named.get(v.number, [])
        out.append((v, counts.get(v.number, 0)))
    return out


def create(conn: Connection, *, name: str | None, params: dict, dim: int,
           embedding_model: str | None, parent: int | None, stats: dict,
           now: datetime) -> int:
    """Insert a new draft version and return its number (one more than any before)."""
    if conn.dialect.name == "postgresql":
        # serialise number allocation between concurrent trainers
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('registry.versions'))"))
    if name is not None:
        check_name(name)
        clash = by_name(conn, name)
        if clash is not None:
            raise StateError(f"{clash.label} already exists and is {clash.state}: its codebooks "
                             "and IDs never change; train under another `name`")
        if conn.execute(select(aliases.c.name).where(aliases.c.name == name)).first():
            raise InputError(f"{name!r} is an alias; pick another version name", param="name")
    # one more than any version has had: a deleted draft's number lives on in its events
    deleted = select(func.max(events.c.version_id)).where(events.c.action == "delete")
    number = max(conn.execute(select(func.max(versions.c.id))).scalar() or 0,
                 conn.execute(deleted).scalar() or 0) + 1
    conn.execute(insert(versions).values(
        id=number, name=name, state=State.DRAFT, params=params, dim=dim,
        embedding_model=embedding_model, parent_id=parent, stats=stats, created_at=now))
    return number


def set_state(conn: Connection, number: int, state: State, now: datetime) -> None:
    """Move a version to ``state``; leaving the draft state seals it (see :mod:`.seals`)."""
    before = conn.execute(select(versions.c.state).where(versions.c.id == number)).scalar()
    if before == State.DRAFT and state != State.DRAFT:
        from . import seals  # numpy: not for the read-only commands that import this module

        seals.seal(conn, number, now)
    values: dict = {"state": state}
    if state == State.FROZEN:
        values["frozen_at"] = now
    elif state == State.RETIRED:
        values["retired_at"] = now
    conn.execute(update(versions).where(versions.c.id == number).values(**values))


def delete_draft(conn: Connection, number: int) -> None:
    """Delete a draft, its codebooks and its occupancy bits; its IDs go first
    (:func:`.assignments.drop`). The caller holds its lock and checked that it is a draft
    that no version was trained from."""
    conn.execute(delete(codebooks).where(codebooks.c.version_id == number))
    conn.execute(delete(occupancy).where(occupancy.c.version_id == number))
    conn.execute(delete(versions).where(versions.c.id == number))


def deleted_number(conn: Connection, ref: str | int) -> int | None:
    """The number ``ref`` names if it is that of a deleted draft (its events remain)."""
    ref = str(ref).strip()
    if not (ref.isascii() and ref.isdigit() and len(ref) < 10):
        return None
    found = conn.execute(select(events.c.version_id).where(
        events.c.action == "delete", events.c.version_id == int(ref))).first()
    return None if found is None else int(ref)


def children(conn: Connection, number: int) -> list[int]:
    """The versions trained from version ``number``."""
    return list(conn.execute(select(versions.c.id).where(versions.c.parent_id == number)
                             .order_by(versions.c.id)).scalars())


# -- aliases and events ------------------------------------------------------------------------

def alias_target(conn: Connection, name: str) -> int | None:
    return conn.execute(select(aliases.c.version_id).where(aliases.c.name == name)).scalar()


def set_alias(conn: Connection, name: str, number: int, now: datetime) -> int | None:
    """Point alias ``name`` at version ``number``; return the version it pointed at before."""
    if conn.dialect.name == "postgresql":
        previous = conn.execute(select(aliases.c.version_id).where(aliases.c.name == name)
                                .with_for_update()).scalar()
    else:
        previous = alias_target(conn, name)
    if previous is None:
        conn.execute(insert(aliases).values(name=name, version_id=number, updated_at=now))
    else:
        conn.execute(update(aliases).where(aliases.c.name == name)
                     .values(version_id=number, updated_at=now))
    return previous


def log_event(conn: Connection, action: str, now: datetime, *, version: int | None = None,
              other: int | None = None, params: dict | None = None,
              reason: str | None = None, actor: str | None = None) -> None:
    """Append to the event log; events are never updated or deleted. ``actor``: who, where
    known (the API token's name for a change made through the service)."""
    conn.execute(insert(events).values(created_at=now, action=action, version_id=version,
                                       other_version_id=other, params=params, reason=reason,
                                       actor=actor))


@dataclass(frozen=True)
class Event:
    """One entry of the event log: what was done (``action``) to which version (and the
    other one it names, such as the version an alias moved from), when, with which
    parameters and why."""

    id: int
    at: datetime
    action: str
    version: int | None
    other: int | None
    params: dict | None
    reason: str | None
    actor: str | None = None

    def to_dict(self) -> dict:
        return {"id": self.id, "at": _iso(self.at), "action": self.action,
                "version": self.version, "other_version": self.other, "params": self.params,
                "reason": self.reason, "actor": self.actor}


MAX_EVENTS = 10_000


def history(conn: Connection, ref: str | int | None = None,
            limit: int = defaults.HISTORY_LIMIT) -> list[Event]:
    """Events, newest first; only those naming the version ``ref`` names (a number, name or
    alias, or the number of a deleted draft) when given."""
    if not 1 <= limit <= MAX_EVENTS:
        raise InputError(f"limit must be between 1 and {MAX_EVENTS}, got {limit}",
                         param="limit")
    q = select(events).order_by(events.c.id.desc()).limit(limit)
    if ref is not None:
        version = deleted_number(conn, ref)
        if version is None:
            version = resolve(conn, ref).number
        q = q.where((events.c.version_id == version) | (events.c.other_version_id == version))
    return [Event(r.id, r.created_at, r.action, r.version_id, r.other_version_id, r.params,
                  r.reason, r.actor) for r in conn.execute(q)]


def activated_from(conn: Connection, alias: str, version: int) -> int | None:
    """The version ``alias`` pointed at before the latest ``activate`` that moved it to
    ``version`` (rollbacks do not count: rolling back twice walks further back)."""
    q = (select(events.c.other_version_id, events.c.params)
         .where(events.c.action == "activate", events.c.version_id == version)
         .order_by(events.c.id.desc()))
    for other, params in conn.execute(q):
        if (params or {}).get("alias", ACTIVE) == alias:
            return other
    return None
