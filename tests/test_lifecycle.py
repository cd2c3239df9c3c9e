"""Freezing and activating versions, and the event log they write."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from registry import InputError, NotFoundError, StateError

from .conftest import dump


def _events(url):
    eng = create_engine(url)
    with eng.connect() as conn:
        rows = conn.execute(text(
            "SELECT action, version_id, other_version_id, reason FROM events ORDER BY id")).all()
    eng.dispose()
    return [tuple(r) for r in rows]


def test_freeze_then_activate_moves_the_alias_and_logs_events(reg, catalog, migrated_url):
    reg.add(*catalog)
    reg.train(codebook_size=[8, 4], name="one")
    reg.train(codebook_size=[8, 4], seed=1, name="two")
    with pytest.raises(StateError, match="version 1 .one. is draft; only a frozen"):
        reg.activate("one")
    assert reg.freeze("one", reason="ship it").changed
    assert not reg.freeze(1).changed  # freezing twice is harmless
    assert reg.activate(1).previous is None
    reg.freeze("two")
    change = reg.activate("two", reason="better")
    assert (change.changed, change.previous) == (True, 1)
    assert reg.version().number == 2
    assert reg.version("active").name == "two"
    assert [s.version.aliases for s in reg.versions()] == [[], ["active"]]
    assert not reg.activate(2).changed
    reg.activate(1, alias="staging")
    assert reg.version("staging").number == 1
    assert _events(migrated_url) == [
        ("train", 1, None, None), ("train", 2, None, None), ("freeze", 1, None, "ship it"),
        ("activate", 1, None, None), ("freeze", 2, None, None), ("activate", 2, 1, "better"),
        ("activate", 1, None, None)]
    v = reg.version(1)
    assert v.frozen_at is not None and v.frozen_at >= v.created_at


@pytest.mark.parametrize("call, error, message", [
    (lambda r: r.freeze(9), NotFoundError, "unknown version: '9'"),
    (lambda r: r.freeze("nope"), NotFoundError, "unknown version: 'nope'"),
    (lambda r: r.activate("nope"), NotFoundError, "unknown version"),
    (lambda r: r.activate(1, alias="v1"), InputError, "is a version name"),
    (lambda r: r.activate(1, alias="bad alias"), InputError, "must start with a letter"),
    (lambda r: r.freeze("x' OR 1=1 --"), NotFoundError, "unknown version"),
])
def test_lifecycle_errors_change_nothing(trained, migrated_url, call, error, message):
    reg, _ = trained
    before = dump(migrated_url)
    with pytest.raises(error, match=message):
        call(reg)
    assert dump(migrated_url) == before


def test_frozen_codebooks_cannot_be_rewritten_through_the_store(trained):
    from registry.store import codebooks, db

    reg, v = trained
    books = reg.codebooks(v.number)
    engine = db.make_engine(reg.url)
    try:
        with pytest.raises(StateError, match="frozen: its codebooks never change"), \
                db.transaction(engine, write=True) as conn:
            codebooks.write(conn, v.number, books)
    finally:
        engine.dispose()
