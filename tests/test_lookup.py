"""Reading IDs: key -> ID, full ID -> item, prefix -> items (an index range scan)."""

from __future__ import annotations

import pytest

from registry import InputError, NotFoundError


def test_full_id_finds_its_item(trained):
    reg, _ = trained
    for rec in reg.get(["item00000", "item00123", "item00599"]):
        found = reg.lookup(rec.id)
        assert found.kind == "id"
        assert [r.key for r in found.records] == [rec.key]


def test_prefix_lists_exactly_the_items_under_it(trained):
    reg, _ = trained
    records = reg.get([f"item{i:05d}" for i in range(600)])
    first = records[0]
    for depth in (1, 2, 3):
        prefix = "-".join(map(str, first.codes[:depth]))
        expected = sorted((tuple(r.codes), r.disambiguation, r.key) for r in records
                          if r.codes[:depth] == first.codes[:depth])
        found = reg.lookup(prefix, limit=1000)
        assert found.kind == "prefix" and not found.more
        assert [(tuple(r.codes), r.disambiguation, r.key) for r in found.records] == expected
    top = "-".join(map(str, first.codes[:1]))
    limited = reg.lookup(top, limit=3)
    assert len(limited.records) == 3 and limited.more
    assert [r.key for r in limited.records] == [r.key for r in reg.lookup(top, limit=1000)
                                                .records[:3]]


def test_empty_prefix_is_not_an_error(trained):
    reg, _ = trained
    used = {tuple(r.codes[:2]) for r in reg.get([f"item{i:05d}" for i in range(600)])}
    free = next((a, b) for a in range(8) for b in range(4) if (a, b) not in used)
    assert reg.lookup(f"{free[0]}-{free[1]}").records == []


@pytest.mark.parametrize("query, error, message", [
    ("8", InputError, "code 8 at level 1"),
    ("1-2-3-4-5", InputError, "at most 4 numbers"),
    ("1-x", InputError, "malformed"),
    ("1%", InputError, "malformed"),
    ("7-3-3-999", NotFoundError, "unknown ID: 7-3-3-999"),
])
def test_bad_lookups(trained, query, error, message):
    reg, _ = trained
    with pytest.raises(error, match=message):
        reg.lookup(query)


def test_get_errors(trained):
    reg, _ = trained
    with pytest.raises(NotFoundError, match="unknown keys: 'a', 'b'"):
        reg.get(["item00001", "a", "b"])
    with pytest.raises(InputError, match="at least one key"):
        reg.get([])
    with pytest.raises(InputError, match="limit must be"):
        reg.lookup("1", limit=0)


def test_get_by_version_name_number_and_alias(trained):
    reg, _ = trained
    ids = {reg.get(["item00007"], v)[0].id for v in (None, 1, "1", "v1", "active")}
    assert len(ids) == 1
