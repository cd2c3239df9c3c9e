"""API tokens for `registry serve`: created with a scope, shown once, kept as a digest,
revoked by name (both databases)."""

from __future__ import annotations

import json

import pytest

from registry import NotFoundError, StateError, tokens

from .conftest import dump


def test_a_token_is_shown_once_and_kept_as_a_digest(reg, migrated_url):
    made, secret = reg.create_token("pipeline", "write")
    assert secret.startswith("reg_") and len(secret) > 40
    assert (made.name, made.scope, made.revoked_at) == ("pipeline", "write", None)
    stored = json.dumps(dump(migrated_url))
    assert secret not in stored and tokens.digest(secret) in stored
    held = {t.digest: t for t in reg.tokens()}
    assert tokens.check(held, secret).name == "pipeline"
    assert tokens.check(held, secret + "x") is None
    assert tokens.check(held, "") is None
    _other, second = reg.create_token("reader", "read")
    assert second != secret
    assert [t.name for t in reg.tokens()] == ["pipeline", "reader"]


def test_scopes_are_ordered():
    assert tokens.allows("admin", "write") and tokens.allows("write", "write")
    assert tokens.allows("write", "read") and not tokens.allows("read", "write")
    assert not tokens.allows("write", "admin")


def test_revoked_tokens_stop_and_keep_their_names(reg, migrated_url):
    _, secret = reg.create_token("old", "admin")
    revoked, changed = reg.revoke_token("old")
    assert revoked.revoked_at is not None and changed
    again, changed = reg.revoke_token("old")
    assert again.revoked_at == revoked.revoked_at and not changed  # already: unchanged
    from registry.store import tokens as store

    with reg._tx(write=False) as conn:
        held = {t.digest: t for t in store.active(conn)}
    assert tokens.check(held, secret) is None
    before = dump(migrated_url)
    with pytest.raises(StateError, match="names stay taken"):
        reg.create_token("old", "read")
    with pytest.raises(NotFoundError, match="unknown token"):
        reg.revoke_token("nope")
    with pytest.raises(Exception, match="scope must be one of"):
        reg.create_token("new", "root")
    assert dump(migrated_url) == before
    assert [e.action for e in reg.history(limit=2)] == ["token revoke", "token create"]


def test_token_commands(run):
    made = json.loads(run("token", "create", "ci", "--scope", "read", "--json").stdout)
    assert made["scope"] == "read" and made["token"].startswith("reg_")
    made_text = run("token", "create", "ops", "--scope", "admin")
    assert made_text.stdout.startswith("reg_") and len(made_text.stdout.split()) == 1
    assert "shown once" in made_text.stderr  # stdout is the secret alone, for $(...)
    listed = run("token", "list").stdout
    assert "ci" in listed and "ops" in listed and made["token"] not in listed
    assert run("token", "revoke", "ci").stdout == "revoked token 'ci'\n"
    assert "revoked already" in run("token", "revoke", "ci").stdout
    gone = json.loads(run("token", "list", "--json").stdout)
    assert [t["revoked_at"] is not None for t in gone] == [True, False]
    bad = run("token", "create", "x", "--scope", "root", "--json")
    assert bad.exit_code == 2 and json.loads(bad.stderr)["error"] == "usage"
