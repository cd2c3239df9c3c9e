"""A version's life after training: freeze (publish), activate (move an alias), retire,
delete (a mistaken draft) and roll back. Each moves states and aliases only, in one
transaction, and writes an event; a rollback gives the version rolled back to its missing
IDs first."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from . import defaults
from .errors import InputError, NotFoundError, StateError
from .hooks import pause_point
from .store import db, versions
from .store.db import Tx
from .store.versions import State, Version


@dataclass
class StateChange:
    """What freeze, activate, retire or delete did to ``version``: whether anything
    ``changed``, and for activate the ``alias`` moved and the version it pointed at before."""

    version: Version
    action: str
    changed: bool
    previous: int | None = None
    alias: str | None = None

    def to_dict(self) -> dict:
        return {"action": self.action, "changed": self.changed, "previous": self.previous,
                "alias": self.alias, "version": self.version.to_dict()}


@dataclass
class RollbackResult:
    """The alias moved back to ``version`` from ``previous``, with the IDs given in it first;
    ``full``: items left without one (see :class:`registry.assigning.AssignResult`)."""

    version: Version
    previous: int
    alias: str
    assigned: int
    full: int = 0

    def to_dict(self) -> dict:
        return {"alias": self.alias, "version": self.version.to_dict(),
                "previous": self.previous, "assigned": self.assigned, "full": self.full}

    def problem(self) -> str | None:
        """One line on the items left without an ID, or None."""
        from .assigning import left_out

        return left_out(self.version, self.full)


def freeze(tx: Tx, ref: str | int, reason: str | None) -> StateChange:
    with tx(write=True) as conn:
        v = versions.resolve(conn, ref, lock=True)
        if v.state == State.FROZEN:
            return StateChange(v, "freeze", changed=False)
        if v.state != State.DRAFT:
            raise StateError(f"{v.label} is {v.state}; only a draft can be frozen")
        now = db.now()
        versions.set_state(conn, v.number, State.FROZEN, now)
        versions.log_event(conn, "freeze", now, version=v.number, reason=reason)
        return StateChange(versions.get(conn, v.number), "freeze", changed=True)


def activate(tx: Tx, ref: str | int, alias: str, reason: str | None,
             actor: str | None = None) -> StateChange:
    versions.check_name(alias, "alias", param="alias")
    with tx(write=True) as conn:
        v = versions.resolve(conn, ref, lock=True)
        if v.state == State.DRAFT:
            raise StateError(f"{v.label} is draft; only a frozen version can be activated "
                             f"(run `registry freeze {v.number}` first)")
        if v.state != State.FROZEN:
            raise StateError(f"{v.label} is {v.state} and cannot be activated again; "
                             "activate a frozen version (see `registry versions`) or train a "
                             "new one")
        if versions.by_name(conn, alias) is not None:
            raise InputError(f"{alias!r} is a version name; pick another alias", param="alias")
        now = db.now()
        previous = versions.set_alias(conn, alias, v.number, now)
        if previous != v.number:
            versions.log_event(conn, "activate", now, version=v.number, other=previous,
                               params={"alias": alias}, reason=reason, actor=actor)
        return StateChange(versions.get(conn, v.number), "activate",
                           changed=previous != v.number, previous=previous, alias=alias)


def activate_filled(tx: Tx, ref: str | int, alias: str, reason: str | None,
                    actor: str | None = None) -> StateChange:
    """:func:`activate`, with the items registered since the version was trained given
    their IDs in it first and whatever arrived meanwhile after (as :func:`rollback` does):
    the alias's readers find every item. What the service's activate does."""
    from . import assigning

    with tx(write=False) as conn:
        v = versions.resolve(conn, ref)
    if v.state == State.FROZEN:  # anything else: activate says what is wrong
        assigning.assign(tx, v.number, defaults.ASSIGN_BATCH)
    change = activate(tx, ref, alias, reason, actor)
    assigning.assign(tx, change.version.number, defaults.ASSIGN_BATCH)
    return change


def retire(tx: Tx, ref: str | int, reason: str | None) -> StateChange:
    with tx(write=True) as conn:
        v = versions.resolve(conn, ref, lock=True)
        if v.state == State.RETIRED:
            return StateChange(v, "retire", changed=False)
        if v.aliases:
            raise StateError(f"{v.label} is {', '.join(v.aliases)}: point "
                             f"{'it' if len(v.aliases) == 1 else 'them'} at another version "
                             "first")
        now = db.now()
        versions.set_state(conn, v.number, State.RETIRED, now)
        versions.log_event(conn, "retire", now, version=v.number, reason=reason)
        return StateChange(versions.get(conn, v.number), "retire", changed=True)


def delete(tx: Tx, ref: str | int, reason: str | None) -> StateChange:
    from .store import assignments  # numpy: not for the read-only commands

    with tx(write=True) as conn:
        v = versions.resolve(conn, ref, lock=True)
        if v.state == State.FROZEN:
            raise StateError(f"{v.label} is frozen: its IDs were published, and a frozen or "
                             "retired version is never deleted (retire it instead)")
        if v.state == State.RETIRED:
            raise StateError(f"{v.label} is retired: its IDs were published, and it is never "
                             "deleted")
        children = [versions.get(conn, n) for n in versions.children(conn, v.number)]
        published = [c for c in children if c.state != State.DRAFT]
        if published:
            raise StateError(f"{published[0].label} was trained from {v.label} and is "
                             f"{published[0].state}: a published version keeps its parent "
                             "(retire this draft instead)")
        if children:
            raise StateError(f"{children[0].label} was trained from {v.label}: delete that "
                             "draft first")
        assignments.drop(conn, v.number)
        versions.delete_draft(conn, v.number)
        versions.log_event(conn, "delete", db.now(), version=v.number,
                           params={"name": v.name} if v.name else None, reason=reason)
    return StateChange(v, "delete", changed=True)


def rollback(tx: Tx, to: str | int | None, alias: str, reason: str | None,
             actor: str | None = None) -> RollbackResult:
    """Give the version rolled back to its missing IDs (batch by batch), then move the alias
    in a transaction of its own, then assign what arrived meanwhile: killed at any point, the
    alias's readers see a version whose items all have IDs (as far as its limit allows)."""
    from . import assigning

    with tx(write=False) as conn:
        current, target = _targets(conn, alias, to)
    first = assigning.assign(tx, target.number, defaults.ASSIGN_BATCH)
    pause_point("rollback-assigned")
    with tx(write=True) as conn:
        now_at, target = _targets(conn, alias, to, lock=True)
        if now_at.number != current.number:
            raise StateError(f"{alias} moved to {now_at.label} while rolling back; nothing "
                             "was changed but the new IDs: run the rollback again")
        now = db.now()
        versions.set_alias(conn, alias, target.number, now)
        versions.log_event(conn, "rollback", now, version=target.number, other=current.number,
                           params={"alias": alias}, reason=reason, actor=actor)
    then = assigning.assign(tx, target.number, defaults.ASSIGN_BATCH)  # usually none
    with tx(write=False) as conn:
        moved_to = versions.get(conn, target.number)
    return RollbackResult(moved_to, current.number, alias, first.assigned + then.assigned,
                          then.full)


def _targets(conn: Connection, alias: str, to: str | int | None, *,
             lock: bool = False) -> tuple[Version, Version]:
    """(the version ``alias`` points at, the one a rollback moves it to), checked."""
    number = versions.alias_target(conn, alias)
    if number is None:
        raise NotFoundError("alias", alias, "nothing to roll back")
    current = versions.get(conn, number)
    if to is None:
        previous = versions.activated_from(conn, alias, number)
        if previous is None:
            raise StateError(f"{alias} has pointed at {current.label} since it was first set: "
                             "there is nothing to roll back to (name a version with `to`)")
        target = versions.get(conn, previous, lock=lock)
    else:
        target = versions.resolve(conn, to, lock=lock)
    if target.number == current.number:
        raise StateError(f"{alias} already points at {target.label}")
    if target.state != State.FROZEN:
        raise StateError(f"{target.label} is {target.state}; only a frozen version can be "
                         "rolled back to")
    return current, target
