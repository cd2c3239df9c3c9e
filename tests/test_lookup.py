"""Reading IDs: key -> ID, full ID -> item, prefix -> items (an index range scan)."""

from __future__ import annotations

import json

import pytest

from registry import InputError, NotFoundError

from .conftest import make_keys, make_vectors


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
    # with suffix collisions, crowded tuples leave others empty
    reg.train(codebook_size=[8, 4, 4], collisions="suffix", name="suffixed")
    reg.freeze("suffixed")
    reg.activate("suffixed")
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


def test_get_gives_what_it_finds_and_names_the_rest(trained, run):
    reg, _ = trained
    reg.add(["late"], make_vectors(1, seed=8))
    r = reg.get(["item00001", "a", "late", "item00002", "b"])
    assert [x.key for x in r] == ["item00001", "item00002"] and len(r) == 2
    assert (r.unknown, r.unassigned, r.complete) == (["a", "b"], ["late"], False)
    assert r.problem() == ("unknown keys: 'a', 'b'; no ID in version 1 yet for 'late' (run "
                           "`registry assign --version 1`)")
    assert reg.get(["item00001"]).complete
    # the command prints what it found, names the rest on stderr and exits 1
    done = run("get", "item00001", "a", "item00002")
    assert done.exit_code == 1
    assert done.stdout.splitlines() == [f"item0000{i}\t{x.id}" for i, x in
                                        zip((1, 2), reg.get(["item00001", "item00002"]),
                                            strict=True)]
    assert done.stderr == "Error: unknown key: 'a'\n"
    out = run("get", "item00001", "a", "--json")
    assert out.exit_code == 1
    body = json.loads(out.stdout)
    assert [x["key"] for x in body["items"]] == ["item00001"] and body["unknown"] == ["a"]
    assert json.loads(out.stderr) == {"error": "not_found", "detail": "unknown key: 'a'"}


def test_get_errors(trained):
    reg, _ = trained
    with pytest.raises(InputError, match="at least one key"):
        reg.get([])
    with pytest.raises(InputError, match="limit must be"):
        reg.lookup("1", limit=0)


def test_get_by_version_name_number_and_alias(trained):
    reg, _ = trained
    ids = {reg.get(["item00007"], v)[0].id for v in (None, 1, "1", "v1", "active")}
    assert len(ids) == 1


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl.gz"])
def test_export_every_id_in_every_format(trained, tmp_path, suffix):
    import gzip
    import json

    import pyarrow.parquet as pq

    reg, _ = trained
    reg.remove(["item00005"])
    path = tmp_path / f"ids{suffix}"
    result = reg.export(None, path)
    assert (result.version, result.rows) == (1, 600)
    if suffix == ".parquet":
        rows = pq.read_table(path).to_pylist()
    elif suffix == ".csv":
        import csv

        with path.open() as f:
            rows = list(csv.DictReader(f))
    else:
        with gzip.open(path, "rt") as f:
            rows = [json.loads(line) for line in f]
    assert len(rows) == 600
    by_key = {r["key"]: r for r in rows}
    for rec in reg.get(["item00000", "item00005", "item00599"]):
        row = by_key[rec.key]
        assert row["id"] == rec.id
        assert [int(row[f"level_{i}"]) for i in (1, 2, 3)] == rec.codes
        assert int(row["disambiguation"]) == rec.disambiguation
    assert str(by_key["item00005"]["removed"]) in ("True", "true", "1")


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_export_in_parts_writes_what_one_part_does(trained, tmp_path, suffix, monkeypatch):
    """A version read and written 7 IDs at a time: the same rows, in ID order, and the same
    provenance, as in one part."""
    import json

    import pyarrow.parquet as pq

    from registry import export

    reg, _ = trained
    reg.remove(["item00005"])
    whole, parts = tmp_path / f"whole{suffix}", tmp_path / f"parts{suffix}"
    reg.export(None, whole, style="tokens")
    monkeypatch.setattr(export, "PART_ROWS", 7)
    assert reg.export(None, parts, style="tokens").rows == 600
    if suffix == ".parquet":
        a, b = pq.read_table(whole), pq.read_table(parts)
        assert pq.ParquetFile(parts).metadata.num_row_groups == 86  # 600 rows, 7 a group
        assert b.schema.metadata == a.schema.metadata
        assert json.loads(b.schema.metadata[b"registry"])["rows"] == 600
        a, b = a.to_pylist(), b.to_pylist()
    else:
        a, b = whole.read_text(), parts.read_text()
        assert (tmp_path / f"parts{suffix}.json").read_text() == \
            (tmp_path / f"whole{suffix}.json").read_text()
        a, b = a.splitlines(), b.splitlines()
        assert a[0].startswith("key,id,tokens,level_1")
    assert a == b and len(a) == 600 + (suffix == ".csv")
    ids = [r["id"] if suffix == ".parquet" else r.split(",")[1] for r in b[suffix == ".csv":]]
    codes = [tuple(map(int, i.split("-"))) for i in ids]
    assert codes == sorted(codes)  # ID order, across the parts


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_export_failing_part_way_leaves_the_file_before(trained, tmp_path, suffix,
                                                        monkeypatch):
    from registry import export
    from registry.errors import InputError

    reg, _ = trained
    (tmp_path / "out").mkdir()
    path = tmp_path / "out" / f"ids{suffix}"
    path.write_text("an earlier export")
    real, calls = export._columns, []

    def failing(*args):
        calls.append(1)
        if len(calls) == 3:
            raise InputError("stopped on the third part")
        return real(*args)

    monkeypatch.setattr(export, "PART_ROWS", 100)
    monkeypatch.setattr(export, "_columns", failing)
    with pytest.raises(InputError, match="third part"):
        reg.export(None, path)
    assert path.read_text() == "an earlier export"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # nothing partial


