"""API tokens for ``registry serve``: created with a scope (read < write < admin), shown
once, kept as a sha256 digest, checked in constant time, revoked by name."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from .errors import InputError, NotFoundError, StateError
from .store import db, versions
from .store import tokens as store
from .store.db import Tx
from .store.tokens import Token

SCOPES = ("read", "write", "admin")
PREFIX = "reg_"


def digest(secret: str) -> str:
    """The sha256 (hex) a token's secret is kept as."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def allows(have: str, need: str) -> bool:
    """Whether a token of scope ``have`` may do what needs ``need`` (read < write < admin)."""
    return SCOPES.index(have) >= SCOPES.index(need)


def create(tx: Tx, name: str, scope: str) -> tuple[Token, str]:
    """A new token and its secret, which is returned here once and stored nowhere."""
    versions.check_name(name, "token name", param="name")
    if scope not in SCOPES:
        raise InputError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}",
                         param="scope")
    secret = PREFIX + secrets.token_urlsafe(32)
    with tx(write=True) as conn:
        if store.by_name(conn, name) is not None:
            raise StateError(f"a token named {name!r} exists already (names stay taken, "
                             "revoked ones too): pick another name")
        now = db.now()
        store.add(conn, name, scope, digest(secret), now)
        versions.log_event(conn, "token create", now, params={"name": name, "scope": scope})
        return store.by_name(conn, name), secret


def listing(tx: Tx) -> list[Token]:
    """Every token, revoked ones included, oldest first."""
    with tx(write=False) as conn:
        return store.listing(conn)


def revoke(tx: Tx, name: str) -> tuple[Token, bool]:
    """Revoke a token by name: it stops working (a server sees it within seconds). Also
    says whether it was live until now."""
    with tx(write=True) as conn:
        found = store.by_name(conn, name)
        if found is None:
            raise NotFoundError("token", repr(name), "see `registry token list`")
        live = found.revoked_at is None
        if live:
            now = db.now()
            store.revoke(conn, name, now)
            versions.log_event(conn, "token revoke", now, params={"name": name})
        return store.by_name(conn, name), live


def check(held: dict[str, Token], secret: str) -> Token | None:
    """The live token whose secret this is, among ``held`` (digest -> token), else None.
    Found by its sha256, which reveals nothing of the secret however long the lookup takes;
    the last comparison is constant-time all the same."""
    wanted = digest(secret)
    found = held.get(wanted)
    if found is not None and hmac.compare_digest(found.digest, wanted):
        return found
    return None
