"""API tokens in the database: a name, a scope and the sha256 of the secret."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from .schema import tokens


@dataclass
class Token:
    """A token as stored (its secret never is)."""

    name: str
    scope: str
    digest: str
    created_at: datetime
    revoked_at: datetime | None

    def to_dict(self) -> dict:
        return {"name": self.name, "scope": self.scope,
                "created_at": self.created_at.isoformat(),
                "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat()}


def _token(row) -> Token:
    return Token(row.name, row.scope, row.digest, row.created_at, row.revoked_at)


def add(conn: Connection, name: str, scope: str, digest: str, now: datetime) -> None:
    conn.execute(insert(tokens).values(name=name, scope=scope, digest=digest, created_at=now))


def by_name(conn: Connection, name: str) -> Token | None:
    row = conn.execute(select(tokens).where(tokens.c.name == name)).first()
    return None if row is None else _token(row)


def by_digest(conn: Connection, digest: str) -> Token | None:
    row = conn.execute(select(tokens).where(tokens.c.digest == digest)).first()
    return None if row is None else _token(row)


def listing(conn: Connection) -> list[Token]:
    return [_token(r) for r in conn.execute(select(tokens).order_by(tokens.c.name))]


def active(conn: Connection) -> list[Token]:
    """The tokens not revoked (what a server holds in memory)."""
    return [_token(r) for r in conn.execute(select(tokens)
                                            .where(tokens.c.revoked_at.is_(None)))]


def revoke(conn: Connection, name: str, now: datetime) -> None:
    conn.execute(update(tokens).where(tokens.c.name == name).values(revoked_at=now))