def test_export_tokens_and_vocabulary(trained, tmp_path, run):
    import json

    reg, v = trained
    result = json.loads(run("export", "1", "-o", str(tmp_path / "t.jsonl"), "--style",
                            "tokens", "--vocab", str(tmp_path / "vocab.txt"), "--json").output)
    rows = [json.loads(line) for line in (tmp_path / "t.jsonl").open()]
    rec = reg.get([rows[0]["key"]])[0]
    c1, c2, c3 = rec.codes
    assert rows[0]["tokens"] == f"<a_{c1}><b_{c2}><c_{c3}><d_{rec.disambiguation}>"
    vocab = (tmp_path / "vocab.txt").read_text().split()
    top = v.max_disambiguation  # the limit fixed at train, not the largest issued
    assert vocab[:8] == [f"<a_{i}>" for i in range(8)]
    assert vocab[8:12] == [f"<b_{i}>" for i in range(4)]
    assert vocab[-1] == f"<d_{top}>" and len(vocab) == 8 + 4 + 4 + top + 1 == result["tokens"]
    used = {t for r in rows for t in r["tokens"].replace("><", "> <").split()}
    assert used <= set(vocab)
    bad = run("export", "-o", str(tmp_path / "x.txt"))
    assert bad.exit_code == 1 and "unknown output type" in bad.output
    missing = run("export", "-o", str(tmp_path / "no" / "x.csv"))
    assert missing.exit_code == 1 and "folder does not exist" in missing.output


def test_metadata_in_get_and_lookup(reg, run):
    rows = [{"key": f"pkg{i}", "title": f"package number {i}",
             "section": ["libs", "games"][i % 2]} for i in range(40)]
    reg.add([r["key"] for r in rows], make_vectors(40), metas=[
        {"title": r["title"], "section": r["section"]} for r in rows])
    reg.train(codebook_size=[4, 4])
    reg.freeze(1)
    reg.activate(1)
    got = reg.get(["pkg3", "pkg4"], metadata=True)
    assert [x.metadata for x in got] == [{"title": "package number 3", "section": "games"},
                                        {"title": "package number 4", "section": "libs"}]
    assert reg.get(["pkg3"])[0].metadata is None  # only where asked for
    text = run("get", "pkg3", "--metadata").stdout
    assert text.split("\t")[2].strip() == '{"section": "games", "title": "package number 3"}'
    out = json.loads(run("get", "pkg3", "-m", "--json").stdout)
    assert out["items"][0]["metadata"]["title"] == "package number 3"
    assert "metadata" not in json.loads(run("get", "pkg3", "--json").stdout)["items"][0]
    prefix = str(got[0].codes[0])
    listed = json.loads(run("lookup", prefix, "--metadata", "--json").stdout)
    assert listed["items"] and all(set(x["metadata"]) == {"title", "section"}
                                   for x in listed["items"])


def test_lookup_says_how_many_items_lie_under_a_prefix(trained, run):
    reg, _ = trained
    rec = reg.get(["item00000"])[0]
    prefix = str(rec.codes[0])
    under = [x for x in reg.get(make_keys(600)) if x.codes[0] == rec.codes[0]]
    assert len(under) > 3
    r = reg.lookup(prefix, limit=3, count=True)
    assert (len(r.records), r.more, r.total) == (3, True, len(under))
    assert reg.lookup(prefix, limit=3).total is None  # the API counts when asked
    text = run("lookup", prefix, "--limit", "3").stdout
    assert text.splitlines()[-1] == (f"... {len(under)} items under {prefix} in all; raise "
                                     "--limit to see more")
    everything = run("lookup", prefix, "--limit", "1000").stdout.splitlines()
    assert everything[-1] == f"{len(under)} items under {prefix}"
    assert json.loads(run("lookup", prefix, "--json").stdout)["total"] == len(under)
    # a limit does nothing for a full ID: refused
    full = run("lookup", rec.id, "--limit", "5")
    assert full.exit_code == 1 and "is a full ID" in full.stderr


def test_lookup_takes_the_token_form_export_writes(trained, run):
    reg, _ = trained
    rec = reg.get(["item00007"])[0]
    tokens = "".join(f"<{'abcd'[i]}_{c}>" for i, c in enumerate([*rec.codes,
                                                                rec.disambiguation]))
    assert [r.key for r in reg.lookup(tokens).records] == ["item00007"]
    assert [r.key for r in reg.lookup(tokens.replace("><", "> <")).records] == ["item00007"]
    under = reg.lookup(tokens.split("<c_")[0], count=True)
    assert under.kind == "prefix" and "item00007" in [r.key for r in under.records]
    bad = run("lookup", "<a_1><c_2>")
    assert bad.exit_code == 1 and "malformed ID or prefix" in bad.stderr
