"""Model output back to items: resolve in batches, in every input form, and snapshots that
answer without the database (both databases)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from registry import StateError
from registry.ids import format_tokens, parse_many

from .conftest import make_keys, make_vectors


def _tokens(record, spaced: bool = False) -> str:
    text = format_tokens(np.array([record.codes]), np.array([record.disambiguation]))[0]
    return text.replace("><", "> <") if spaced else text


@pytest.fixture
def three(trained):
    """The trained registry with one item removed: a found, a removed and a live record."""
    reg, v = trained
    found, gone = reg.get(["item00001", "item00002"])
    reg.remove(["item00002"])
    return reg, v, found, gone


def _forms(codes: list[int]) -> list[str]:
    """An ID or prefix (codes, then the number, if any) canonical, in tokens, tokens apart."""
    tokens = "".join(f"<{'abcd'[i]}_{c}>" for i, c in enumerate(codes))
    return ["-".join(map(str, codes)), tokens, tokens.replace("><", "> <")]


def test_every_status_in_every_form_in_input_order(three, run):
    reg, v, found, gone = three
    prefix = found.codes[:2]
    under = reg.lookup("-".join(map(str, prefix)), count=True).total
    # well formed, within the version's limit, but no item holds it (the space is full)
    statuses = {
        "found": [*found.codes, found.disambiguation],
        "removed": [*gone.codes, gone.disambiguation],
        "prefix": prefix,
        "unknown": [*found.codes, 999],
        "malformed": [9, 0],  # code 9 at a level of 8 codes
    }
    cases = [(text, status) for status, codes in statuses.items() for text in _forms(codes)]
    cases += [("", "malformed"), ("1-2-3-4-5", "malformed"), ("x", "malformed"),
              ("<b_1>", "malformed"), ("<a_1><c_2>", "malformed"),
              (f"{found.id.rsplit('-', 1)[0]}-{v.max_disambiguation + 1}", "malformed")]
    cases = cases[::-1]  # the order given is the order answered
    rows = reg.resolve([c[0] for c in cases]).rows()
    assert [row["input"] for row in rows] == [c[0] for c in cases]
    assert [row["status"] for row in rows] == [c[1] for c in cases]
    for row in rows:
        key = {"found": "item00001", "removed": "item00002"}.get(row["status"])
        assert row["key"] == key
        assert row["id"] == {"found": found.id, "removed": gone.id}.get(row["status"])
        assert row["count"] == {"found": 1, "removed": 1, "prefix": under}.get(row["status"], 0)
    assert under > 1
    # more inputs than the partial read takes: the whole snapshot answers alike
    many = [c[0] for c in cases] * 30
    assert [row["status"] for row in reg.resolve(many).rows()] == [c[1] for c in cases] * 30
    # the command: tab-separated rows, or one JSON object per line; bad rows do not fail it
    text = run("resolve", *[c[0] for c in cases if c[0]])
    assert text.exit_code == 0
    assert [line.split("\t")[1] for line in text.stdout.splitlines()] == \
        [c[1] for c in cases if c[0]]
    listed = run("resolve", found.id, "9-0", "--json").stdout.splitlines()
    assert [json.loads(line)["status"] for line in listed] == ["found", "malformed"]


def test_resolve_reads_a_file_or_standard_input(three, run, tmp_path):
    reg, _, found, gone = three
    path = tmp_path / "beams.txt"
    path.write_text(f"{found.id}\n{_tokens(gone, spaced=True)}\nnonsense\n")
    from_file = run("resolve", "--file", str(path)).stdout.splitlines()
    assert [line.split("\t")[:3] for line in from_file] == [
        [found.id, "found", "item00001"], [_tokens(gone, spaced=True), "removed", "item00002"],
        ["nonsense", "malformed", "-"]]
    from click.testing import CliRunner

    from registry.cli import cli

    piped = CliRunner().invoke(cli, ["--db", reg.url, "resolve", "--file", "-"],
                               input=path.read_text())
    assert piped.exit_code == 0 and piped.stdout.splitlines() == from_file
    missing = run("resolve", "--file", str(tmp_path / "none.txt"))
    assert missing.exit_code == 1 and "cannot read" in missing.stderr
    assert run("resolve").exit_code == 1  # nothing to resolve


@pytest.mark.parametrize("residual", ["plain", "normalized"])
def test_nearest_issued_ids_of_an_unknown_one(reg, residual):
    reg.add(make_keys(300), make_vectors(300))
    v = reg.train(codebook_size=[8, 8, 4], residual=residual, name="v").version
    reg.freeze("v")
    snap = reg.snapshot("v")
    taken = {tuple(c) for c in v.space.unpack(snap.codes).tolist()}
    free = next((a, b, c) for a in range(8) for b in range(8) for c in range(4)
                if (a, b, c) not in taken and any(t[:2] == (a, b) for t in taken))
    wanted = "-".join(map(str, free)) + "-0"
    r = reg.resolve([wanted, snap.ids([0])[0]], "v", nearest=3)
    near = r.rows()[0]["nearest"]
    assert r.rows()[0]["status"] == "unknown" and len(near) == 3
    assert r.rows()[1]["nearest"] == []  # only for unknown IDs
    if residual == "plain":
        # by the distance between decoded codes, against every issued ID
        from registry import engine

        books = reg.codebooks("v")
        target = engine.decode(np.array([free]), books)[0]
        every = engine.decode(v.space.unpack(snap.codes), books)
        order = np.argsort(np.square(every - target).sum(1), kind="stable")[:3]
        assert [n["id"] for n in near] == snap.ids(order)
    else:
        # by the longest shared prefix: here the first two codes
        assert all(n["id"].startswith(f"{free[0]}-{free[1]}-") for n in near)
    with pytest.raises(Exception, match="nearest must be between"):
        reg.resolve([wanted], "v", nearest=-1)


def test_a_snapshot_answers_as_the_database_does(three):
    reg, v, found, _gone = three
    snap = reg.snapshot()
    assert len(snap) == 600 and snap.version.number == v.number
    keys = make_keys(600)
    records = {r.key: r for r in reg.get(keys)}
    r = snap.resolve([records[k].id for k in keys])
    assert [r.keys[i] for i in range(600)] == keys
    assert r.statuses.count("removed") == 1
    for prefix in ("1", "1-2", "3-0-1", "7"):
        lo, hi = snap.range([int(c) for c in prefix.split("-")])
        listed = reg.lookup(prefix, limit=1000)
        assert snap.count([int(c) for c in prefix.split("-")]) == hi - lo == len(listed.records)
        assert [snap.keys[i] for i in range(lo, hi)] == [x.key for x in listed.records]
    # the codes that follow a prefix are those of the issued IDs under it
    tuples = [(*tuple(x.codes), x.disambiguation) for x in records.values()]
    for prefix in [(), (1,), (1, 2), tuple(found.codes)]:
        expected = sorted({t[len(prefix)] for t in tuples if t[:len(prefix)] == prefix})
        assert snap.allowed_next(list(prefix)) == expected
    assert snap.allowed_next([*found.codes, found.disambiguation]) == []


def test_is_current_turns_false_after_an_assign_or_an_alias_move(trained):
    reg, _v = trained
    snap = reg.snapshot()
    assert snap.is_current()
    reg.add(make_keys(5, start=600), make_vectors(5, seed=4))
    reg.assign()
    assert not snap.is_current()  # more IDs than it holds
    again = reg.snapshot()
    assert again.is_current() and len(again) == 605
    reg.train(codebook_size=[8, 4, 4], name="other", max_disambiguation=1000)
    reg.freeze("other")
    pinned = reg.snapshot(1)
    reg.activate("other")
    assert not again.is_current()  # taken through `active`, which moved
    assert pinned.is_current()  # taken by number: still that version's
    reg.train(codebook_size=[8, 4, 4], name="draft")
    with pytest.raises(StateError, match="draft"):
        reg.snapshot("draft")


def test_parse_many_agrees_with_parse_id():
    """The vectorised parser against the one-at-a-time one, on generated inputs of every
    form, some broken."""
    from registry.errors import InputError
    from registry.ids import CodeSpace, parse_id

    space = CodeSpace((8, 4, 4))

    def one(text: str):
        try:
            parsed = parse_id(text, space)  # takes the token form too
        except InputError:
            return None
        return parsed.codes, parsed.disambiguation

    rng = np.random.default_rng(7)
    for _ in range(200):
        batch = []
        for _ in range(int(rng.integers(1, 6))):
            nums = rng.integers(0, 9, int(rng.integers(1, 6))).tolist()
            form = int(rng.integers(0, 3))
            text = "-".join(map(str, nums)) if form == 0 else (" " if form == 2 else "").join(
                f"<{'abcdefgh'[j]}_{x}>" for j, x in enumerate(nums))
            if rng.random() < 0.25:
                at = int(rng.integers(0, len(text) + 1))
                text = text[:at] + str(rng.choice(list("-<>_a1 x\n"))) + text[at:]
            batch.append(text)
        for group in (batch, [batch[0]] * 3):
            p = parse_many(group, space)
            for i, text in enumerate(group):
                got = None if not p.ok[i] else (
                    tuple(p.codes[i][:p.depth[i]].tolist()),
                    None if p.disamb[i] < 0 else int(p.disamb[i]))
                assert got == one(text), (group, text)


def test_edges_found_in_review(reg, run):
    """Inputs and states that once crashed or answered wrongly."""
    reg.add(make_keys(40), make_vectors(40))
    reg.train(codebook_size=[16, 16, 16], name="sparse", max_disambiguation=3)
    # a draft is refused alike, a few inputs or many
    for inputs in (["1"], ["1"] * 300):
        with pytest.raises(StateError, match="draft"):
            reg.resolve(inputs, "sparse")
    reg.freeze("sparse")
    taken = set(reg.snapshot("sparse").ids(np.arange(40)))
    empty = next(f"{a}-{b}-{c}-0" for a in range(16) for b in range(16) for c in range(16)
                 if f"{a}-{b}-{c}-0" not in taken and f"{a}-{b}-{c}-1" not in taken)
    # an ID in a part of the code space no item holds: unknown, not an error
    assert reg.resolve([empty], "sparse").statuses == ["unknown"]
    assert reg.resolve([empty, "<a_0><b_0><c_0><d_0>"], "sparse").statuses[0] == "unknown"
    # blank input, digits out of place in a token, undecodable text: malformed
    for inputs in ([""], [" "], ["\t"], ["<a1_2><b_3>"], ["<1a_2>"], ["\udcff"],
                   ["\udcff", "1-2"]):
        assert reg.resolve(inputs, "sparse").statuses[0] == "malformed", inputs
    # Unicode white space around an input is stripped, as parse_id strips it
    assert reg.resolve(["\u00a01-2"], "sparse").statuses == \
        reg.resolve(["1-2"], "sparse").statuses != ["malformed"]
    snap = reg.snapshot("sparse")
    for bad in ([16], [1, 99], [-1], [1, 2, 3, 0, 0]):
        with pytest.raises(ValueError):
            snap.count(bad)
        with pytest.raises(ValueError):
            snap.allowed_next(bad)
    # a removal makes a snapshot stale: it holds each item's state
    first = snap.keys[0]
    assert snap.is_current()
    reg.remove([first])
    assert not snap.is_current()
    assert reg.snapshot("sparse").resolve([snap.ids([0])[0]]).statuses == ["removed"]
    # '-' alone reads standard input; an input's own tab does not split its row
    from click.testing import CliRunner

    from registry.cli import cli

    piped = CliRunner().invoke(cli, ["--db", reg.url, "resolve", "-", "-v", "sparse"],
                               input=f"{snap.ids([1])[0]}\n<a_1>\t<b_2>\n")
    lines = piped.stdout.splitlines()
    assert piped.exit_code == 0 and lines[0].split("\t")[1] == "found"
    assert lines[1].startswith("<a_1>\\t<b_2>\t") and len(lines[1].split("\t")) == 5


def test_nearest_on_a_normalized_version_starts_at_the_ids_own_tuple(reg):
    reg.add(make_keys(300), make_vectors(300))
    reg.train(codebook_size=[4, 4, 4], residual="normalized", collisions="suffix",
              name="n", max_disambiguation=200)
    reg.freeze("n")
    snap = reg.snapshot("n")
    crowded = snap.ids([0])[0].rsplit("-", 1)[0]
    wanted = f"{crowded}-199"  # a number that tuple never reached
    near = reg.resolve([wanted], "n", nearest=2).rows()[0]["nearest"]
    assert [n["id"].rsplit("-", 1)[0] for n in near] == [crowded, crowded]
    assert all(n["removed"] is False for n in near)
