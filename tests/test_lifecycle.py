"""Freezing and activating versions, and the event log they write."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine, text

from registry import InputError, NotFoundError, StateError

from .conftest import dump, partitions


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


@pytest.fixture
def two_active(reg, catalog):
    """Versions 1 and 2 trained on the catalog, both frozen; 1 then 2 activated."""
    keys, vectors = catalog
    reg.add(keys[:500], vectors[:500])
    reg.train(codebook_size=[8, 4], name="one")
    reg.freeze(1)
    reg.activate(1)
    reg.add(keys[500:550], vectors[500:550])
    reg.train(codebook_size=[8, 4], seed=1, name="two")
    reg.freeze(2)
    reg.activate(2)
    return reg, keys, vectors


def test_rollback_then_assign_gives_ids_in_the_old_version_and_loses_nothing(
        two_active, migrated_url):
    reg, keys, vectors = two_active
    in_two = {r.key: r.id for r in reg.get(keys[:550], 2)}
    in_one = {r.key: r.id for r in reg.get(keys[:500], 1)}
    reg.add(keys[550:], vectors[550:])  # 50 added after both versions were trained
    r = reg.rollback(reason="v2 recommends badly")
    assert (r.version.number, r.previous, r.assigned) == (1, 2, 100)
    assert reg.version().number == 1
    # version 1 now also holds the 50 items of version 2's time and the 50 newest
    now_one = {x.key: x.id for x in reg.get(keys, 1)}
    assert len(now_one) == 600 and len(set(now_one.values())) == 600
    assert all(now_one[k] == v for k, v in in_one.items())  # nothing moved
    assert {x.key: x.id for x in reg.get(keys[:550], 2)} == in_two  # nothing lost
    # the IDs are given first, the alias moves last
    assert [(e.action, e.version, e.other, e.reason) for e in reg.history(limit=3)] == \
        [("rollback", 1, 2, "v2 recommends badly"), ("assign", 1, None, None),
         ("activate", 2, 1, None)]
    # rolling back again walks further back: version 1 was the first, so there is nothing
    with pytest.raises(StateError, match="nothing to roll back to"):
        reg.rollback()
    # rolling forward is another activate
    assert reg.activate(2).previous == 1


def test_rollback_to_a_named_version_and_refusals(two_active, migrated_url):
    reg, keys, vectors = two_active
    reg.add(keys[:550], vectors[:550])  # unchanged: nothing new
    reg.train(codebook_size=[8, 4], seed=2, name="three")
    before = dump(migrated_url)
    with pytest.raises(StateError, match="version 3 .three. is draft"):
        reg.rollback(to="three")
    with pytest.raises(StateError, match="already points at version 2"):
        reg.rollback(to=2)
    with pytest.raises(NotFoundError, match="unknown alias: staging"):
        reg.rollback(alias="staging")
    assert dump(migrated_url) == before
    assert reg.rollback(to="one").version.number == 1


def test_retire_keeps_a_version_readable_and_closed(two_active, migrated_url):
    reg, keys, _ = two_active
    with pytest.raises(StateError, match="version 2 .two. is active"):
        reg.retire(2)
    ids = {r.key: r.id for r in reg.get(keys[:500], 1)}
    change = reg.retire(1, reason="superseded")
    assert change.changed and change.version.state == "retired"
    assert change.version.retired_at is not None
    assert not reg.retire(1).changed
    assert {r.key: r.id for r in reg.get(keys[:500], 1)} == ids  # still readable
    assert reg.lookup(ids["item00000"], 1).records[0].key == "item00000"
    before = dump(migrated_url)
    with pytest.raises(StateError, match="retired and cannot be activated again") as refused:
        reg.activate(1)
    # the hint leads somewhere that works: freezing a retired version is refused too
    assert "freeze" not in str(refused.value) and "registry versions" in str(refused.value)
    with pytest.raises(StateError, match="retired; no new IDs"):
        reg.assign(1)
    with pytest.raises(StateError, match="retired; only a frozen"):
        reg.rollback(to=1)
    with pytest.raises(StateError, match="retired; only a draft can be frozen"):
        reg.freeze(1)
    assert dump(migrated_url) == before
    assert reg.history(1, limit=1)[0].reason == "superseded"


def test_history_command(two_active, run):
    result = run("history", "--limit", "3")
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["when", "action", "version", "other"]
    assert [ln.split()[2] for ln in lines[1:]] == ["activate", "freeze", "train"]
    events = json.loads(run("history", "--version", "one", "--json").output)
    assert {e["action"] for e in events} == {"train", "freeze", "activate"}
    assert run("rollback", "--json").exit_code == 0
    assert "active -> version 2" in run("rollback", "--to", "2").output


def test_a_mistaken_draft_can_be_deleted_and_its_number_is_never_reused(trained, run,
                                                                         migrated_url):
    reg, _ = trained
    before = dump(migrated_url)
    draft = reg.train(codebook_size=[4, 4], name="oops").version
    assert draft.number == 2
    out = json.loads(run("delete", "oops", "--reason", "wrong sizes", "--json").output)
    assert (out["action"], out["changed"], out["version"]["version"]) == ("delete", True, 2)
    after = dump(migrated_url)
    assert {t: rows for t, rows in after.items() if t != "events"} == \
        {t: rows for t, rows in before.items() if t != "events"}  # its rows are all gone
    assert "assignments_v2" not in partitions(migrated_url)  # PostgreSQL: dropped
    assert [s.version.number for s in reg.versions()] == [1]
    events = reg.history(limit=2)
    assert [(e.action, e.version, e.reason) for e in events] == [
        ("delete", 2, "wrong sizes"), ("train", 2, None)]
    # the number stays taken: the next version is 3, and 2 is unknown from now on
    assert reg.train(codebook_size=[4, 4], name="oops").version.number == 3
    with pytest.raises(NotFoundError):
        reg.version(2)
    assert [e.action for e in reg.history(2)] == ["delete", "train"]  # its events remain
    # published versions are never deleted; nor is a draft another was trained from, and
    # each refusal's hint works
    reg.train(from_version=3, name="child")
    for ref, message in ((1, "version 1 .v1. is frozen: its IDs were published"),
                         (3, "version 4 .child. was trained from version 3 .oops.: delete "
                             "that draft first")):
        with pytest.raises(StateError, match=message):
            reg.delete(ref)
    text = run("delete", "1")
    assert text.exit_code == 1 and "retire it instead" in text.stderr
    reg.freeze("child")
    with pytest.raises(StateError, match="version 4 .child. was trained from version 3 .oops. "
                                         "and is frozen: .* .retire this draft instead."):
        reg.delete(3)
    assert reg.retire(3).changed
    reg.train(codebook_size=[4, 4], name="spare")
    assert reg.delete("spare").changed
    assert reg.verify().ok
